from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class MemberManager(UserManager):
    def get_by_natural_key(self, username):
        return self.get(**{self.model.USERNAME_FIELD: username})

    def subscribed(self) -> models.QuerySet[Member]:
        """Members a burst for "all members" mails: active and not unsubscribed."""
        return self.filter(is_active=True, unsubscribed_at__isnull=True)


class Member(AbstractUser):
    """An organisation's member; staff users are members with ``is_staff``."""

    email = models.EmailField("email address", max_length=254, unique=True)
    middle_name = models.CharField(max_length=150, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    is_verified = models.BooleanField(default=False)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    objects = MemberManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["email"]

    class Meta:
        verbose_name = "member"
        verbose_name_plural = "members"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="member_email_ci_unique"),
        ]
        indexes = [
            models.Index(fields=["is_staff"], name="member_is_staff_idx"),
            models.Index(fields=["last_name", "first_name"], name="member_name_idx"),
        ]

    def __str__(self) -> str:
        full = self.get_full_name()
        return f"{full} <{self.email}>" if full else self.email or self.username

    def get_full_name(self) -> str:
        parts = (self.first_name, self.middle_name, self.last_name)
        return " ".join(p for p in parts if p).strip()

    def clean(self) -> None:
        super().clean()
        if self.email:
            self.email = type(self).objects.normalize_email(self.email)


class MemberTally(models.Model):
    """How many members have each combination of the flags the dashboard and the
    member lists count by, kept by database triggers on the member table (statement
    level on PostgreSQL, row level on SQLite; see the migration), so that no count
    scans the members, and every way of writing a member (the ORM, a bulk insert,
    raw SQL) is counted."""

    is_staff = models.BooleanField()
    is_active = models.BooleanField()
    subscribed = models.BooleanField()  # no unsubscribed_at
    is_verified = models.BooleanField()
    n = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "member tally"
        constraints = [
            models.UniqueConstraint(
                fields=["is_staff", "is_active", "subscribed", "is_verified"], name="member_tally_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.n} members"


class MailingList(models.Model):
    """A named audience staff keep by hand ("the board", "volunteers")."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        Member, through="ListMembership", related_name="mailing_lists", blank=True
    )
    # Kept by database triggers on the membership table (members.tally), like the
    # member tally: every way of adding or removing a membership is counted.
    member_count = models.IntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "mailing list"
        verbose_name_plural = "mailing lists"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="list_memberships")
    mailing_list = models.ForeignKey(
        MailingList, on_delete=models.CASCADE, related_name="memberships", db_column="list_id"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "list membership"
        constraints = [
            models.UniqueConstraint(fields=["mailing_list", "member"], name="list_membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} on {self.mailing_list_id}"


class Segment(models.Model):
    """An audience described by rules, evaluated in the database when used
    (`members.segments`): `{"match": "all" | "any", "conditions": [...]}`."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    rules = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "segment"
        verbose_name_plural = "segments"
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class ImportJob(models.Model):
    """A member import started in the admin: the uploaded file between its preview and
    its import, the progress the huey task writes (read by the page's polling: the
    cache is not shared between the web and the workers without Redis), and the two
    reports. Rows and their files are removed a day after they were created."""

    class Status(models.TextChoices):
        PREVIEWED = "previewed", "Previewed"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # Random, in the page's URLs; the file's storage name derives from it, never from input.
    token = models.CharField(max_length=64, unique=True)
    # Kept when the uploader is deleted, so that the day-old clean-up still finds its files.
    created_by = models.ForeignKey(Member, null=True, on_delete=models.SET_NULL, related_name="+")
    filename = models.CharField(max_length=255)  # as uploaded: shown, never used as a path
    mailing_list = models.ForeignKey(
        MailingList, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PREVIEWED)
    rows_total = models.IntegerField(default=0)
    rows_done = models.IntegerField(default=0)
    preview = models.JSONField(default=dict)  # the dry run's report
    result = models.JSONField(default=dict)  # the import's report
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)  # moved by every progress write too
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "member import"
        verbose_name_plural = "member imports"
        indexes = [models.Index(fields=["created_at"], name="import_job_created_idx")]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_status_display()})"


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    COMPLAINT = "complaint", "Complaint"
    NOT_FOUND = "not_found", "Not found"
    MANUAL = "manual", "Added by staff"


class Suppression(models.Model):
    """An address no burst mails (its deliveries are `skipped`), whoever has it.
    On the address, not the member: a member whose address changes is mailable again."""

    # Lower-cased on write, so the send path's lookup on lower(member.email) is one
    # index probe.
    email = models.EmailField(max_length=254, unique=True)
    reason = models.CharField(
        max_length=16, choices=SuppressionReason.choices, default=SuppressionReason.MANUAL
    )
    # A string reference with no database constraint: members never imports
    # campaigns' models, and an event may be deleted without touching this row.
    event = models.ForeignKey(
        "campaigns.MailEvent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        Member,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )

    class Meta:
        verbose_name = "suppression"
        verbose_name_plural = "suppressions"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_reason_display()})"

    def save(self, *args, **kwargs) -> None:
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)
