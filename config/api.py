"""The JSON API, mounted at /api/.

Routers live next to their models (members/api.py, campaigns/api.py); this
module builds the API object and turns every refusal into a JSON answer with a
declared status: 401/403 from the auth step, a service error with the status of
its type (common.api.error_status: 403, 404, 409, 413, 422 naming the field, 429
with Retry-After), 413 for a body over the limit, 422 naming the field for
invalid input (malformed JSON included). Nothing a client sends is a 500. A database
or task queue that does not answer in time is a 503 with Retry-After (config/unavailable.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import register_converter
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError, ValidationError
from ninja.parser import Parser
from ninja_extra import NinjaExtraAPI
from ninja_jwt import exceptions as jwt_exceptions
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaigns import heartbeat, tasks
from campaigns.api import router as campaigns_router
from campaigns.engine import smtp_check
from common.api import ErrorOut, body_size_check, error_status, responses, staff_auth
from common.db import database_budget
from common.errors import InvalidInput, ServiceError, ServiceUnavailable, Throttled
from config.unavailable import unavailable_response
from members.api import audiences_router, auth_router, members_router
from members.services import login_throttle_mode

logger = logging.getLogger(__name__)


class JsonObjectParser(Parser):
    """Request bodies are JSON objects: ninja's schemas read attributes, so a bare
    list, string, number or null would otherwise pass for an empty object. (An
    optional body may be left out entirely.)"""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError(f"the body must be a JSON object, not {type(data).__name__}")
        return data


class EmailerAPI(NinjaExtraAPI):
    def get_openapi_schema(self, **kwargs: Any):
        """An optional body is an object or nothing, never `null`: drop the `null`
        alternative ninja adds to the schema of a body parameter defaulting to None."""
        schema = super().get_openapi_schema(**kwargs)
        for operations in schema["paths"].values():
            for operation in operations.values():
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    options = media.get("schema", {}).get("anyOf", [])
                    if len(options) == 2 and {"type": "null"} in options:
                        media["schema"] = next(o for o in options if o != {"type": "null"})
        return schema


api = EmailerAPI(
    parser=JsonObjectParser(),
    title="Emailer API",
    version="1.0.0",
    urls_namespace="api",
    description=(
        'Email campaigns ("email bursts") to registered members. Log in with `POST /api/login/`, '
        "then send `Authorization: Bearer <access>` with every call. Everything but login, token "
        "refresh/verify, the docs and `/api/health/` needs a staff member's token; sending, "
        "scheduling, pausing, resuming, cancelling and retrying also need the "
        "`campaigns.send_emailburst` permission."
    ),
)


# --- errors -------------------------------------------------------------------------


def _field(loc: list[Any]) -> str:
    """`["body", "payload", "email"]` -> `email`; `["query", "limit"]` -> `limit`."""
    rest = list(loc[1:])
    if loc and loc[0] == "body" and rest:
        rest = rest[1:]  # the handler's body parameter name
    return ".".join(str(part) for part in rest) or (str(loc[0]) if loc else "body")


def _item(loc: list[Any], msg: str, type_: str = "value_error", field: str | None = None) -> dict[str, Any]:
    return {
        "loc": [p if isinstance(p, int) else str(p) for p in loc],
        "field": field or _field(loc),
        "msg": msg.removeprefix("Value error, "),
        "type": type_,
    }


def invalid(request: HttpRequest, items: list[dict[str, Any]]) -> HttpResponse:
    return api.create_response(request, {"detail": items}, status=422)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return invalid(
        request, [_item(e.get("loc", []), str(e.get("msg", "")), str(e.get("type", ""))) for e in exc.errors]
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400:
        # ninja's "Cannot parse request body": malformed JSON is invalid input.
        cause = exc.__cause__
        if isinstance(cause, json.JSONDecodeError | UnicodeDecodeError):
            reason = f"Malformed JSON: {cause}"
        else:
            reason = f"Invalid JSON body: {cause}" if cause is not None else str(exc)
        return invalid(request, [_item(["body"], reason, "json_invalid")])
    response = api.create_response(request, {"detail": str(exc)}, status=exc.status_code)
    if exc.status_code == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(jwt_exceptions.AuthenticationFailed)
def on_token_refused(request: HttpRequest, exc: jwt_exceptions.AuthenticationFailed) -> HttpResponse:
    detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
    body = {"detail": str(detail.get("detail", "Authentication failed")), "code": str(detail.get("code", ""))}
    response = api.create_response(request, body, status=401)
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


@api.exception_handler(jwt_exceptions.ValidationError)
def on_token_input_error(request: HttpRequest, exc: jwt_exceptions.ValidationError) -> HttpResponse:
    detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
    items = [
        _item(["body", name], str(message[0] if isinstance(message, list) else message), field=name)
        for name, message in detail.items()
        if name not in {"detail", "code"}
    ]
    return invalid(request, items or [_item(["body"], str(detail.get("detail", "Invalid input.")))])


@api.exception_handler(RequestDataTooBig)
@api.exception_handler(TooManyFieldsSent)
@api.exception_handler(TooManyFilesSent)
def on_too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
    return api.create_response(request, {"detail": "Request body too large."}, status=413)


@api.exception_handler(MultiPartParserError)
@api.exception_handler(SuspiciousOperation)
def on_bad_body(request: HttpRequest, exc: Exception) -> HttpResponse:
    return invalid(request, [_item(["body"], f"The request body could not be read: {exc}", "body_invalid")])


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
@api.exception_handler(RedisConnectionError)
@api.exception_handler(RedisTimeoutError)
@api.exception_handler(ServiceUnavailable)
def on_service_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """PostgreSQL or Redis did not answer in time: 503 naming which, never a 500 (ninja
    would otherwise hand these to Django as unhandled, or print a traceback under DEBUG)."""
    return unavailable_response(request, exc)


@api.exception_handler(ServiceError)
def on_service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    status = error_status(exc)
    if status == 422:
        field = exc.field or "body"
        item = _item(["body", field], exc.message, field=field)
        # A template's problem also says where it is (absent from every other 422).
        if isinstance(exc, InvalidInput) and (exc.line is not None or exc.snippet):
            item.update(line=exc.line, snippet=exc.snippet)
        return invalid(request, [item])
    # A 404 reads like every other 404 of the API; the message naming the object is the admin's.
    detail = "Not Found" if status == 404 else exc.message
    response = api.create_response(request, {"detail": detail}, status=status)
    if isinstance(exc, Throttled):
        response["Retry-After"] = str(exc.wait)
    return response


# --- system: SMTP check and health --------------------------------------------------------

system_router = Router(tags=["system"])


class EmailerOk(Schema):
    status: Literal["success"]
    message: str
    sender_email: str


class EmailerError(Schema):
    status: Literal["error"]
    message: str


class HealthOut(Schema):
    status: Literal["ok", "degraded", "error"] = Field(
        description="`error` (503): the database or the queue is unreachable; `degraded` (200): "
        "they are reachable but a consumer is stuck; else `ok`."
    )
    database: Literal["ok", "error"]
    queue: Literal["ok", "error"]
    workers: Literal["ok", "stuck", "unknown"] = Field(
        description="`stuck` when a live consumer has been busy on one chunk task for longer than "
        "WORKER_STUCK_AFTER seconds; `unknown` when the queue cannot be read."
    )
    consumers: int | None = Field(description="Live consumer processes (seen in the last 30 s).")
    busy_chunks: int | None = Field(description="Chunk tasks running now.")
    oldest_chunk_seconds: float | None = Field(
        description="How long the longest-running chunk task has been running; null when none runs."
    )
    last_periodic_run: datetime | None
    login_throttle: Literal["shared", "per-process"] = Field(
        description="`per-process` while the shared cache (Redis) does not answer: logins go on, each web "
        "process counting failed attempts for itself."
    )


@system_router.get(
    "/test/emailer/",
    auth=staff_auth,
    response=responses({200: EmailerOk, 503: EmailerError}),
    summary="Check the SMTP server",
    operation_id="test_emailer",
)
def test_emailer(request: HttpRequest):
    """Staff only. Connects to the configured SMTP server (EHLO, STARTTLS and AUTH when
    configured, QUIT) without sending mail. 503 with the reason (never a secret)
    when that fails."""
    check = smtp_check()
    if check.ok:
        return {"status": "success", "message": check.message, "sender_email": settings.SENDER_EMAIL}
    return Status(503, {"status": "error", "message": check.message})


# /api/health/ answers within 10 s whatever stalls (SPEC 17): the database is asked in the
# request (its connecting and answering bounded together), the queue in a thread of its
# own meanwhile; what has not answered by the deadline is reported down.
HEALTH_DEADLINE = 8.0
HEALTH_DATABASE_BUDGET = 6.0


class _QueueProbe:
    """One round of the queue's checks (ping, then the periodic run and the consumers),
    filling `result` as each answers: a probe cut short still reports what it learnt."""

    def __init__(self) -> None:
        self.result: dict[str, Any] = {}
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result["queue"] = "ok" if tasks.queue_ping() else "error"
            if self.result["queue"] != "ok":
                return  # the reads below would only wait as long again
            self.result["last_periodic_run"] = tasks.last_periodic_run()
            report = heartbeat.workers_report()
            self.result.update(
                workers=report.status,
                consumers=report.consumers,
                busy_chunks=report.busy_chunks,
                oldest_chunk_seconds=report.oldest_chunk_seconds,
            )
        except Exception:
            logger.exception("health: what the consumers do is unknown")
        finally:
            self.done.set()


_queue_probe_lock = threading.Lock()
_queue_probe: _QueueProbe | None = None


def _queue_probe_started() -> _QueueProbe:
    """A probe of the queue, running: the one still waiting on a stalled Redis if there is
    one (health polled every second must not pile up a thread per call), else a new one."""
    global _queue_probe
    with _queue_probe_lock:
        if _queue_probe is None or _queue_probe.done.is_set():
            _queue_probe = _QueueProbe()
            threading.Thread(target=_queue_probe.run, name="health-queue", daemon=True).start()
        return _queue_probe


def _database_check() -> Literal["ok", "error"]:
    try:
        with database_budget(HEALTH_DATABASE_BUDGET), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception:
        logger.exception("health: database unreachable")
        return "error"


@system_router.get(
    "/health/",
    auth=None,
    response={200: HealthOut, 503: HealthOut, 413: ErrorOut},
    summary="Health",
    operation_id="health",
)
def health(request: HttpRequest):
    """Public. 200 when the database and the task queue are reachable, else 503 naming
    which is down (`database`, `queue`: `error`), within 10 s even while one of them
    stalls; with what the consumers are doing (`degraded`, still 200, when one is stuck
    on a chunk: the web keeps working, and staff can pause or cancel the burst) and the
    time of the last periodic task run (null before the first, or while the queue is down)."""
    body_size_check(request)
    deadline = time.monotonic() + HEALTH_DEADLINE
    probe = _queue_probe_started()
    checks: dict[str, Any] = {"database": _database_check()}
    if not probe.done.wait(max(0.0, deadline - time.monotonic())) and "queue" not in probe.result:
        logger.error("health: the queue did not answer within %g s", HEALTH_DEADLINE)
    checks.update(
        queue="error",
        last_periodic_run=None,
        workers="unknown",
        consumers=None,
        busy_chunks=None,
        oldest_chunk_seconds=None,
    )
    checks.update(probe.result)
    checks["login_throttle"] = login_throttle_mode()
    ok = checks["database"] == "ok" and checks["queue"] == "ok"
    status = "error" if not ok else "degraded" if checks["workers"] == "stuck" else "ok"
    return Status(200 if ok else 503, {"status": status, **checks})


# Last: any other path under /api/ (a non-numeric id, a missing trailing slash)
# is a JSON 404 rather than Django's HTML page or a body-dropping redirect.
fallback_router = Router()


class AnythingConverter:
    """Like Django's `path` converter, but newlines match too."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnythingConverter, "anything")


@fallback_router.api_operation(
    ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    "/{anything:rest}",
    auth=None,
    include_in_schema=False,
)
def not_found(request: HttpRequest, rest: str):
    raise Http404


api.add_router("", auth_router)
api.add_router("", members_router)
api.add_router("", audiences_router)
api.add_router("", campaigns_router)
api.add_router("", system_router)
api.add_router("", fallback_router)
