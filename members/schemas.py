"""API schemas shared by every router, and the member schemas.

Input types are strict where JSON has a native type (an integer is never the
string "1", a boolean never 0/1) and reject what the database cannot store
(NUL characters, lone surrogates), so that well-formed but unstorable input is
a 422, never a 500.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from ninja import Field, Schema
from pydantic import AfterValidator, BeforeValidator, StrictBool, StrictInt, StringConstraints, WithJsonSchema

# --- reusable input types -------------------------------------------------------

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID = 2**63 - 1


def _storable(value: str) -> str:
    if UNSTORABLE.search(value):
        raise ValueError("must not contain NUL characters or unpaired surrogates")
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


def _json_string(value: Any) -> Any:
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
JsonDate = Annotated[date, BeforeValidator(_json_string)]
JsonDatetime = Annotated[datetime, BeforeValidator(_json_string)]
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
Bool = StrictBool
SearchText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)]


# --- errors ---------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str


class FieldError(Schema):
    loc: list[str | int] = Field(
        description="Where the error is: source (body, query, path), then the field."
    )
    field: str = Field(description="The offending field; `body` when the body as a whole is wrong.")
    msg: str = Field(description="Why the value was refused.")
    type: str


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


# --- pagination -------------------------------------------------------------------

MAX_LIMIT = 500
MAX_OFFSET = 2**31 - 1


class PageQuery(Schema):
    limit: int = Field(
        100, ge=1, description=f"Page size; values above {MAX_LIMIT} are treated as {MAX_LIMIT}."
    )
    offset: int = Field(0, ge=0, le=MAX_OFFSET)

    def slice(self, queryset):
        limit = min(self.limit, MAX_LIMIT)
        return queryset[self.offset : self.offset + limit]


def paginate(queryset, page: PageQuery) -> dict[str, Any]:
    """`{"items", "count"}` in two queries whatever the number of rows."""
    return {"items": list(page.slice(queryset)), "count": queryset.count()}


# --- members ------------------------------------------------------------------------


class MemberOut(Schema):
    id: int
    username: str
    email: str
    first_name: str
    middle_name: str
    last_name: str
    birth_date: date | None
    is_verified: bool
    is_staff: bool
    is_superuser: bool
    is_active: bool
    date_joined: datetime
    unsubscribed_at: datetime | None


class MemberPage(Schema):
    items: list[MemberOut]
    count: int


class MemberQuery(PageQuery):
    search: SearchText | None = Field(
        None, description="Words matched (case-insensitively) against username, names and email."
    )


class MemberIn(Schema):
    """Create, or replace with PUT: omitted optional fields take their defaults,
    except `is_staff` and `is_superuser`, which stay as they are when omitted.
    `username`, `email`, `password` and `is_active` of a staff user or a superuser:
    only a superuser may change them."""

    username: Username
    email: Email
    password: Password | None = Field(
        None,
        description=(
            "Write-only; stored hashed. Omitted: unchanged (unusable on create). Only a superuser "
            "sets a staff user's or a superuser's; nobody sets their own here (the admin's password "
            "change page asks for the current one)."
        ),
    )
    first_name: Name = ""
    middle_name: Name = ""
    last_name: Name = ""
    birth_date: JsonDate | None = None
    is_verified: Bool = False
    is_active: Bool = True
    is_staff: Bool | None = Field(None, description="Only a superuser may change it.")
    is_superuser: Bool | None = Field(None, description="Only a superuser may change it.")


class MemberPatch(Schema):
    """Partial update: only the fields sent change. `username`, `email`, `password` and
    `is_active` of a staff user or a superuser: only a superuser may change them."""

    username: Username = None  # type: ignore[assignment]
    email: Email = None  # type: ignore[assignment]
    password: Password = Field(  # type: ignore[assignment]
        None,
        description=(
            "Write-only; stored hashed. Only a superuser sets a staff user's or a superuser's; "
            "nobody sets their own here (the admin's password change page asks for the current one)."
        ),
    )
    first_name: Name = None  # type: ignore[assignment]
    middle_name: Name = None  # type: ignore[assignment]
    last_name: Name = None  # type: ignore[assignment]
    birth_date: JsonDate | None = None
    is_verified: Bool = None  # type: ignore[assignment]
    is_active: Bool = None  # type: ignore[assignment]
    is_staff: Bool = Field(None, description="Only a superuser may change it.")  # type: ignore[assignment]
    is_superuser: Bool = Field(None, description="Only a superuser may change it.")  # type: ignore[assignment]


# --- auth ------------------------------------------------------------------------------


class TokenPairOut(Schema):
    access: str
    refresh: str


class VerifiedOut(Schema):
    pass
