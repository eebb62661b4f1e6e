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
