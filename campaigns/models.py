from __future__ import annotations

import re
from pathlib import PurePath

from django.conf import settings
from django.db import models
from django.db.models import Q


def default_sender() -> str:
    return settings.SENDER_EMAIL


# The legal moves between these statuses are campaigns.states.BURST_TRANSITIONS (a comment,
# not a docstring: the docstring would become the API schema's description).
class BurstStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"


EDITABLE_BURST_STATUSES = frozenset({BurstStatus.DRAFT, BurstStatus.SCHEDULED})


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    NOT_FOUND = "not_found", "Not found"
    CONNECTION_ERROR = "connection_error", "Connection error"
    FAILED = "failed", "Rejected"  # "Failed" is failed_count, every failure (vocabulary.py)
    OTHER_ERROR = "other_error", "Other error"
    SKIPPED = "skipped", "Skipped"


FAILED_DELIVERY_STATUSES = frozenset(
    {
        DeliveryStatus.NOT_FOUND,
        DeliveryStatus.FAILED,
        DeliveryStatus.CONNECTION_ERROR,
        DeliveryStatus.OTHER_ERROR,
    }
)


class EmailBurst(models.Model):
    name = models.CharField(
        max_length=200,
        blank=True,
        help_text="The campaign's name for staff (never shown to members). "
        "Empty: a readable name is derived from the subject.",
    )
    subject = models.CharField(max_length=200)
    body = models.TextField(
        blank=True,
        help_text="Plain-text body, a Django template rendered per member. "
        "May be empty when there is an HTML body: the text part is then generated from it.",
    )
    html_body = models.TextField(blank=True, help_text="Optional HTML body, a Django template.")
    sender = models.EmailField(default=default_sender, help_text="From address.")
    from_name = models.CharField(max_length=100, blank=True, help_text="Display name in From.")
    reply_to = models.EmailField(blank=True)
    recipients = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="email_bursts", blank=True)
    all_members = models.BooleanField(
        default=False, help_text="Send to every active, subscribed member at send time."
    )
    # The audience, besides `recipients`: members of these lists and segments, minus
    # those of the excluded ones (resolved in the database at send time).
    lists = models.ManyToManyField("members.MailingList", related_name="bursts", blank=True)
    segments = models.ManyToManyField("members.Segment", related_name="bursts", blank=True)
    exclude_lists = models.ManyToManyField("members.MailingList", related_name="excluding_bursts", blank=True)
    exclude_segments = models.ManyToManyField("members.Segment", related_name="excluding_bursts", blank=True)
    status = models.CharField(max_length=16, choices=BurstStatus.choices, default=BurstStatus.DRAFT)
    pause_reason = models.TextField(blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # False while deliveries are still being created: a burst is never
    # finished before all of its deliveries exist.
    deliveries_ready = models.BooleanField(default=False, editable=False)
    # Connection failures in a row across all workers; EMAIL_PAUSE_AFTER pauses.
    connection_failures = models.PositiveIntegerField(default=0, editable=False)
    # Seconds during which at least one chunk of the burst was sending (overlapping
    # chunks counted once; waits for retries excluded): the rate is messages / this.
    # `busy_until` is the end of the latest chunk counted so far.
    sending_seconds = models.FloatField(default=0, editable=False)
    busy_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Deliveries in each status, kept by the code that writes statuses (in the same
    # transaction), so a burst's figures cost the same whatever its size;
    # `manage.py recount_bursts` repairs them. `counts` reads them as a dict. Signed,
    # without a CHECK: a counter repaired by hand never makes a status write fail.
    count_pending = models.IntegerField(default=0, editable=False)
    count_sent = models.IntegerField(default=0, editable=False)
    count_not_found = models.IntegerField(default=0, editable=False)
    count_connection_error = models.IntegerField(default=0, editable=False)
    count_failed = models.IntegerField(default=0, editable=False)
    count_other_error = models.IntegerField(default=0, editable=False)
    count_skipped = models.IntegerField(default=0, editable=False)
    # Deliveries with a bounce or a complaint reported after SMTP accepted them (a
    # delivery is counted once in each, whatever number of events it has), kept by
    # `mail_event_record` like the status counters.
    count_bounced = models.IntegerField(default=0, editable=False)
    count_complained = models.IntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="created_bursts",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "email burst"
        verbose_name_plural = "email bursts"
        ordering = ["-created_at", "-id"]
        permissions = [
            ("send_emailburst", "Can send, schedule, pause, resume and cancel email bursts"),
        ]
        indexes = [
            models.Index(fields=["status", "scheduled_at"], name="burst_status_sched_idx"),
            models.Index(fields=["-created_at"], name="burst_created_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """The name staff see: `name`, else a stand-in derived from the subject."""
        return burst_display_name(name=self.name, subject=self.subject, burst_id=self.pk)

    @property
    def is_editable(self) -> bool:
        return self.status in EDITABLE_BURST_STATUSES

    @property
    def counts(self) -> dict[str, int]:
        """Deliveries by status, from the counters (every status a key)."""
        return {status: getattr(self, counter_field(status)) for status in DeliveryStatus.values}

    @property
    def delivery_total(self) -> int:
        return sum(self.counts.values())


# Template syntax in a subject, whole or broken (`{{ x }}`, `{{ x }`, `{ {x} }`,
# `{% … %}`, `{# … #}`, an unclosed `{{` to the end), then any brace left over.
_TEMPLATE_PART = re.compile(r"\{\s*[{%#].*?(?:[}%#]\s*\}|\}|$)|[{}]", re.S)


def burst_display_name(*, name: str, subject: str, burst_id: int | None = None) -> str:
    """A burst's name as staff see it: its `name`, or its subject with template
    syntax replaced by "…" ("Hello {{ member.first_name }}!" reads "Hello …!")."""
    if name.strip():
        return " ".join(name.split())
    readable = _TEMPLATE_PART.sub("…", subject)
    readable = re.sub(r"…(\s*…)+", "…", " ".join(readable.split())).strip()
    if readable.strip("… ,.:;!?-"):
        return readable
    return f"Burst {burst_id}" if burst_id else "Untitled burst"


def counter_field(status: str) -> str:
    """The EmailBurst field that counts the deliveries in `status`."""
    return f"count_{status}"


def attachment_path(instance: EmailAttachment, filename: str) -> str:
    return f"attachments/{instance.burst_id}/{PurePath(filename).name}"


class EmailAttachment(models.Model):
    burst = models.ForeignKey(EmailBurst, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "attachment"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.filename


class Delivery(models.Model):
    """One recipient of one burst, and what happened to their message."""

    # Indexed by (burst, id) and (burst, status, id) below: pages and claims in id order.
    # No database-level constraints on the two keys: PostgreSQL checks them row by row
    # at commit, about 40 % of the time of creating a million deliveries. Django's
    # deletes keep them (cascade, set null), and the chunk treats a delivery whose
    # member row is gone as the member's deleted.
    burst = models.ForeignKey(
        EmailBurst, on_delete=models.CASCADE, related_name="deliveries", db_index=False, db_constraint=False
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
        db_index=False,  # (member, -id) below serves every lookup by member
        db_constraint=False,
    )
    # The address used at send time; emptied when the member is deleted.
    email = models.EmailField(max_length=254, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Engine bookkeeping: who holds the delivery and until when, and when a
    # transient failure may be tried again.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The relay's own id for the message, from its reply to DATA ("250 Ok <id>"),
    # without the angle brackets: what ESP webhooks name the message by.
    # A database default too: deliveries are created by a raw INSERT … SELECT.
    relay_message_id = models.CharField(max_length=255, blank=True, default="", db_default="", editable=False)
    # When a bounce or a complaint about this message was reported (the first one);
    # `status` stays what SMTP said.
    bounced_at = models.DateTimeField(null=True, blank=True, editable=False)
    complained_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "delivery"
        verbose_name_plural = "deliveries"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["burst", "member"], name="delivery_burst_member_unique"),
        ]
        indexes = [
            # Claims (pending, in id order) and pages of one status read a range of it.
            models.Index(fields=["burst", "status", "id"], name="delivery_burst_status_id_idx"),
            models.Index(fields=["burst", "id"], name="delivery_burst_id_idx"),
            models.Index(
                fields=["lease_expires_at"],
                name="delivery_lease_idx",
                condition=Q(lease_expires_at__isnull=False),
            ),
            models.Index(fields=["claim_token"], name="delivery_claim_idx", condition=~Q(claim_token="")),
            models.Index(fields=["member", "-id"], name="delivery_member_recent_idx"),
            # The few deliveries waiting for a retry: how many and until when.
            models.Index(
                fields=["burst", "next_attempt_at"],
                name="delivery_retry_idx",
                condition=Q(next_attempt_at__isnull=False),
            ),
            # The few members whose address was not found once (suppression).
            models.Index(fields=["member"], name="delivery_not_found_idx", condition=Q(status="not_found")),
            # Webhooks name a message by the relay's id; most deliveries have none.
            models.Index(
                fields=["relay_message_id"], name="delivery_relay_id_idx", condition=~Q(relay_message_id="")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email or 'deleted member'}: {self.get_status_display()}"


class DailyOutcome(models.Model):
    """How many deliveries reached each status on a day (the site's time zone, by
    the time the status was written): the dashboard's figures, kept like the burst
    counters. A retry takes its deliveries back off the day they had failed on."""

    day = models.DateField()
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "daily outcome"
        ordering = ["day", "status"]
        constraints = [models.UniqueConstraint(fields=["day", "status"], name="daily_outcome_unique")]

    def __str__(self) -> str:
        return f"{self.day} {self.status}: {self.count}"


class DeliveryAttempt(models.Model):
    """One try of a delivery that did not end in a plain "sent": the SMTP reply or
    the connection error, kept so that the 451 of a greylisted first try is not
    lost when the second try succeeds. A successful try is the delivery row itself
    (`sent_at`): writing a row for each of them would add an INSERT per message to
    the send path for nothing the delivery does not already say."""

    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempt_log", db_index=False, db_constraint=False
    )
    burst_id = models.IntegerField(db_index=False)
    attempted_at = models.DateTimeField()
    # What this try came to: the status it would have had as final (a 4xx is
    # `failed`, a drop `connection_error`), and whether it was to be tried again.
    outcome = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    will_retry = models.BooleanField(default=False)
    counted = models.BooleanField(default=True, help_text="An SMTP try (counted in attempts).")
    reply = models.TextField(blank=True)

    class Meta:
        verbose_name = "delivery attempt"
        ordering = ["attempted_at", "id"]
        indexes = [models.Index(fields=["delivery", "attempted_at"], name="attempt_delivery_idx")]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.outcome}: {self.reply}"


class MailEventKind(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    SOFT_BOUNCE = "soft_bounce", "Soft bounce"
    COMPLAINT = "complaint", "Complaint"
    BLOCKED = "blocked", "Blocked"
    DELAYED = "delayed", "Delayed"
    UNPARSED = "unparsed", "Unparsed"


class MatchedBy(models.TextChoices):
    TOKEN = "token", "Delivery token"
    RELAY_ID = "relay_id", "Relay message id"
    ADDRESS = "address", "Address only"
    NONE = "", "Not matched"


# The raw message or payload kept with an event, at most this many characters.
MAIL_EVENT_RAW_LIMIT = 64 * 1024
MAIL_EVENT_RAW_MARKER = "\n[… cut: the rest of the message was not kept]"


class MailEvent(models.Model):
    """Something reported about a message after SMTP accepted it: a bounce (DSN or
    ESP webhook), a complaint (ARF or webhook), a delay, or a report nobody could
    read. One row per reported recipient."""

    kind = models.CharField(max_length=16, choices=MailEventKind.choices)
    # "imap", "webhook:<esp>", "upload" or "command".
    source = models.CharField(max_length=40)
    delivery = models.ForeignKey(
        Delivery,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,  # (delivery) below
        db_constraint=False,
    )
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="mail_events",
        db_index=False,  # (member, -id) below
        db_constraint=False,
    )
    email = models.EmailField(max_length=254, blank=True)
    diagnostic = models.TextField(blank=True, help_text="Status code and text, as reported.")
    raw = models.TextField(blank=True, help_text="The report as received (cut after 64 KB).")
    # The report's identity (a hash of the message, or the ESP's event id) plus the
    # recipient: a replayed report records nothing new.
    dedup_key = models.CharField(max_length=255, unique=True)
    matched_by = models.CharField(max_length=16, choices=MatchedBy.choices, blank=True, default="")
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "mail event"
        verbose_name_plural = "mail events"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["-id"], name="mail_event_recent_idx"),
            models.Index(fields=["kind", "-id"], name="mail_event_kind_idx"),
            models.Index(fields=["delivery"], name="mail_event_delivery_idx"),
            models.Index(fields=["member", "-id"], name="mail_event_member_idx"),
            # The dashboard's rates: events by kind over the last days.
            models.Index(fields=["kind", "received_at"], name="mail_event_kind_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.email or 'unknown address'}"
