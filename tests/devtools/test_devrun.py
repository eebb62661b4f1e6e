"""`make run`'s supervisor: web, worker and sink start together; Ctrl-C stops all."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not read its status yet.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_ctrl_c_stops_the_web_server_the_worker_and_the_sink(tmp_path):
    web, sink = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:////{tmp_path}/run.sqlite3",
        HUEY_SQLITE_PATH=str(tmp_path / "huey.sqlite3"),
        RUN_ADDR=f"127.0.0.1:{web}",
        SINK_PORT=str(sink),
        EMAIL_URL=f"smtp://127.0.0.1:{sink}",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
    )
    log = tmp_path / "devrun.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.devrun"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (answers(web) and answers(sink)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answers(web) and answers(sink), log.read_text()
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", log.read_text())]
        assert len(pids) == 3
        assert all(alive(pid) for pid in pids)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in pids), log.read_text()
    assert not answers(web) and not answers(sink)
    assert "all stopped" in log.read_text()
