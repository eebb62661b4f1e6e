from __future__ import annotations

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
    FAILED = "failed", "Failed"
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
    subject = models.CharField(max_length=200)
    body = models.TextField(help_text="Plain-text body, a Django template rendered per member.")
    html_body = models.TextField(blank=True, help_text="Optional HTML body, a Django template.")
    sender = models.EmailField(default=default_sender, help_text="From address.")
    from_name = models.CharField(max_length=100, blank=True, help_text="Display name in From.")
    reply_to = models.EmailField(blank=True)
    recipients = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="email_bursts", blank=True)
    all_members = models.BooleanField(
        default=False, help_text="Send to every active, subscribed member at send time."
    )
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
        return self.subject

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
