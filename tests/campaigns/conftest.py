"""Fixtures of the campaigns tests: fast password hashing, and the engine pointed at a
real aiosmtpd sink with huey inline."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    """PBKDF2 at a million rounds makes every staff fixture take a third of a second."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def engine(settings, smtp_settings, immediate_huey):
    """Email settings pointed at a fresh sink (returned), retries due at once, no rate
    limit, and a pause only after 100 connection failures in a row."""
    settings.EMAIL_MAX_ATTEMPTS = 3
    settings.EMAIL_RETRY_DELAY = 0
    settings.EMAIL_PAUSE_AFTER = 100
    settings.EMAIL_RATE_LIMIT = None
    settings.EMAIL_CHUNK_SIZE = 50
    return smtp_settings


@pytest.fixture
def sink(smtp_server_factory):
    """A sink for real consumers' bursts: counters only, thousands of messages need
    not be kept in memory."""
    return smtp_server_factory(keep_messages=False)
