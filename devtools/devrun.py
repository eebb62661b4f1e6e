"""Run the web server, one huey consumer and the development SMTP sink together.

`make run` calls this. Ctrl-C (or SIGTERM, or any child dying) stops all three,
and this process waits for them so that nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 10

RUN_ADDR = os.environ.get("RUN_ADDR", "127.0.0.1:8000")
PROCESSES = {
    "web": ["manage.py", "runserver", RUN_ADDR, "--noreload"],
    "worker": ["manage.py", "run_huey"],
    "smtp": ["manage.py", "smtp_sink", "--port", os.environ.get("SINK_PORT", "1025")],
}


def start_all() -> dict[str, subprocess.Popen]:
    children = {}
    for name, args in PROCESSES.items():
        # Own process group: the terminal's Ctrl-C reaches only us, and we stop
        # the children in order, each given time to finish what it is doing.
        children[name] = subprocess.Popen([sys.executable, *args], cwd=BASE_DIR, start_new_session=True)
        print(f"[devrun] started {name} (pid {children[name].pid}): {' '.join(args)}", flush=True)
    return children


def stop_all(children: dict[str, subprocess.Popen]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, proc in children.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[devrun] {name} did not stop in time: killing it", flush=True)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    children = start_all()
    print(
        f"[devrun] Emailer is up: http://{RUN_ADDR}/admin/ (API docs: /api/docs). Ctrl-C stops everything.",
        flush=True,
    )
    exit_code = 0
    while not stopping:
        for name, proc in children.items():
            if proc.poll() is not None:
                print(f"[devrun] {name} exited with {proc.returncode}: stopping the rest", flush=True)
                exit_code = proc.returncode or 1
                stopping = True
        time.sleep(0.2)
    print("[devrun] stopping…", flush=True)
    stop_all(children)
    print("[devrun] all stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
