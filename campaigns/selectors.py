"""Read-only queries of bursts and deliveries: statistics, recipient counts,
pre-flight, preview, progress, the member timeline and the dashboard's figures.

Nothing here writes. The services, the admin and the API read through these.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest, TruncDate
from django.utils import timezone

from campaigns.engine.mime import context_for, prepare_burst
from campaigns.models import (
    FAILED_DELIVERY_STATUSES,
    BurstStatus,
    Delivery,
    DeliveryStatus,
    EmailBurst,
)
from campaigns.templating import TemplateProblem, compile_burst
from campaigns.validation import burst_validate
from common.errors import InvalidInput, NotFound
from members.models import Member

# Recipients are read this many at a time (memory stays flat as a burst grows).
RECIPIENT_BATCH = 2000
# Pre-flight renders a sample of the recipients within this many seconds.
PREFLIGHT_RENDER_SECONDS = 5.0
PREVIEW_FIELDS = ("pk", "email", "first_name", "middle_name", "last_name", "username")

# --- statistics ------------------------------------------------------------------------------------------

FAILED_KEYS = ("not_found", "failed", "connection_error", "other_error")


@dataclass(frozen=True)
class BurstStats:
    email_burst_id: int
    status: str
    total_recipients: int
    sent_count: int
    failed_count: int
    pending_count: int
    skipped_count: int
    success_rate: float
    status_counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count_annotations(prefix: str = "deliveries__") -> dict[str, Count]:
    counts = {"n_total": Count(f"{prefix}id")} if prefix else {"n_total": Count("id")}
    for status in DeliveryStatus.values:
        counts[f"n_{status}"] = Count(f"{prefix}id", filter=Q(**{f"{prefix}status": status}))
    return counts


def success_rate(*, sent: int, total: int, skipped: int) -> float:
    """Sent out of those there was something to send to (the skipped ones never had a
    chance): sent / (total - skipped) x 100, 2 places; 0 with nothing to send."""
    to_send = total - skipped
    return round(sent / to_send * 100, 2) if to_send else 0.0


def stats_from_counts(burst_id: int, status: str, counts: dict[str, int]) -> BurstStats:
    status_counts = {s: int(counts.get(f"n_{s}") or 0) for s in DeliveryStatus.values}
    total = sum(status_counts.values())
    skipped = status_counts["skipped"]
    sent = status_counts["sent"]
    return BurstStats(
        email_burst_id=burst_id,
        status=status,
        total_recipients=total,
        sent_count=sent,
        failed_count=sum(status_counts[k] for k in FAILED_KEYS),
        pending_count=status_counts["pending"],
        skipped_count=skipped,
        success_rate=success_rate(sent=sent, total=total, skipped=skipped),
        status_counts=status_counts,
    )


def burst_stats(*, burst_id: int) -> BurstStats:
    """A burst's delivery figures (totals, each status, the success rate), from one
    aggregate query whatever the number of deliveries."""
    row = (
        EmailBurst.objects.filter(pk=burst_id).values("pk", "status").annotate(**_count_annotations()).first()
    )
    if row is None:
        raise NotFound(f"email burst {burst_id} does not exist", field="id")
    return stats_from_counts(row["pk"], row["status"], row)


def bursts_with_counts(queryset: QuerySet[EmailBurst]) -> QuerySet[EmailBurst]:
    """Annotate `recipient_count`: deliveries once started, else members it would mail now."""
    deliveries = (
        Delivery.objects.filter(burst=OuterRef("pk"))
        .order_by()
        .values("burst")
        .annotate(c=Count("*"))
        .values("c")
    )
    chosen = (
        Member.objects.filter(email_bursts=OuterRef("pk"), is_active=True, unsubscribed_at__isnull=True)
        .order_by()
        .values("email_bursts")
        .annotate(c=Count("*"))
        .values("c")
    )
    everyone = (
        Member.objects.filter(is_active=True, unsubscribed_at__isnull=True)
        .order_by()
        .values("is_active")
        .annotate(c=Count("*"))
        .values("c")
    )
    would_mail = Case(
        When(all_members=True, then=Coalesce(Subquery(everyone[:1]), Value(0))),
        default=Coalesce(Subquery(chosen), Value(0)),
    )
    delivered = Coalesce(Subquery(deliveries), Value(0))
    return queryset.annotate(
        recipient_count=Case(
            When(status__in=[BurstStatus.DRAFT, BurstStatus.SCHEDULED], then=would_mail),
            # Started, its deliveries still being created: whichever is further along.
            When(
                status__in=[BurstStatus.SENDING, BurstStatus.PAUSED],
                deliveries_ready=False,
                then=Greatest(delivered, would_mail),
            ),
            default=delivered,
            output_field=IntegerField(),
        )
    )


def _delivery_count(statuses: list[str] | None = None) -> Coalesce:
    deliveries = Delivery.objects.filter(burst=OuterRef("pk"))
    if statuses:
        deliveries = deliveries.filter(status__in=statuses)
    counted = deliveries.order_by().values("burst").annotate(c=Count("*")).values("c")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def annotate_outcomes(queryset: QuerySet[EmailBurst]) -> QuerySet[EmailBurst]:
    """recipient_count plus delivery counts, one subquery each: no query per row."""
    return bursts_with_counts(queryset).annotate(
        n_deliveries=_delivery_count(),
        n_sent=_delivery_count([DeliveryStatus.SENT]),
        n_failed=_delivery_count(sorted(FAILED_DELIVERY_STATUSES)),
        n_skipped=_delivery_count([DeliveryStatus.SKIPPED]),
    )


def annotated_success_rate(burst: EmailBurst) -> float | None:
    """The success rate of a burst from `annotate_outcomes`; None with nothing to send."""
    total, skipped = getattr(burst, "n_deliveries", 0), getattr(burst, "n_skipped", 0)
    if total == skipped:
        return None
    return success_rate(sent=burst.n_sent, total=total, skipped=skipped)


def burst_recipient_count(*, burst_id: int) -> int:
    """`recipient_count` of one burst (see bursts_with_counts)."""
    return bursts_with_counts(EmailBurst.objects.filter(pk=burst_id)).values_list(
        "recipient_count", flat=True
    )[0]


def burst_chosen_count(*, burst_id: int) -> int:
    """How many members were chosen as the burst's recipients."""
    return EmailBurst.recipients.through.objects.filter(emailburst_id=burst_id).count()


def burst_next_retry(*, burst_id: int) -> datetime | None:
    """When every pending delivery waits for a retry: the earliest retry time."""
    now = timezone.now()
    row = Delivery.objects.filter(burst_id=burst_id, status=DeliveryStatus.PENDING).aggregate(
        ready=Count("id", filter=Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)),
        next_at=Min("next_attempt_at"),
    )
    return row["next_at"] if not row["ready"] else None


# --- recipients ---------------------------------------------------------------------------------


def burst_recipients(burst: EmailBurst) -> QuerySet[Member]:
    """The members a burst mails: everyone active and subscribed, or those chosen."""
    if burst.all_members:
        return Member.objects.filter(is_active=True, unsubscribed_at__isnull=True)
    return Member.objects.filter(email_bursts=burst)


def skip_reason(
    is_active: bool, unsubscribed_at, last_status: str | None, last_email: str | None, email: str
) -> str:
    if unsubscribed_at is not None:
        return "Skipped: the member unsubscribed"
    if not is_active:
        return "Skipped: the member is inactive"
    if last_status == DeliveryStatus.NOT_FOUND and (last_email or "").lower() == email.lower():
        return "Skipped: suppressed, the last delivery to this address was not_found"
    return ""


def _last_attempts(member_ids: list[int], exclude_burst: int) -> dict[int, tuple[str, str]]:
    """(status, address) of each member's last delivery that actually went to SMTP,
    for the few members who ever had a not_found (a skipped delivery does not
    lift a suppression)."""
    flagged = list(
        Delivery.objects.filter(member_id__in=member_ids, status=DeliveryStatus.NOT_FOUND)
        .values_list("member_id", flat=True)
        .distinct()
    )
    if not flagged:
        return {}
    last: dict[int, tuple[str, str]] = {}
    rows = (
        Delivery.objects.filter(member_id__in=flagged)
        .exclude(burst_id=exclude_burst)
        .exclude(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SKIPPED])
        .order_by("member_id", "-id")
        .values_list("member_id", "status", "email")
    )
    for member_id, status, email in rows:
        last.setdefault(member_id, (status, email))
    return last


def recipient_batches(burst: EmailBurst, size: int = RECIPIENT_BATCH) -> Iterator[list[tuple[int, str, str]]]:
    """Stream the burst's recipients in batches of (member id, address, skip reason).

    Memory stays flat: one batch at a time, read by primary-key ranges rather than
    through an open cursor, because the caller writes between batches (on SQLite
    a connection cannot write while its own read is still open and others have
    committed since)."""
    rows = burst_recipients(burst).order_by("pk").values_list("pk", "email", "is_active", "unsubscribed_at")
    last = 0
    while True:
        batch = list(rows.filter(pk__gt=last)[:size])
        if not batch:
            return
        last = batch[-1][0]
        yield _with_reasons(batch, burst.pk)
        if len(batch) < size:
            return


def _with_reasons(batch: list[tuple], burst_id: int) -> list[tuple[int, str, str]]:
    last = _last_attempts([row[0] for row in batch], burst_id)
    out = []
    for pk, email, is_active, unsubscribed_at in batch:
        status, last_email = last.get(pk, (None, None))
        out.append((pk, email, skip_reason(is_active, unsubscribed_at, status, last_email, email)))
    return out


# --- pre-flight and preview -----------------------------------------------------------------------------


@dataclass
class Preflight:
    to_send: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    render_failures: list[tuple[int, str, str]] = field(default_factory=list)
    render_checked: int = 0
    template_error: str = ""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def burst_preflight(*, burst_id: int, max_failures: int = 50, max_rendered: int = 5000) -> Preflight:
    """What a send would do now, without sending: counts, skip reasons, render failures."""
    burst = EmailBurst.objects.get(pk=burst_id)
    result = Preflight()
    try:
        burst_validate(
            subject=burst.subject, body=burst.body, html_body=burst.html_body, from_name=burst.from_name
        )
    except InvalidInput as exc:
        result.template_error = exc.message
        return result
    prepared = prepare_burst(burst)
    # One request's worth of rendering: each member also keeps its own budget.
    render_until = time.monotonic() + PREFLIGHT_RENDER_SECONDS
    for batch in recipient_batches(burst):
        reasons = {pk: reason for pk, _email, reason in batch if reason}
        for reason in reasons.values():
            result.skipped[reason] = result.skipped.get(reason, 0) + 1
        result.to_send += len(batch) - len(reasons)
        if (
            len(result.render_failures) >= max_failures
            or result.render_checked >= max_rendered
            or time.monotonic() >= render_until
        ):
            continue  # counts stay exact; rendering is checked on a large sample
        ids = [pk for pk, _email, reason in batch if not reason]
        for row in Member.objects.filter(pk__in=ids).order_by("pk").values(*PREVIEW_FIELDS):
            now = time.monotonic()
            if now >= render_until:
                break
            result.render_checked += 1
            try:
                context = context_for(burst_subject=burst.subject, member=row, member_id=row["pk"])
                prepared.build(
                    delivery_id=0,
                    to_email=row["email"],
                    to_name="",
                    context=context,
                    deadline=min(render_until, now + settings.TEMPLATE_RENDER_TIMEOUT),
                )
            except Exception as exc:
                if len(result.render_failures) < max_failures:
                    result.render_failures.append((row["pk"], row["email"], str(exc)))
    return result


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def burst_preview(*, burst_id: int, member_id: int | None = None) -> Rendered:
    burst = EmailBurst.objects.get(pk=burst_id)
    member = Member.objects.filter(pk=member_id).values(*PREVIEW_FIELDS).first() if member_id else None
    row = member or {"pk": None, "email": "member@example.org"}
    context = context_for(burst_subject=burst.subject, member=row, member_id=row["pk"])
    try:
        subject, text, html = compile_burst(
            subject=burst.subject, body=burst.body, html_body=burst.html_body
        ).render(context)
    except TemplateProblem as exc:
        raise InvalidInput(exc.message, field=exc.field) from None
    return Rendered(subject=subject, text=text, html=html)


def preview_members(*, burst: EmailBurst, limit: int) -> list[Member]:
    """The first members a preview can be rendered for: recipients who would be mailed."""
    members = Member.objects.filter(is_active=True, unsubscribed_at__isnull=True)
    if not burst.all_members:
        members = members.filter(email_bursts=burst)
    return list(members.order_by("pk").only("pk", "email", "first_name", "middle_name", "last_name")[:limit])


def preview_member(*, email: str = "", member_id: int | None = None) -> Member | None:
    """The member a preview is asked for, by address (any case) or by id."""
    if email:
        return Member.objects.filter(email__iexact=email).first()
    return Member.objects.filter(pk=member_id).first() if member_id is not None else None


# --- progress -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far a burst is, from its statistics: what the progress bar shows."""

    status: str
    total: int
    done: int
    percent: float
    elapsed: float  # seconds since it started (until it ended); 0 before it started
    rate: float | None  # messages per second, once some were tried
    eta: float | None  # seconds until the pending ones are done at that rate
    preparing: bool  # sending, its deliveries still being created
    next_retry_at: datetime | None  # sending, and every pending delivery waits for a retry


def burst_progress(*, burst: EmailBurst, stats: BurstStats) -> Progress:
    status = stats.status
    total = stats.total_recipients
    done = total - stats.pending_count
    percent = round(done * 100 / total, 1) if total else (100.0 if status == BurstStatus.SENT else 0.0)
    end = burst.finished_at if burst.finished_at and status != BurstStatus.SENDING else timezone.now()
    elapsed = (end - burst.started_at).total_seconds() if burst.started_at else 0.0
    attempted = done - stats.skipped_count
    rate = attempted / elapsed if elapsed > 0 and attempted > 0 else None
    sending = status == BurstStatus.SENDING
    eta = stats.pending_count / rate if rate and stats.pending_count and sending else None
    return Progress(
        status=status,
        total=total,
        done=done,
        percent=percent,
        elapsed=elapsed,
        rate=rate,
        eta=eta,
        preparing=sending and not burst.deliveries_ready,
        next_retry_at=burst_next_retry(burst_id=burst.pk) if sending and stats.pending_count else None,
    )


def burst_deliveries(*, burst_id: int, status: str = "", query: str = "") -> QuerySet[Delivery]:
    """A burst's deliveries with their members' names, in order, optionally of one
    status or with an address containing `query`."""
    queryset = (
        Delivery.objects.filter(burst_id=burst_id)
        .select_related("member")
        .only(
            "id",
            "burst_id",
            "email",
            "status",
            "attempts",
            "error_message",
            "sent_at",
            "updated_at",
            "member__id",
            "member__first_name",
            "member__last_name",
            "member__middle_name",
        )
        .order_by("id")
    )
    if status:
        queryset = queryset.filter(status=status)
    if query:
        queryset = queryset.filter(email__icontains=query)
    return queryset


# --- a member's deliveries ----------------------------------------------------------------------------------


def member_deliveries(*, member_id: int, limit: int) -> list[Delivery]:
    """The member's latest deliveries, newest first, with their bursts' subject and status."""
    return list(
        Delivery.objects.filter(member_id=member_id)
        .select_related("burst")
        .only(
            "id",
            "status",
            "email",
            "error_message",
            "attempts",
            "sent_at",
            "updated_at",
            "burst__id",
            "burst__subject",
            "burst__status",
        )
        .order_by("-id")[:limit]
    )


# --- the dashboard's figures --------------------------------------------------------------------------------


def member_totals() -> dict[str, int]:
    return Member.objects.aggregate(
        members=Count("id"),
        subscribed=Count("id", filter=Q(is_active=True, unsubscribed_at__isnull=True)),
        verified=Count("id", filter=Q(is_verified=True)),
        staff=Count("id", filter=Q(is_staff=True)),
    )


def burst_status_counts() -> dict[str, int]:
    """How many bursts are in each status (statuses without any are absent)."""
    return dict(EmailBurst.objects.order_by().values_list("status").annotate(n=Count("id")))


def recent_bursts(*, limit: int) -> list[EmailBurst]:
    """The newest bursts, annotated as by `annotate_outcomes`."""
    return list(annotate_outcomes(EmailBurst.objects.order_by("-created_at", "-id"))[:limit])


def delivery_outcomes_by_day(*, first_day: date, days: int) -> dict[date, dict[str, int]]:
    """Deliveries finished per local day (by their last update), from `first_day` on
    for `days` days: {day: {status: count}}; days without any are absent."""
    tz = timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(first_day, datetime.min.time()), tz)
    rows = (
        Delivery.objects.filter(updated_at__gte=start)
        .exclude(status=DeliveryStatus.PENDING)
        .annotate(day=TruncDate("updated_at", tzinfo=tz))
        .order_by()
        .values("day", "status")
        .annotate(n=Count("id"))
    )
    last_day = first_day + timedelta(days=days - 1)
    counts: dict[date, dict[str, int]] = {}
    for row in rows:
        if first_day <= row["day"] <= last_day:
            counts.setdefault(row["day"], {})[row["status"]] = row["n"]
    return counts
