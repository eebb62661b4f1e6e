"""Logins keep working while Redis is down or stalled (issue 15 point 2): the throttle
counts per process meanwhile, says so in the log and in /api/health/, and never turns
a login into a 500."""

from __future__ import annotations

import logging
import socket

import pytest
from django.test import Client, override_settings

from members import services
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db

LOGIN = "/api/login/"


def redis_cache(port: int) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
    }


@pytest.fixture
def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def stalled_port():
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture(autouse=True)
def _fresh_throttle(monkeypatch):
    monkeypatch.setattr(services, "_shared_failed_at", None)
    services._LOCAL_COUNTS.clear()
    yield


def login(password: str):
    return Api().post(LOGIN, {"username": "sam.staff", "password": password})


@pytest.mark.parametrize("port_fixture", ["dead_port", "stalled_port"])
def test_logins_go_on_counting_per_process_while_redis_does_not_answer(
    port_fixture, request, staff_user, caplog
):
    with override_settings(CACHES=redis_cache(request.getfixturevalue(port_fixture))):
        with caplog.at_level(logging.WARNING, logger="members.services"):
            assert login("staff-pass-1234").status_code == 200
            assert login("wrong").status_code == 401
        assert "counting per process" in caplog.text
        assert services.login_throttle_mode() == "per-process"
        assert Api().get("/api/health/").json()["login_throttle"] == "per-process"

        for _ in range(10):
            login("wrong")
        assert login("staff-pass-1234").status_code == 429  # still throttled, per process


def test_the_admin_login_works_while_redis_is_down(staff_user, dead_port):
    with override_settings(CACHES=redis_cache(dead_port)):
        response = Client().post(
            "/admin/login/?next=/admin/", {"username": "sam.staff", "password": "staff-pass-1234"}
        )
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_the_shared_counts_are_used_again_once_redis_answers(staff_user, dead_port, monkeypatch):
    with override_settings(CACHES=redis_cache(dead_port)):
        assert login("staff-pass-1234").status_code == 200
    assert services.login_throttle_mode() == "per-process"
    monkeypatch.setattr(
        services, "_shared_failed_at", services._shared_failed_at - services.LOGIN_SHARED_RETRY
    )
    assert login("staff-pass-1234").status_code == 200
    assert services.login_throttle_mode() == "shared"
