"""API schemas of members and of the login tokens; the shared input types and error
and page schemas are in common.api."""

from __future__ import annotations

from datetime import date, datetime

from ninja import Field, Schema

from common.api import Bool, Email, JsonDate, Name, PageOut, PageQuery, Password, SearchText, Username

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
