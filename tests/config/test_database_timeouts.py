"""DATABASE_TIMEOUT: PostgreSQL connects, runs a statement and answers within bounds, and a
stalled connection fails instead of hanging (issue 15 point 1)."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import OperationalError, connection

from common.db import database_budget, statements_unbounded
from common.db.postgresql.base import PING_TIMEOUT, DatabaseWrapper
from config.api import HEALTH_DATABASE_BUDGET, HEALTH_DEADLINE
from tests.config.test_settings import DEV, probe, run_settings
from tests.stallproxy import StallProxy

PG_URL = "postgres://postgres@127.0.0.1:5432/whatever"


@pytest.fixture(autouse=True)
def _no_database_timeout_from_the_shell(monkeypatch):
    monkeypatch.delenv("DATABASE_TIMEOUT", raising=False)


def pg_options(tmp_path, **env: str) -> dict:
    return probe(tmp_path, **{"DATABASE_URL": PG_URL, **DEV, **env})["db_options"]


# --- settings -----------------------------------------------------------------------------


def test_the_defaults_bound_connecting_a_statement_and_a_stall(tmp_path):
    options = pg_options(tmp_path)
    assert options["connect_timeout"] == 10
    assert "-c statement_timeout=10000" in options["options"] and "-c jit=off" in options["options"]
    assert options["stall_timeout"] == 12.0  # the server's own limit fires first


def test_the_defaults_keep_health_within_10_s_and_requests_within_15_s(tmp_path):
    """The worst a stall costs, from the defaults: a reused connection's ping, then either
    connecting again or one statement waiting (gunicorn tests run it for real)."""
    options = pg_options(tmp_path)
    worst_request = PING_TIMEOUT + max(options["connect_timeout"], options["stall_timeout"])
    assert worst_request < 15
    # Health: the database within its budget, the queue (REDIS_TIMEOUT 5 s per call) cut at
    # the deadline; libpq rounds connect_timeout down to whole seconds, at least 2.
    assert HEALTH_DATABASE_BUDGET <= HEALTH_DEADLINE < 10


def test_database_timeout_is_read_from_the_environment(tmp_path):
    options = pg_options(tmp_path, DATABASE_TIMEOUT="4.5")
    assert options["connect_timeout"] == 5
    assert "-c statement_timeout=4500" in options["options"]
    assert options["stall_timeout"] == 6.5


def test_database_timeout_0_lifts_the_statement_limit_but_not_the_connect_timeout(tmp_path):
    options = pg_options(tmp_path, DATABASE_TIMEOUT="0")
    assert options["connect_timeout"] == 10
    assert "-c statement_timeout=0" in options["options"]
    assert options["stall_timeout"] is None


def test_the_database_url_s_own_connect_timeout_wins(tmp_path):
    options = pg_options(tmp_path, DATABASE_URL=f"{PG_URL}?connect_timeout=3")
    assert int(options["connect_timeout"]) == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "DATABASE_TIMEOUT must be a number, got 'soon'"),
        ("-1", "DATABASE_TIMEOUT must be at least 0"),
        ("1", "DATABASE_TIMEOUT must be 0 (no statement limit) or at least 2 seconds, got 1"),
    ],
)
def test_a_bad_database_timeout_stops_start_up_naming_it(tmp_path, value, message):
    result = run_settings(tmp_path, DATABASE_URL=PG_URL, DATABASE_TIMEOUT=value, **DEV)
    assert result.returncode != 0 and message in result.stderr


def test_sqlite_keeps_its_busy_timeout_and_gets_no_postgres_options(tmp_path):
    options = probe(tmp_path, DATABASE_TIMEOUT="4", **DEV)["db_options"]
    assert options["timeout"] == 30 and "connect_timeout" not in options


# --- a real PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def pg(require_postgres, db):
    return connection


def test_the_options_reach_the_postgres_connection(pg):
    with pg.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        shown = cursor.fetchone()[0]
    expected = round(settings.DATABASE_TIMEOUT * 1000)
    assert shown == ("0" if expected == 0 else f"{expected}ms" if expected % 1000 else f"{expected // 1000}s")
    assert (
        pg.get_connection_params()["connect_timeout"]
        == settings.DATABASES["default"]["OPTIONS"]["connect_timeout"]
    )
    assert pg.connection.stall_timeout == settings.DATABASES["default"]["OPTIONS"]["stall_timeout"]


def wrapper(port: int, **options) -> DatabaseWrapper:
    """A second connection to the test database through `port`, with these OPTIONS."""
    d = connection.settings_dict
    merged = {**d["OPTIONS"], **options}
    return DatabaseWrapper({**d, "HOST": "127.0.0.1", "PORT": port, "OPTIONS": merged}, alias="stalled")


@pytest.fixture
def pg_proxy(pg):
    d = connection.settings_dict
    with StallProxy(d["HOST"] or "127.0.0.1", int(d["PORT"] or 5432)) as proxy:
        yield proxy


def test_a_stalled_connection_fails_after_its_stall_timeout_and_the_next_one_works(pg_proxy):
    db = wrapper(pg_proxy.port, stall_timeout=1.5, connect_timeout=2)
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
        pg_proxy.stall()
        started = time.monotonic()
        with pytest.raises(OperationalError, match="did not answer within 1.5 s"), db.cursor() as cursor:
            cursor.execute("SELECT 2")
        assert 1.4 < time.monotonic() - started < 5
        # Closed: Django's health check says so at once instead of waiting again.
        started = time.monotonic()
        assert db.connection.closed and not db.is_usable()
        assert time.monotonic() - started < 1
        # Connecting while stalled gives up after connect_timeout.
        db.close()
        with pytest.raises(OperationalError, match="timeout"):
            db.ensure_connection()
        pg_proxy.resume()
        db.close()
        with db.cursor() as cursor:
            cursor.execute("SELECT 3")
            assert cursor.fetchone() == (3,)
    finally:
        db.close()


def test_the_server_s_statement_timeout_fires_first_and_keeps_the_connection(pg_proxy):
    db = wrapper(pg_proxy.port, options="-c statement_timeout=300", stall_timeout=5)
    try:
        with pytest.raises(OperationalError, match="statement timeout"), db.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(3)")
        assert db.is_usable()
    finally:
        db.close()


def test_a_budget_bounds_connecting_and_waiting_together(pg_proxy):
    db = wrapper(pg_proxy.port, stall_timeout=30, connect_timeout=30)
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
        pg_proxy.stall()
        started = time.monotonic()
        with pytest.raises(OperationalError), database_budget(1), db.cursor() as cursor:
            cursor.execute("SELECT 2")
        assert time.monotonic() - started < 3
    finally:
        pg_proxy.resume()
        db.close()


def test_statements_unbounded_lifts_the_limit_for_a_block_only(pg):
    before = pg.connection.stall_timeout if pg.connection else None
    with statements_unbounded():
        with pg.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "0"
        assert pg.connection.stall_timeout is None
    with pg.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] != "0" or settings.DATABASE_TIMEOUT == 0
    assert pg.connection.stall_timeout == (
        before or settings.DATABASES["default"]["OPTIONS"]["stall_timeout"]
    )


def test_migrate_runs_without_the_statement_limit(pg):
    from members.management.commands.migrate import Command

    # The project's migrate is Django's, inside statements_unbounded().
    assert Command.__mro__[1].__module__ == "django.core.management.commands.migrate"
    seen: list[str] = []

    def record(*args, **kwargs):
        with pg.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            seen.append(cursor.fetchone()[0])

    from django.core.management.commands import migrate as django_migrate

    original = django_migrate.Command.handle
    django_migrate.Command.handle = record
    try:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    finally:
        django_migrate.Command.handle = original
    assert seen == ["0"]
