"""Real `run_huey` consumers for integration tests.

Each test gets its own queue (a fresh huey storage with a unique name, or its
own SQLite file), shared by the test process and the consumer subprocesses, so
test runs side by side never take each other's tasks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def database_url() -> str:
    name = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        d = connection.settings_dict
        return f"postgres://{d['USER'] or 'postgres'}@{d['HOST'] or '127.0.0.1'}:{d['PORT'] or 5432}/{name}"
    return f"sqlite:///{name}" if name.startswith("/") else f"sqlite:///{BASE_DIR / name}"


class Consumer:
    def __init__(self, env: dict[str, str], log: Path, args: list[str]) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_huey", *args],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        self.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def huey_queue(tmp_path, settings) -> Iterator[dict[str, str]]:
    """Point this process's huey at a fresh queue; yields the env a consumer needs."""
    from huey.contrib.djhuey import HUEY
    from huey.storage import RedisStorage, SqliteStorage

    name = f"emailer-test-{uuid.uuid4().hex[:8]}"
    env: dict[str, str] = {"HUEY_NAME": name}
    previous = (HUEY.storage, HUEY.name, HUEY.immediate)
    HUEY.immediate = False  # first: flipping it recreates the storage
    if settings.REDIS_URL:
        HUEY.storage = RedisStorage(name=name, url=settings.REDIS_URL)
        env["REDIS_URL"] = settings.REDIS_URL
    else:
        path = str(tmp_path / "huey.sqlite3")
        HUEY.storage = SqliteStorage(name=name, filename=path)
        env["HUEY_SQLITE_PATH"] = path
    HUEY.name = name
    HUEY.immediate = False
    settings.HUEY_NAME = name
    yield env
    HUEY.storage.flush_all()
    HUEY.storage, HUEY.name = previous[0], previous[1]
    HUEY._immediate = previous[2]


@pytest.fixture
def start_consumer(huey_queue, tmp_path, transactional_db) -> Iterator[Callable[..., Consumer]]:
    consumers: list[Consumer] = []

    def start(*, sink, periodic: bool = False, workers: int = 2, **extra: str) -> Consumer:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "EMAIL_URL"}}
        env.update(huey_queue)
        env.update(
            DEBUG="0",
            SECRET_KEY=settings.SECRET_KEY,
            DATABASE_URL=database_url(),
            EMAIL_URL=f"smtp://{sink.host}:{sink.port}",
            EMAIL_TIMEOUT="5",
            HUEY_WORKERS=str(workers),
            PYTHONUNBUFFERED="1",
            EMAIL_JOURNAL_DIR=str(settings.EMAIL_JOURNAL_DIR),
        )
        env.update({k: str(v) for k, v in extra.items()})
        args = ["--workers", str(workers)]
        if not periodic:
            args.append("--no-periodic")
        consumer = Consumer(env, tmp_path / f"consumer-{len(consumers)}.log", args)
        consumers.append(consumer)
        return consumer

    yield start
    for consumer in consumers:
        consumer.stop(signal.SIGKILL, timeout=10)


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
