"""GET /api/test/emailer/ and GET /api/health/ (issue 4 point 5)."""

from __future__ import annotations

import socket

import pytest

from tests.smtpd import point_email_settings

pytestmark = pytest.mark.django_db

SECRET = "s3cret-Passw0rd"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_emailer_check_succeeds_against_a_real_server(as_staff, smtp_settings, settings):
    response = as_staff.get("/api/test/emailer/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "success" and body["sender_email"] == settings.SENDER_EMAIL
    assert body["message"]
    assert smtp_settings.messages == []  # connected, but sent nothing


def test_emailer_check_with_auth(as_staff, smtp_server_factory, settings):
    server = smtp_server_factory(auth=("mailer", SECRET))
    point_email_settings(settings, server, user="mailer", password=SECRET)
    response = as_staff.get("/api/test/emailer/")
    assert response.status_code == 200, response.content
    assert SECRET not in response.content.decode()


def test_emailer_check_with_a_wrong_password_is_503_without_secrets(as_staff, smtp_server_factory, settings):
    server = smtp_server_factory(auth=("mailer", "the-right-one"))
    point_email_settings(settings, server, user="mailer", password=SECRET)
    response = as_staff.get("/api/test/emailer/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["message"]
    text = response.content.decode()
    assert SECRET not in text and f"mailer:{SECRET}" not in text and "smtp://" not in text


def test_emailer_check_against_a_closed_port_is_503(as_staff, settings):
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = closed_port()
    settings.EMAIL_HOST_USER = "mailer"
    settings.EMAIL_HOST_PASSWORD = SECRET
    settings.EMAIL_TIMEOUT = 2
    response = as_staff.get("/api/test/emailer/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["message"] and "sender_email" not in body
    assert SECRET not in response.content.decode()


def test_health_is_public_and_ok(anon):
    response = anon.get("/api/health/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["queue"] == "ok"
    assert "last_periodic_run" in body


def test_health_reports_the_last_periodic_run(anon):
    from django.utils import timezone
    from huey.contrib.djhuey import HUEY

    from campaigns.tasks import LAST_PERIODIC_KEY

    now = timezone.now()
    HUEY.put(LAST_PERIODIC_KEY, now.isoformat())
    try:
        body = anon.get("/api/health/").json()
    finally:
        HUEY.get(LAST_PERIODIC_KEY)  # consume it
    assert body["last_periodic_run"].startswith(now.strftime("%Y-%m-%dT%H:%M"))


def test_health_is_503_when_the_queue_is_unreachable(anon, monkeypatch):
    import campaigns.tasks

    monkeypatch.setattr(campaigns.tasks, "queue_ping", lambda: False)
    response = anon.get("/api/health/")
    assert response.status_code == 503
    assert response.json()["status"] == "error" and response.json()["queue"] == "error"


def test_health_is_503_when_the_database_is_unreachable(anon, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(self, sql, params=None):
        raise __import__("django.db").db.OperationalError("database is gone")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    response = anon.get("/api/health/")
    assert response.status_code == 503
    assert response.json()["database"] == "error"


def test_emailer_check_gives_up_within_the_email_timeout(as_staff, smtp_server_factory, settings):
    import time

    server = smtp_server_factory()
    server.script_connect("connect:hang 30")
    point_email_settings(settings, server)
    settings.EMAIL_TIMEOUT = 1
    started = time.monotonic()
    response = as_staff.get("/api/test/emailer/")
    assert response.status_code == 503
    assert time.monotonic() - started < 5
