"""The API kit both apps' routers share: authentication, request limits, input types,
error and page schemas, pagination, and the one mapping of service errors to HTTP.

Input types are strict where JSON has a native type (an integer is never the
string "1", a boolean never 0/1) and reject what the database cannot store (NUL
characters, lone surrogates), so that well-formed but unstorable input is a 422,
never a 500.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any

from django.conf import settings
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from ninja import Field, Schema
from ninja.errors import AuthorizationError
from ninja_jwt.authentication import JWTAuth
from pydantic import AfterValidator, BeforeValidator, StrictBool, StrictInt, StringConstraints, WithJsonSchema

from common.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError, Throttled, TooLarge

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser

# --- errors: one status per type ------------------------------------------------------

# A service error answers with the status of the nearest class in its MRO listed here
# (IllegalState is a Conflict: 409).
ERROR_STATUS: dict[type[ServiceError], int] = {
    ServiceError: 422,
    InvalidInput: 422,
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    TooLarge: 413,
    Throttled: 429,
}


def error_status(exc: ServiceError) -> int:
    """The HTTP status a service error answers with."""
    return next(ERROR_STATUS[kind] for kind in type(exc).__mro__ if kind in ERROR_STATUS)


# --- request limits and the caller -------------------------------------------------------


def body_size_check(request: HttpRequest, limit: int | None = None) -> None:
    """413 for a declared body above the limit, before anything reads it."""
    if limit is None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if limit is not None and length > limit:
        raise RequestDataTooBig("Request body exceeded the size limit.")


def attachment_body_limit() -> int:
    """An upload may carry a whole attachment plus its multipart framing and form fields."""
    return settings.ATTACHMENT_MAX_SIZE + (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)


def client_ip(request: HttpRequest) -> str:
    # Behind N trusted proxies (TRUSTED_PROXY_COUNT), the client is the address the
    # outermost of them saw: the N-th from the right in X-Forwarded-For. Anything
    # further left is whatever the client chose to send.
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR") or "unknown"


# --- authentication ----------------------------------------------------------------------


class StaffAuth(JWTAuth):
    """JWT bearer token (from `POST /api/login/`) of an active staff member.

    Decided before the request body is read: no or a bad token is 401, a
    non-staff member (or staff without the operation's permission, or refused by
    `check`) 403, then a body above the size limit 413.
    """

    openapi_bearerFormat = "JWT"

    def __init__(self, *, permission: str | None = None, body_limit: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.permission = permission
        self.body_limit = body_limit

    def authenticate(self, request: HttpRequest, token: str) -> AbstractUser:
        user = self.jwt_authenticate(request, token)
        if not user.is_staff:
            raise AuthorizationError(message="Staff access required.")
        if self.permission and not user.has_perm(self.permission):
            raise AuthorizationError(message=f"The {self.permission} permission is required.")
        self.check(request, user)
        body_size_check(request, self.body_limit() if self.body_limit else None)
        return user

    def check(self, request: HttpRequest, user: AbstractUser) -> None:
        """A further rule for a staff caller, decided before the body is read: raise
        `AuthorizationError` (403) to refuse. None here."""


class SenderAuth(StaffAuth):
    """JWT bearer token of an active staff member with the `campaigns.send_emailburst`
    permission (superusers have it): sending, scheduling, pausing, resuming,
    cancelling and retrying."""

    def __init__(self) -> None:
        super().__init__(permission="campaigns.send_emailburst")


staff_auth = StaffAuth()
sender_auth = SenderAuth()


# --- reusable input types --------------------------------------------------------------

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "must not contain NUL characters or unpaired surrogates"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID = 2**63 - 1


def _storable(value: str) -> str:
    if UNSTORABLE.search(value):
        raise ValueError(UNSTORABLE_MESSAGE)
    return value


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be a single line without control characters")
    return value


def _email(value: str) -> str:
    try:
        EmailValidator()(value)
    except DjangoValidationError:
        raise ValueError("Enter a valid email address.") from None
    return value


def _email_or_blank(value: str) -> str:
    return _email(value) if value else value


def _username(value: str) -> str:
    try:
        UnicodeUsernameValidator()(value)
    except DjangoValidationError as exc:
        raise ValueError(exc.messages[0]) from None
    return value


def json_string(value: Any) -> Any:
    """Dates arrive as JSON strings; refuse numbers pydantic would read as timestamps."""
    if value is not None and not isinstance(value, str | date):
        raise ValueError("must be a string in ISO 8601 format")
    return value


Text = Annotated[str, AfterValidator(_storable)]
Line = Annotated[str, AfterValidator(_storable), AfterValidator(_single_line)]
Email = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]
EmailOrBlank = Annotated[str, StringConstraints(max_length=254), AfterValidator(_email_or_blank)]
Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=150),
    AfterValidator(_username),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 150, "pattern": r"^[\w.@+-]+$"}),
]
Name = Annotated[
    str, StringConstraints(max_length=150), AfterValidator(_storable), AfterValidator(_single_line)
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_storable)]
JsonDate = Annotated[date, BeforeValidator(json_string)]
JsonDatetime = Annotated[datetime, BeforeValidator(json_string)]
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
Bool = StrictBool
SearchText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)]


# --- error answers -------------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str


class FieldError(Schema):
    loc: list[str | int] = Field(
        description="Where the error is: source (body, query, path), then the field."
    )
    field: str = Field(description="The offending field; `body` when the body as a whole is wrong.")
    msg: str = Field(description="Why the value was refused.")
    type: str
    line: int | None = Field(
        None, description="For a template: the line of the field where the problem is (1 is the first)."
    )
    snippet: str | None = Field(None, description="For a template: the offending text, shortened.")


class ValidationErrorOut(Schema):
    detail: list[FieldError]


AUTH_ERRORS: dict[int, type[Schema]] = {
    401: ErrorOut,
    403: ErrorOut,
    413: ErrorOut,
    422: ValidationErrorOut,
}
OBJECT_ERRORS: dict[int, type[Schema]] = {**AUTH_ERRORS, 404: ErrorOut}


def responses(ok: dict[int, Any], *, errors: dict[int, type[Schema]] = AUTH_ERRORS, **extra: Any) -> dict:
    """The success answers plus the error answers every protected operation may give."""
    merged: dict[int, Any] = dict(ok)
    merged.update(errors)
    for code, schema in extra.items():
        merged[int(code.removeprefix("s"))] = schema
    return merged


# --- pagination -----------------------------------------------------------------------------

MAX_LIMIT = 500
MAX_OFFSET = 2**31 - 1
CURSOR_MAX = 400


class PageQuery(Schema):
    limit: int = Field(
        100, ge=1, description=f"Page size; values above {MAX_LIMIT} are treated as {MAX_LIMIT}."
    )
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Rows to skip; ignored with `cursor`.")
    cursor: str | None = Field(
        None,
        max_length=CURSOR_MAX,
        description="The page after the one whose `next` link carried it: read by key, as fast "
        "at any depth as the first page.",
    )


class PageOut(Schema):
    count: int = Field(description="All rows of the list (with its filters), not only this page's.")
    next: str | None = Field(
        description="The next page's URL (a cursor link: as fast at any depth), or null on the last page."
    )


def _order_keys(queryset: QuerySet) -> list[tuple[str, bool]]:
    """(field, descending) for each field of the queryset's explicit ordering, which
    must end with the primary key so that the order is total."""
    keys = [(str(f).lstrip("-"), str(f).startswith("-")) for f in queryset.query.order_by]
    if not keys or keys[-1][0] not in {"id", "pk"}:
        raise ValueError("a paginated queryset is ordered by its fields and then by id")
    return keys


def _encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, date) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a cursor value")


def _after_cursor(queryset: QuerySet, cursor: str, keys: list[tuple[str, bool]]) -> QuerySet:
    """The rows after the cursor's row in the queryset's order (a keyset condition)."""
    try:
        values = json.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), parse_constant=_no_constant
        )
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError
        model = queryset.model
        values = [
            model._meta.get_field(name).to_python(value) if value is not None else None
            for (name, _desc), value in zip(keys, values, strict=True)
        ]
        if any(v is None for v in values):
            raise ValueError
        # A datetime the database could not hold in UTC (SQLite's adapter would raise).
        for value in values:
            if isinstance(value, datetime):
                value.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, DjangoValidationError, UnicodeDecodeError):
        raise InvalidInput("cursor: not a cursor from a `next` link of this list", field="cursor") from None
    after = Q()
    for i, (name, descending) in enumerate(keys):
        step = Q(**{f"{name}__{'lt' if descending else 'gt'}": values[i]})
        for earlier, (earlier_name, _d) in enumerate(keys[:i]):
            step &= Q(**{earlier_name: values[earlier]})
        after |= step
    return queryset.filter(after)


def paginate(
    queryset: QuerySet, page: PageQuery, request: HttpRequest, *, count: int | None = None
) -> dict[str, Any]:
    """`{"items", "count", "next"}`: one query for the page (one more row read tells
    whether there is a next one) and one for `count` unless the caller knows it
    (a counter). `next` is a cursor link: the page after it is read by key."""
    limit = min(page.limit, MAX_LIMIT)
    keys = _order_keys(queryset)
    rows = _after_cursor(queryset, page.cursor, keys) if page.cursor else queryset
    start = 0 if page.cursor else page.offset
    items = list(rows[start : start + limit + 1])
    next_url = None
    if len(items) > limit:
        items = items[:limit]
        last = items[-1]
        params = request.GET.copy()
        params.pop("offset", None)
        params["cursor"] = _encode_cursor([getattr(last, name) for name, _d in keys])
        params["limit"] = str(limit)
        next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
    return {"items": items, "count": queryset.count() if count is None else count, "next": next_url}
