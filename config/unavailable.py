"""A database or task queue that does not answer is a 503, never a hang or a 500.

PostgreSQL calls give up after DATABASE_TIMEOUT (common/db/postgresql), Redis calls after
REDIS_TIMEOUT; the errors they then raise reach here from a view (config.middleware for
every page, config.api's handler for the API, before django-ninja can make them a 500):
the API answers `{"detail": ...}`, the admin a plain page, both with Retry-After. The
failure is logged once, as a warning naming the error, never a connection URL's password.
"""

from __future__ import annotations

import logging
from typing import Literal

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

Service = Literal["database", "task queue"]
DATABASE_ERRORS = (OperationalError, InterfaceError)
QUEUE_ERRORS = (RedisConnectionError, RedisTimeoutError)
UNAVAILABLE_ERRORS = (*DATABASE_ERRORS, *QUEUE_ERRORS, ServiceUnavailable)
# Seconds a client is asked to wait: about what a stalled call costs before it fails.
RETRY_AFTER = 15


def service_of(exc: BaseException) -> Service | None:
    """Which service an error says is unreachable (None: not such an error)."""
    if isinstance(exc, ServiceUnavailable):
        return "task queue" if exc.service == "task queue" else "database"
    if isinstance(exc, DATABASE_ERRORS):
        return "database"
    if isinstance(exc, QUEUE_ERRORS):
        return "task queue"
    return None


def _secrets() -> list[str]:
    found = [str(settings.DATABASES["default"].get("PASSWORD") or "")]
    for url in (settings.REDIS_URL,):
        password = url.partition("@")[0].rpartition(":")[2] if "@" in url else ""
        found.append(password)
    return [secret for secret in found if len(secret) >= 3]


def _log(request: HttpRequest, service: Service, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}".strip()
    for secret in _secrets():
        message = message.replace(secret, "***")
    logger.warning("%s %s: 503, the %s is not answering (%s)", request.method, request.path, service, message)


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 for an error of `UNAVAILABLE_ERRORS`: JSON under /api/, else a page."""
    service = service_of(exc) or "database"
    _log(request, service, exc)
    detail = f"The {service} is not answering; try again shortly."
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": detail}, status=503)
    else:
        # No request context: its processors would ask the stalled service again (the user).
        html = render_to_string("unavailable.html", {"service": service, "retry_after": RETRY_AFTER})
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    response._has_been_logged = True  # logged above: not again as django.request's 5xx error
    return response
