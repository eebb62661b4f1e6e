"""Settings read the environment once: each case starts a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.conf import settings as s
from huey.contrib.djhuey import HUEY
out = {
    "engine": s.DATABASES["default"]["ENGINE"],
    "db_options": s.DATABASES["default"].get("OPTIONS", {}),
    "huey_class": type(HUEY).__name__,
    "huey_immediate": HUEY.immediate,
    "email": [s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.EMAIL_USE_SSL],
    "email_user": s.EMAIL_HOST_USER,
    "email_timeout": s.EMAIL_TIMEOUT,
    "debug": s.DEBUG,
    "huey_name": HUEY.name,
}
if out["huey_class"] == "RedisHuey":
    out["redis_db"] = HUEY.storage.pool.connection_kwargs.get("db")
print(json.dumps(out))
"""
# Variables a developer's shell or CI may have set; each case starts from none.
CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_URL",
    "SENDER_EMAIL",
    "SENDER_PASSWORD",
    "DEBUG",
    "SECRET_KEY",
    "EMAIL_TIMEOUT",
    "HUEY_IMMEDIATE",
    "TIME_ZONE",
    "EMAIL_RATE_LIMIT",
    "HUEY_NAME",
)


def run_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full_env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:////{tmp_path}/probe.sqlite3",
        HUEY_SQLITE_PATH=str(tmp_path / "huey.sqlite3"),
    )
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=full_env, capture_output=True, text=True, timeout=60
    )


def probe(tmp_path: Path, **env: str) -> dict:
    result = run_settings(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def error_of(tmp_path: Path, **env: str) -> str:
    result = run_settings(tmp_path, **env)
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


DEV = {"DEBUG": "1"}


def test_it_defaults_to_sqlite_wal_huey_on_sqlite_and_the_dev_sink(tmp_path):
    out = probe(tmp_path, **DEV)
    assert out["engine"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in out["db_options"]["init_command"]
    assert out["db_options"]["timeout"] >= 5
    assert out["db_options"]["transaction_mode"] == "IMMEDIATE"
    assert out["huey_class"] == "SqliteHuey"
    assert out["email"] == ["127.0.0.1", 1025, False, False]
    assert out["email_timeout"] == 30


def test_it_never_derives_huey_immediate_from_debug(tmp_path):
    assert probe(tmp_path, DEBUG="1")["huey_immediate"] is False
    assert probe(tmp_path, DEBUG="0", SECRET_KEY="x" * 60)["huey_immediate"] is False


def test_it_puts_the_sqlite_database_in_wal_mode(tmp_path):
    code = PROBE.replace(
        "print(json.dumps(out))",
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('PRAGMA journal_mode'); print(json.dumps(c.fetchone()[0]))",
    )
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(
        DEBUG="1", DATABASE_URL=f"sqlite:////{tmp_path}/wal.sqlite3", HUEY_SQLITE_PATH=str(tmp_path / "h")
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == "wal"


def test_it_uses_redis_for_huey_when_redis_url_is_set_and_honours_its_db(tmp_path):
    out = probe(tmp_path, REDIS_URL="redis://127.0.0.1:6379/7", **DEV)
    assert out["huey_class"] == "RedisHuey"
    assert out["redis_db"] == 7


def test_it_uses_postgresql_when_database_url_says_so(tmp_path):
    out = probe(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/whatever", **DEV)
    # Django's PostgreSQL backend, with connections that give up on a stalled server.
    assert out["engine"] == "common.db.postgresql"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("someone@gmail.com", ["smtp.gmail.com", 587, True, False]),
        ("someone@googlemail.com", ["smtp.gmail.com", 587, True, False]),
        ("someone@outlook.com", ["smtp.office365.com", 587, True, False]),
        ("someone@hotmail.com", ["smtp.office365.com", 587, True, False]),
        ("someone@live.com", ["smtp.office365.com", 587, True, False]),
        ("someone@yahoo.com", ["smtp.mail.yahoo.com", 465, False, True]),
    ],
)
def test_it_picks_the_providers_server_for_an_old_style_env(tmp_path, address, expected):
    out = probe(tmp_path, SENDER_EMAIL=address, SENDER_PASSWORD="app-password", **DEV)
    assert out["email"] == expected
    assert out["email_user"] == address


def test_it_refuses_an_old_style_env_for_an_unknown_provider_without_leaking_the_password(tmp_path):
    result = run_settings(tmp_path, SENDER_EMAIL="me@corp.example", SENDER_PASSWORD="hunter2-secret", **DEV)
    assert result.returncode != 0
    assert "EMAIL_URL" in result.stderr and "corp.example" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


def test_it_prefers_email_url_over_the_provider_table(tmp_path):
    out = probe(
        tmp_path,
        EMAIL_URL="smtp+ssl://user:pw@mail.example.org:2465",
        SENDER_EMAIL="someone@gmail.com",
        SENDER_PASSWORD="app-password",
        **DEV,
    )
    assert out["email"] == ["mail.example.org", 2465, False, True]
    assert out["email_user"] == "user"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EMAIL_TIMEOUT": "soon"}, "EMAIL_TIMEOUT"),
        ({"EMAIL_TIMEOUT": "0"}, "EMAIL_TIMEOUT"),
        ({"EMAIL_MAX_ATTEMPTS": "-1"}, "EMAIL_MAX_ATTEMPTS"),
        ({"EMAIL_RATE_LIMIT": "fast"}, "EMAIL_RATE_LIMIT"),
        ({"HUEY_WORKERS": "two"}, "HUEY_WORKERS"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"SENDER_EMAIL": "not-an-address"}, "SENDER_EMAIL"),
        ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE"),
        ({"SITE_URL": "example.org"}, "SITE_URL"),
        ({"DATABASE_URL": "mysql://root@127.0.0.1/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://127.0.0.1"}, "REDIS_URL"),
    ],
)
def test_it_stops_with_a_message_naming_a_bad_variable(tmp_path, env, named):
    message = error_of(tmp_path, **{**DEV, **env})
    assert "ImproperlyConfigured" in message and named in message


def test_it_requires_a_secret_key_when_debug_is_off(tmp_path):
    message = error_of(tmp_path)
    assert "SECRET_KEY" in message


def test_it_never_echoes_an_email_url_password_in_errors(tmp_path):
    result = run_settings(tmp_path, EMAIL_URL="ftp://user:s3cr3t-pw@host", **DEV)
    assert result.returncode != 0
    assert "s3cr3t-pw" not in result.stderr + result.stdout


def test_it_validates_addresses_with_djangos_email_validator(tmp_path):
    # pydantic's EmailStr refuses reserved domains such as .test; Django's validator does not.
    out = probe(tmp_path, SENDER_EMAIL="news@example.test", **DEV)
    assert out["email_user"] == "news@example.test"


def test_the_queue_name_is_derived_from_the_database_unless_huey_name_is_set(tmp_path):
    one = probe(tmp_path, **DEV, REDIS_URL="redis://127.0.0.1:6379/7")["huey_name"]
    again = probe(tmp_path, **DEV, REDIS_URL="redis://127.0.0.1:6379/7")["huey_name"]
    other = probe(
        tmp_path,
        **DEV,
        REDIS_URL="redis://127.0.0.1:6379/7",
        DATABASE_URL=f"sqlite:////{tmp_path}/other.sqlite3",
    )["huey_name"]
    postgres = probe(
        tmp_path,
        **DEV,
        REDIS_URL="redis://127.0.0.1:6379/7",
        DATABASE_URL="postgres://u@db.example:5432/emailer",
    )["huey_name"]
    assert one == again and one.startswith("emailer-")
    assert len({one, other, postgres}) == 3  # two deployments on one Redis never share a queue
    assert probe(tmp_path, **DEV, HUEY_NAME="shop-a")["huey_name"] == "shop-a"
