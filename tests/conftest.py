"""Shared fixtures: a small named cast, and the switches for real services.

Tests that need PostgreSQL, Redis or chromium skip with a reason when those are
not configured, and fail instead when REQUIRE_SERVICES=1, so that CI's services
run cannot pass by skipping what it was meant to exercise.
"""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

pytest_plugins = ["tests.smtpd", "tests.workers"]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES", "") == "1"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def _unavailable(reason: str) -> None:
    """A configured service that does not answer (or a missing chromium)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def require_postgres() -> None:
    if not is_postgres():
        # Not configured: a skip even under REQUIRE_SERVICES (the SQLite run of CI).
        pytest.skip("needs PostgreSQL: DATABASE_URL is not a postgres:// URL")


@pytest.fixture
def require_redis() -> str:
    url = settings.REDIS_URL
    if not url:
        pytest.skip("needs Redis: REDIS_URL is not set")
    parts = urlsplit(url)
    if not _reachable(parts.hostname or "127.0.0.1", parts.port or 6379):
        _unavailable(f"Redis at {parts.hostname}:{parts.port or 6379} is not reachable")
    return url


@pytest.fixture
def require_chromium() -> str:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        _unavailable(f"needs chromium at {CHROMIUM} (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
def immediate_huey():
    """Run huey tasks inline. override_settings(HUEY=...) has no effect on djhuey."""
    from huey.contrib.djhuey import HUEY

    previous = HUEY.immediate
    HUEY.immediate = True
    yield HUEY
    HUEY.immediate = previous


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """Give each test run its own test database, so that runs side by side
    (a developer's and CI's, or several helpers') never share one."""
    test = settings.DATABASES["default"].setdefault("TEST", {})
    base = test.get("NAME") or "test_emailer"
    if connection.vendor == "sqlite":
        root, dot, ext = base.rpartition(".")
        test["NAME"] = f"{root}_{os.getpid()}.{ext}" if dot else f"{base}_{os.getpid()}"
    else:
        test["NAME"] = f"{base}_{os.getpid()}"


# --- the cast -------------------------------------------------------------------


@pytest.fixture
def superuser(db):
    from tests.factories import SuperuserFactory

    return SuperuserFactory(
        username="root", email="root@example.test", password="root-pass-1234", first_name="", last_name=""
    )


@pytest.fixture
def staff_user(db):
    """Staff with every campaigns and members permission, send_emailburst included."""
    from tests.factories import StaffFactory

    return StaffFactory(
        username="sam.staff",
        email="sam.staff@example.test",
        password="staff-pass-1234",
        first_name="Sam",
        last_name="Staff",
    )


@pytest.fixture
def editor(db):
    """Staff who may view and edit bursts and members but not send."""
    from tests.factories import EditorFactory

    return EditorFactory(
        username="eddie.editor",
        email="eddie@example.test",
        password="editor-pass-1234",
        first_name="",
        last_name="",
    )


@pytest.fixture
def member(db):
    from tests.factories import MemberFactory

    return MemberFactory(
        username="ada",
        email="ada@example.test",
        password="member-pass-1234",
        first_name="Ada",
        last_name="Lovelace",
    )


@pytest.fixture(autouse=True)
def _journal_dir(tmp_path_factory):
    """Each test's chunks journal into a folder of its own (a consumer started by the
    test is given the same folder), never into the checkout's var/journal."""
    previous = settings.EMAIL_JOURNAL_DIR
    settings.EMAIL_JOURNAL_DIR = tmp_path_factory.mktemp("journal")
    yield settings.EMAIL_JOURNAL_DIR
    settings.EMAIL_JOURNAL_DIR = previous


@pytest.fixture(autouse=True)
def _member_tally_as_counted(request):
    """The test database is emptied between transactional tests table by table, in no
    fixed order (SQLite deletes fire the tally's triggers, PostgreSQL truncates): the
    member tally is recounted before each test that uses the database."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None and not {"db", "transactional_db"} & set(request.fixturenames):
        return
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    from members.services import member_tally_repair

    member_tally_repair()
