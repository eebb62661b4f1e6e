# Add to tests/conftest.py:  pytest_plugins = ["tests.smtpd"]
"""Fixtures running a real SMTP server (devtools.smtp_sink.SinkServer) for tests.

- `smtp_server`: a SinkServer on a free port of 127.0.0.1, messages kept in memory,
  stopped after the test.
- `smtp_settings`: Django's email settings pointed at `smtp_server` (plain SMTP, no
  AUTH, EMAIL_TIMEOUT=2, and the SMTP backend, since pytest-django installs locmem);
  returns the server.
- `smtp_server_factory`: `smtp_server_factory(**SinkServer kwargs)` for more servers
  or other options (auth, keep_messages=False, ...); all stopped after the test.
  Pair it with `point_email_settings(settings, server, user=..., password=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.smtp_sink import SinkServer

__all__ = ["point_email_settings", "smtp_server", "smtp_server_factory", "smtp_settings"]


def point_email_settings(
    settings: Any, server: SinkServer, *, user: str = "", password: str = ""
) -> SinkServer:
    """Point Django's email settings (pytest-django's `settings` fixture) at `server`."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = user
    settings.EMAIL_HOST_PASSWORD = password
    settings.EMAIL_TIMEOUT = 2
    return server


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SinkServer]]:
    servers: list[SinkServer] = []

    def make(**kwargs: Any) -> SinkServer:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        server = SinkServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SinkServer]) -> SinkServer:
    return smtp_server_factory(keep_messages=True)


@pytest.fixture
def smtp_settings(settings: Any, smtp_server: SinkServer) -> SinkServer:
    return point_email_settings(settings, smtp_server)
