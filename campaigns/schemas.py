"""API schemas of email bursts, deliveries and statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from ninja import Field, Schema
from pydantic import AwareDatetime, BeforeValidator, StringConstraints, model_validator

from campaigns.models import BurstStatus, DeliveryStatus, MailEventKind, MatchedBy
from common.api import MAX_ID, Bool, Email, EmailOrBlank, Id, Line, PageOut, PageQuery, Text, json_string
from members.models import SuppressionReason

Subject = Annotated[Line, StringConstraints(min_length=1, max_length=200)]
BurstName = Annotated[Line, StringConstraints(max_length=200)]
# May be empty when there is an HTML body (the service refuses both empty).
Body = Text
FromName = Annotated[Line, StringConstraints(max_length=100)]
SendAt = Annotated[AwareDatetime, BeforeValidator(json_string)]


def _ids(burst, field: str) -> list[int]:
    """An audience field's ids: read for the whole page at once (`audience_ids_fill`),
    else from the burst itself."""
    known = getattr(burst, "audience_ids", None)
    if known is not None:
        return known[field]
    return sorted(getattr(burst, field).values_list("pk", flat=True))


class BurstOut(Schema):
    id: int
    name: str = Field(
        description="The campaign's name for staff (empty: the admin derives one from the subject)."
    )
    subject: str
    body: str
    html_body: str
    sender: str
    from_name: str
    reply_to: str
    status: BurstStatus
    pause_reason: str
    recipient_count: int = Field(
        description="Deliveries once the burst has started; before that, the members it would mail now."
    )
    all_members: bool
    lists: list[int] = Field(description="Mailing list ids whose members it mails.")
    segments: list[int] = Field(description="Segment ids whose members it mails.")
    exclude_lists: list[int] = Field(description="Mailing list ids whose members it leaves out.")
    exclude_segments: list[int] = Field(description="Segment ids whose members it leaves out.")
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_lists(burst) -> list[int]:
        return _ids(burst, "lists")

    @staticmethod
    def resolve_segments(burst) -> list[int]:
        return _ids(burst, "segments")

    @staticmethod
    def resolve_exclude_lists(burst) -> list[int]:
        return _ids(burst, "exclude_lists")

    @staticmethod
    def resolve_exclude_segments(burst) -> list[int]:
        return _ids(burst, "exclude_segments")


class BurstPage(PageOut):
    items: list[BurstOut]


AUDIENCE_FIELDS = ("recipients", "lists", "segments", "exclude_lists", "exclude_segments")


def _one_audience(values):
    if getattr(values, "all_members", None) and any(getattr(values, f, None) for f in AUDIENCE_FIELDS):
        raise ValueError(
            "give either all_members: true or recipients, lists and segments (with exclusions), not both"
        )
    return values


class BurstIn(Schema):
    """Create, or replace with PUT (omitted optional fields take their defaults).
    Subject, bodies and from_name are Django templates rendered per member."""

    name: BurstName = Field("", description="The campaign's name for staff (optional, never mailed).")
    subject: Subject = Field(description="At most 200 characters, one line.")
    body: Body = Field(
        "",
        description="Plain-text body. May be empty when html_body is given: the text part is then "
        'generated from the HTML (422 "body or html_body is required" when both are empty).',
    )
    html_body: Text = ""
    sender: EmailOrBlank = Field("", description="From address; blank: the configured SENDER_EMAIL.")
    from_name: FromName = ""
    reply_to: EmailOrBlank = ""
    recipients: list[Id] = Field(default_factory=list, description="Member ids (not with all_members).")
    lists: list[Id] = Field(default_factory=list, description="Mailing list ids (not with all_members).")
    segments: list[Id] = Field(default_factory=list, description="Segment ids (not with all_members).")
    exclude_lists: list[Id] = Field(default_factory=list, description="Mailing list ids to leave out.")
    exclude_segments: list[Id] = Field(default_factory=list, description="Segment ids to leave out.")
    all_members: Bool = Field(False, description="Every active, subscribed member at send time.")

    @model_validator(mode="after")
    def one_audience(self):
        return _one_audience(self)


class BurstPatch(Schema):
    """Partial update: only the fields sent change."""

    name: BurstName = None  # type: ignore[assignment]
    subject: Subject = None  # type: ignore[assignment]
    body: Body = None  # type: ignore[assignment]
    html_body: Text = None  # type: ignore[assignment]
    sender: EmailOrBlank = None  # type: ignore[assignment]
    from_name: FromName = None  # type: ignore[assignment]
    reply_to: EmailOrBlank = None  # type: ignore[assignment]
    recipients: list[Id] = None  # type: ignore[assignment]
    lists: list[Id] = None  # type: ignore[assignment]
    segments: list[Id] = None  # type: ignore[assignment]
    exclude_lists: list[Id] = None  # type: ignore[assignment]
    exclude_segments: list[Id] = None  # type: ignore[assignment]
    all_members: Bool = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def one_audience(self):
        return _one_audience(self)


class ScheduleIn(Schema):
    send_at: SendAt = Field(description="ISO 8601 with a time zone, in the future.")


class RetryIn(Schema):
    statuses: list[DeliveryStatus] = Field(
        default_factory=lambda: [DeliveryStatus.CONNECTION_ERROR, DeliveryStatus.FAILED],
        description="Delivery statuses to send again: connection_error, failed, other_error. "
        "not_found is never retried (422).",
    )


class RetryOut(Schema):
    email_burst_id: int
    requeued: int


class StatusCounts(Schema):
    pending: int
    sent: int
    not_found: int
    failed: int
    connection_error: int
    other_error: int
    skipped: int


class StatsOut(Schema):
    email_burst_id: int
    status: BurstStatus
    total_recipients: int = Field(description="All of the burst's deliveries.")
    sent_count: int
    failed_count: int = Field(description="not_found + failed + connection_error + other_error.")
    pending_count: int = Field(description="Not finished yet, those waiting for a retry included.")
    skipped_count: int
    success_rate: float = Field(
        description="sent / (total - skipped) x 100, rounded to 2 places; 0 when nothing was to be sent."
    )
    status_counts: StatusCounts
    retrying_count: int = Field(
        description="Pending deliveries waiting for a retry: a temporary failure (a 4xx reply, "
        "a dropped connection) sent them back for another try later. Part of pending_count."
    )
    next_retry_at: datetime | None = Field(
        description="When the first of those may be tried again (it may be past: due now); "
        "null when none waits for a retry."
    )
    bounced_count: int = Field(
        description="Deliveries with a bounce reported after the server accepted them (each counted once)."
    )
    complained_count: int = Field(description="Deliveries a recipient reported as spam (each counted once).")


class DeliveryOut(Schema):
    id: int
    member_id: int | None = Field(description="Null once the member was deleted.")
    email: str = Field(description="The address used; blank once the member was deleted.")
    status: DeliveryStatus
    attempts: int
    error_message: str
    sent_at: datetime | None
    updated_at: datetime


class DeliveryPage(PageOut):
    items: list[DeliveryOut]


class DeliveryQuery(PageQuery):
    status: DeliveryStatus | None = None


class AttachmentOut(Schema):
    id: int
    filename: str
    content_type: str
    size: int
    created_at: datetime


# --- test sends, preview and pre-flight (SPEC section 11) -------------------------------------------


class BurstTestIn(Schema):
    emails: list[Email] = Field(
        min_length=1,
        max_length=10,
        description="1 to 10 addresses to send the test to; one given twice (in any case) gets one message.",
    )
    member: Id | None = Field(
        None, description="The member the test is rendered for; default: you (the caller)."
    )


class RefusedAddress(Schema):
    email: str
    reason: str = Field(description="The mail server's reply.")


class BurstTestOut(Schema):
    sent_to: list[str] = Field(description="The addresses the mail server accepted.")
    refused: list[RefusedAddress] = Field(description="The addresses it refused, each with its reply.")
    member: int = Field(description="The id of the member the test was rendered for.")


class MailServerError(Schema):
    status: Literal["error"]
    message: str = Field(description="Why the mail server cannot be used (never a secret).")


class PreviewQuery(Schema):
    member: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        None,
        description="The member to render for; default: the first member the burst would mail "
        "(or an example member with empty fields when there is none).",
    )


class PreviewOut(Schema):
    subject: str
    text: str
    html: str | None = Field(description="Null when the burst has no HTML body.")


class CheckOut(Schema):
    field: str = Field(description="The field concerned (`subject`, `body`, `html_body`, … or `member`).")
    message: str
    line: int | None = Field(None, description="The line of the template, when known.")
    snippet: str = Field("", description="The text around the problem.")
    count: int | None = Field(None, description="How many recipients it concerns, when it is about them.")
    example: str = Field("", description="An example (a recipient, or a rendered text).")


class SourceOut(Schema):
    source: str
    members: int


class PreflightOut(Schema):
    would_mail: int = Field(description="Recipients a send now would mail.")
    skipped: dict[str, int] = Field(description="Recipients a send now would skip, by reason.")
    errors: list[CheckOut] = Field(description="What refuses the send.")
    warnings: list[CheckOut] = Field(description="What does not stop the send but deserves a look.")
    sources: list[SourceOut] = Field(
        description="Where the audience comes from: members of each source (a member in two is mailed once)."
    )
    excluded: list[SourceOut] = Field(description="How many of them each exclusion leaves out.")


# --- bounces and complaints (SPEC section 13) -------------------------------------------------------


class MailEventOut(Schema):
    id: int
    kind: MailEventKind
    source: str = Field(description='"imap", "webhook:<esp>", "upload" or "command".')
    email: str = Field(description="The address the report is about; blank when none could be read.")
    delivery_id: int | None = Field(description="The delivery it was matched to; null when unmatched.")
    burst_id: int | None = Field(description="That delivery's burst.")
    member_id: int | None
    matched_by: MatchedBy = Field(
        description='"token" (the signed delivery token of the Message-ID), "relay_id" (the relay\'s '
        'message id), "address" (an address only: recorded, changes nothing) or "" (unmatched).'
    )
    diagnostic: str
    occurred_at: datetime | None
    received_at: datetime


class MailEventPage(PageOut):
    items: list[MailEventOut]


class MailEventQuery(PageQuery):
    kind: MailEventKind | None = None
    burst: int | None = Field(
        None, ge=1, le=MAX_ID, description="Only the events matched to this burst's deliveries."
    )


class SuppressionOut(Schema):
    id: int
    email: str
    reason: SuppressionReason
    event_id: int | None = Field(description="The mail event that caused it, if any.")
    note: str
    created_at: datetime
    created_by_id: int | None


class SuppressionPage(PageOut):
    items: list[SuppressionOut]


class SuppressionQuery(PageQuery):
    search: str | None = Field(None, max_length=254, description="Part of the address.")


class SuppressionIn(Schema):
    email: Email
    reason: SuppressionReason = SuppressionReason.MANUAL
    note: Text = Field("", max_length=2000)
