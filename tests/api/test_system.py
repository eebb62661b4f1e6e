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


# --- what the consumers do (issue 8 point 3) ------------------------------------------------------


def put_consumer(name: str, *, seen_ago: float, chunks_started_ago: list[float]) -> None:
    import time

    from huey.contrib.djhuey import HUEY

    from campaigns.heartbeat import KEY_PREFIX

    now = time.time()
    HUEY.put(
        f"{KEY_PREFIX}{name}",
        {
            "seen": now - seen_ago,
            "chunks": [{"burst_id": 1, "started": now - ago} for ago in chunks_started_ago],
        },
    )


def test_health_reports_no_consumer_and_no_chunk(anon, huey_queue):
    response = anon.get("/api/health/")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["workers"], body["consumers"], body["busy_chunks"]) == ("ok", "ok", 0, 0)
    assert body["oldest_chunk_seconds"] is None


def test_health_is_ok_while_chunks_run_for_less_than_the_limit(anon, huey_queue, settings):
    settings.WORKER_STUCK_AFTER = 600
    put_consumer("a", seen_ago=2, chunks_started_ago=[30, 500])
    put_consumer("b", seen_ago=5, chunks_started_ago=[])
    body = anon.get("/api/health/").json()
    assert (body["status"], body["workers"], body["consumers"], body["busy_chunks"]) == ("ok", "ok", 2, 2)
    assert 500 <= body["oldest_chunk_seconds"] < 600


def test_health_flags_a_consumer_busy_on_one_chunk_far_longer_than_expected(anon, huey_queue, settings):
    settings.WORKER_STUCK_AFTER = 600
    put_consumer("a", seen_ago=1, chunks_started_ago=[30, 900])
    response = anon.get("/api/health/")
    # The web and its database are fine: 200, flagged.
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["workers"], body["busy_chunks"]) == ("degraded", "stuck", 2)
    assert body["oldest_chunk_seconds"] >= 900


def test_health_ignores_the_chunks_of_a_consumer_that_died(anon, huey_queue, settings):
    settings.WORKER_STUCK_AFTER = 600
    put_consumer("dead", seen_ago=120, chunks_started_ago=[5000])
    body = anon.get("/api/health/").json()
    assert (body["status"], body["workers"], body["consumers"], body["busy_chunks"]) == ("ok", "ok", 0, 0)


def test_the_periodic_task_forgets_consumers_dead_for_an_hour(huey_queue):
    from huey.contrib.djhuey import HUEY

    from campaigns.heartbeat import KEY_PREFIX
    from campaigns.tasks import periodic_maintenance

    put_consumer("long-dead", seen_ago=7200, chunks_started_ago=[9000])
    put_consumer("alive", seen_ago=1, chunks_started_ago=[])
    report = periodic_maintenance.call_local()
    assert report["consumers_forgotten"] == 1
    assert sorted(k for k in HUEY.all_results() if k.startswith(KEY_PREFIX)) == [f"{KEY_PREFIX}alive"]


def test_health_says_the_workers_are_unknown_when_the_queue_is_unreachable(anon, monkeypatch):
    import campaigns.tasks

    monkeypatch.setattr(campaigns.tasks, "queue_ping", lambda: False)
    body = anon.get("/api/health/").json()
    assert (body["status"], body["workers"], body["consumers"]) == ("error", "unknown", None)


def test_the_health_schema_declares_what_the_consumers_do(anon):
    schema = anon.get("/api/openapi.json").json()["components"]["schemas"]["HealthOut"]["properties"]
    assert schema["workers"]["enum"] == ["ok", "stuck", "unknown"]
    assert schema["status"]["enum"] == ["ok", "degraded", "error"]
    assert {"consumers", "busy_chunks", "oldest_chunk_seconds"} <= set(schema)
