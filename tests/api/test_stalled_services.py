"""The web stays up and honest while PostgreSQL or Redis stall (issue 15 point 1).

gunicorn runs as the Procfile runs it (three sync workers) with the DEFAULT timeouts
(DATABASE_TIMEOUT 10 s, REDIS_TIMEOUT 5 s), its PostgreSQL or Redis reached through a
proxy that stalls: connections stay open and nothing comes back, which no TCP keepalive
or server-side limit notices. SPEC 17: /api/health/ answers 503 within 10 s naming what
is down, requests fail with a 503 within 15 s, and all recovers without a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import Client

from campaigns.models import BurstStatus
from tests.api.conftest import access_token
from tests.stallproxy import StallProxy
from tests.workers import database_url, wait_for

BASE_DIR = Path(__file__).resolve().parents[2]
HEALTH_WITHIN = 10.0
REQUEST_WITHIN = 15.0

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    """`gunicorn config.wsgi` as the Procfile's web process runs it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", "3", "--access-logfile", "-"],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answers, timeout=30, interval=0.2, what=f"gunicorn on {self.url} (log: {log})")

    def _answers(self) -> bool:
        assert self.proc.poll() is None, self.log()
        try:
            requests.get(f"{self.url}/api/health/", timeout=15)
            return True
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


@pytest.fixture
def start_web(tmp_path, huey_queue) -> Iterator[Callable[..., WebServer]]:
    servers: list[WebServer] = []

    def start(**extra: str) -> WebServer:
        cleared = {"DATABASE_URL", "REDIS_URL", "DATABASE_TIMEOUT", "REDIS_TIMEOUT", "CONN_MAX_AGE", "PORT"}
        env = {k: v for k, v in os.environ.items() if k not in cleared}
        env.update(huey_queue)
        env.update(
            DEBUG="0",
            SECRET_KEY=settings.SECRET_KEY,
            JWT_SIGNING_KEY=settings.NINJA_JWT["SIGNING_KEY"],
            ALLOWED_HOSTS="127.0.0.1",
            DATABASE_URL=database_url(),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        server = WebServer(env, tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def proxied_postgres_url(proxy: StallProxy) -> str:
    d = connection.settings_dict
    return f"postgres://{d['USER'] or 'postgres'}@127.0.0.1:{proxy.port}/{d['NAME']}"


def proxied_redis_url(proxy: StallProxy) -> str:
    parts = urlsplit(settings.REDIS_URL)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))


def timed(call: Callable[[], requests.Response]) -> Callable[[], tuple[requests.Response, float]]:
    def run() -> tuple[requests.Response, float]:
        started = time.monotonic()
        response = call()
        return response, time.monotonic() - started

    return run


def all_at_once(**calls: Callable[[], requests.Response]) -> dict[str, tuple[requests.Response, float]]:
    """Each call in a thread of its own (one gunicorn worker each), with its duration."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {name: pool.submit(timed(call)) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture
def admin_session(staff_user) -> str:
    """A staff member's admin session, stored in the test database the server reads."""
    client = Client()
    client.force_login(staff_user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_it_answers_503_within_the_bounds_while_postgres_stalls_and_recovers_without_restart(
    require_postgres, start_web, staff_user, admin_session
):
    d = connection.settings_dict
    with StallProxy(d["HOST"] or "127.0.0.1", int(d["PORT"] or 5432)) as proxy:
        web = start_web(DATABASE_URL=proxied_postgres_url(proxy))
        token = {"Authorization": f"Bearer {access_token(staff_user)}"}
        cookies = {settings.SESSION_COOKIE_NAME: admin_session}
        calls = {
            "health": lambda: requests.get(f"{web.url}/api/health/", timeout=30),
            "api": lambda: requests.get(f"{web.url}/api/members/", headers=token, timeout=30),
            "admin": lambda: requests.get(f"{web.url}/admin/", cookies=cookies, timeout=30),
        }
        assert [call().status_code for call in calls.values()] == [200, 200, 200]

        proxy.stall()
        answers = all_at_once(**calls)

        health, seconds = answers["health"]
        assert health.status_code == 503 and seconds < HEALTH_WITHIN, (health.status_code, seconds)
        assert (health.json()["status"], health.json()["database"]) == ("error", "error")
        assert health.json()["queue"] == "ok"

        api, seconds = answers["api"]
        assert api.status_code == 503 and seconds < REQUEST_WITHIN, (api.status_code, seconds)
        assert api.json() == {"detail": "The database is not answering; try again shortly."}
        assert int(api.headers["Retry-After"]) > 0

        admin, seconds = answers["admin"]
        assert admin.status_code == 503 and seconds < REQUEST_WITHIN, (admin.status_code, seconds)
        assert "text/html" in admin.headers["Content-Type"]
        assert "The database is not answering" in admin.text and "Retry-After" in admin.headers

        proxy.resume()
        # No restart: the next requests connect afresh.
        assert [call().status_code for call in calls.values()] == [200, 200, 200]
    log = web.log()
    assert "GET /api/members/: 503, the database is not answering" in log
    assert "GET /admin/: 503, the database is not answering" in log


def test_it_answers_503_within_the_bounds_while_redis_stalls_and_recovers_without_restart(
    require_redis, start_web, staff_user, member
):
    from tests.factories import DraftBurstFactory

    target = urlsplit(settings.REDIS_URL)
    with StallProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        web = start_web(REDIS_URL=proxied_redis_url(proxy))
        token = {"Authorization": f"Bearer {access_token(staff_user)}"}
        burst = DraftBurstFactory(recipients=[member])
        health = lambda: requests.get(f"{web.url}/api/health/", timeout=30)  # noqa: E731
        assert health().status_code == 200

        proxy.stall()
        answers = all_at_once(
            health=health,
            members=lambda: requests.get(f"{web.url}/api/members/", headers=token, timeout=30),
            send=lambda: requests.post(
                f"{web.url}/api/email-burst/{burst.pk}/send/", headers=token, timeout=30
            ),
        )

        response, seconds = answers["health"]
        assert response.status_code == 503 and seconds < HEALTH_WITHIN, (response.status_code, seconds)
        body = response.json()
        assert (body["status"], body["queue"], body["database"], body["workers"]) == (
            "error",
            "error",
            "ok",
            "unknown",
        )

        # What needs no Redis goes on working.
        response, seconds = answers["members"]
        assert response.status_code == 200 and seconds < REQUEST_WITHIN, (response.status_code, seconds)

        # Starting a send must enqueue: a clear 503 in time (never a hang or a 500).
        response, seconds = answers["send"]
        assert response.status_code == 503 and seconds < REQUEST_WITHIN, (response.status_code, seconds)
        assert response.json() == {"detail": "The task queue is not answering; try again shortly."}
        # Refused before anything changed: not "sending" with nothing queued.
        burst.refresh_from_db()
        assert burst.status == BurstStatus.DRAFT

        proxy.resume()
        wait_for(lambda: health().status_code == 200, timeout=10, what="health back to 200 without a restart")
        again = requests.post(f"{web.url}/api/email-burst/{burst.pk}/send/", headers=token, timeout=30)
        assert (again.status_code, again.json()["status"]) == (202, "sending"), again.text
    assert "503, the task queue is not answering" in web.log()


def test_logins_answer_within_10_s_while_redis_stalls_with_the_default_timeouts(
    require_redis, start_web, staff_user
):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # Hashed as the server (default PASSWORD_HASHERS) can check it; this suite hashes fast.
    staff_user.password = PBKDF2PasswordHasher().encode("staff-pass-1234", "tests-salt", iterations=1000)
    staff_user.save(update_fields=["password"])
    target = urlsplit(settings.REDIS_URL)
    with StallProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        web = start_web(REDIS_URL=proxied_redis_url(proxy))
        proxy.stall()
        login = f"{web.url}/api/login/"
        right = {"username": "sam.staff", "password": "staff-pass-1234"}
        for payload, status in ((right, 200), ({**right, "password": "wrong"}, 401)):
            response, seconds = timed(lambda p=payload: requests.post(login, json=p, timeout=30))()
            assert response.status_code == status and seconds < HEALTH_WITHIN, (response.status_code, seconds)

        browser = requests.Session()
        browser.get(f"{web.url}/admin/login/", timeout=30)
        response, seconds = timed(
            lambda: browser.post(
                f"{web.url}/admin/login/?next=/admin/",
                data={**right, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
                headers={"Referer": f"{web.url}/admin/login/"},
                allow_redirects=False,
                timeout=30,
            )
        )()
        assert response.status_code == 302 and seconds < HEALTH_WITHIN, (response.status_code, seconds)
        assert response.headers["Location"] == "/admin/"
        proxy.resume()
