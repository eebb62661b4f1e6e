"""API schemas of members and of the login tokens; the shared input types and error
and page schemas are in common.api."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import StringConstraints

from common.api import (
    Bool,
    Email,
    Id,
    JsonDate,
    Line,
    Name,
    PageOut,
    PageQuery,
    Password,
    SearchText,
    Text,
    Username,
)

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


class MemberPage(PageOut):
    items: list[MemberOut]


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


# --- mailing lists and segments ------------------------------------------------------------------

ListName = Annotated[Line, StringConstraints(min_length=1, max_length=200)]
RULES_DOC = (
    '`{"match": "all" | "any", "conditions": [{"field", "op", "value"}, ...]}`. Fields and ops: '
    "`is_verified`, `is_staff`: `is` true/false; `date_joined`, `birth_date`: `before`, `after` "
    "`YYYY-MM-DD`; `birth_month`: `is` 1-12; `email`, `first_name`, `last_name`: `equals`, "
    "`contains`, `endswith` text, `empty`, `not_empty` (no value); `list`: `in`, `not_in` a list id; "
    "`received`: `yes`, `no` a burst id (had a `sent` delivery of it). A bad condition is a 422 "
    "naming it."
)


class MailingListOut(Schema):
    id: int
    name: str
    description: str
    member_count: int
    created_at: datetime


class MailingListPage(PageOut):
    items: list[MailingListOut]


class MailingListIn(Schema):
    name: ListName = Field(description="Unique (case-insensitively), at most 200 characters.")
    description: Text = ""


class MailingListPatch(Schema):
    name: ListName = None  # type: ignore[assignment]
    description: Text = None  # type: ignore[assignment]


class MemberIdsIn(Schema):
    members: list[Id] = Field(
        description="Member ids; unknown ids are a 422 that lists them.", max_length=10_000
    )


class MembershipChangeOut(Schema):
    list_id: int
    changed: int = Field(description="Members added (or removed) by this request.")
    member_count: int


class SegmentOut(Schema):
    id: int
    name: str
    description: str
    rules: dict[str, Any] = Field(description=RULES_DOC)
    member_count: int = Field(description="Members the rules select now.")
    created_at: datetime
    updated_at: datetime


class SegmentPage(PageOut):
    items: list[SegmentOut]


class SegmentIn(Schema):
    name: ListName = Field(description="Unique (case-insensitively), at most 200 characters.")
    description: Text = ""
    rules: dict[str, Any] = Field(description=RULES_DOC, examples=[{"match": "all", "conditions": []}])


class SegmentPatch(Schema):
    name: ListName = None  # type: ignore[assignment]
    description: Text = None  # type: ignore[assignment]
    rules: dict[str, Any] = Field(None, description=RULES_DOC)  # type: ignore[assignment]
