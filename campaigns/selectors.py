"""Read-only queries of bursts and deliveries: statistics, recipient counts,
pre-flight, preview, progress, the member timeline and the dashboard's figures.

Nothing here writes. The services, the admin and the API read through these.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import reduce
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce, Greatest, Lower, TruncDate
from django.utils import timezone

from campaigns.engine.mime import context_for, prepare_burst
from campaigns.models import (
    FAILED_DELIVERY_STATUSES,
    BurstStatus,
    DailyOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EmailBurst,
    MailEvent,
    MailEventKind,
    counter_field,
)
from campaigns.templating import TemplateProblem, compile_burst
from campaigns.validation import (
    MERGE_FIELDS,
    WARNING,
    Check,
    Usage,
    burst_checks,
    empty_field_example,
    merge_fields_used,
)
from common.errors import InvalidInput, NotFound
from members.models import (
    ListMembership,
    MailingList,
    Member,
    MemberTally,
    Segment,
    Suppression,
    SuppressionReason,
)
from members.segments import EVERYONE, Within, member_range, rules_q

# Recipients are read this many at a time (memory stays flat as a burst grows).
RECIPIENT_BATCH = 2000
# Pre-flight renders a sample of the recipients within this many seconds.
PREFLIGHT_RENDER_SECONDS = 5.0
PREVIEW_FIELDS = ("pk", "email", "first_name", "middle_name", "last_name", "username")

# --- statistics ------------------------------------------------------------------------------------------

FAILED_KEYS = ("not_found", "failed", "connection_error", "other_error")
# The status counters, then those of reports after SMTP (bounces and complaints).
EVENT_COUNTER_FIELDS = ("count_bounced", "count_complained")
COUNTER_FIELDS = tuple(counter_field(status) for status in DeliveryStatus.values) + EVENT_COUNTER_FIELDS


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
    # Pending deliveries that a transient failure (4xx, a dropped connection) sends
    # back for a later try, and the earliest of their retry times (None without any).
    retrying_count: int = 0
    next_retry_at: datetime | None = None
    # The latest reply one of them got ("452 4.2.2 Mailbox full"): why they wait.
    retry_reply: str = ""
    # Deliveries with a bounce / a complaint reported after SMTP accepted them.
    bounced_count: int = 0
    complained_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def to_send(self) -> int:
        """The recipients there was something to send to (all but the skipped)."""
        return self.total_recipients - self.skipped_count

    @property
    def shown_success_rate(self) -> float | None:
        """The success rate to show: None (shown "—") when nothing was to be sent."""
        return self.success_rate if self.to_send else None


def success_rate(*, sent: int, total: int, skipped: int) -> float:
    """Sent out of those there was something to send to (the skipped ones never had a
    chance): sent / (total - skipped) x 100, 2 places; 0 with nothing to send."""
    to_send = total - skipped
    return round(sent / to_send * 100, 2) if to_send else 0.0


def _retrying_deliveries() -> QuerySet[Delivery]:
    """The deliveries of the outer burst row that wait for a retry: those with a retry
    time (every writer clears it with a final status), which the partial index on
    (burst, next_attempt_at) holds. No status condition: with one, PostgreSQL read the
    (burst, status) index instead, through every pending delivery (500 ms at a million)."""
    return Delivery.objects.filter(burst_id=OuterRef("pk"), next_attempt_at__isnull=False).order_by()


def with_retry_figures(queryset: QuerySet[EmailBurst]) -> QuerySet[EmailBurst]:
    """Annotate `retrying_count`, `next_retry_at` and `retry_reply` (see BurstStats),
    as subqueries of the same SELECT."""
    retrying = _retrying_deliveries()
    return queryset.annotate(
        retrying_count=Coalesce(
            Subquery(retrying.values("burst_id").annotate(n=Count("*")).values("n")[:1]),
            Value(0),
        ),
        next_retry_at=Subquery(retrying.order_by("next_attempt_at").values("next_attempt_at")[:1]),
        retry_reply=Subquery(retrying.order_by("-updated_at", "-id").values("error_message")[:1]),
    )


def burst_stats(*, burst_id: int) -> BurstStats:
    """A burst's delivery figures (totals, each status, the success rate, the retries
    waiting), from the counters kept on the burst: one query, the same cost whatever
    the number of deliveries."""
    burst = (
        with_retry_figures(EmailBurst.objects.filter(pk=burst_id))
        .only("pk", "status", *COUNTER_FIELDS)
        .first()
    )
    if burst is None:
        raise NotFound(f"email burst {burst_id} does not exist", field="id")
    return burst_stats_of(burst)


def burst_stats_of(burst: EmailBurst) -> BurstStats:
    """The figures of a burst already read with its counters (and, read through
    `with_retry_figures`, its retries; else none are counted)."""
    counts = burst.counts
    total, sent, skipped = sum(counts.values()), counts["sent"], counts["skipped"]
    return BurstStats(
        email_burst_id=burst.pk,
        status=burst.status,
        total_recipients=total,
        sent_count=sent,
        failed_count=sum(counts[k] for k in FAILED_KEYS),
        pending_count=counts["pending"],
        skipped_count=skipped,
        success_rate=success_rate(sent=sent, total=total, skipped=skipped),
        status_counts=counts,
        retrying_count=getattr(burst, "retrying_count", 0) or 0,
        next_retry_at=getattr(burst, "next_retry_at", None),
        retry_reply=getattr(burst, "retry_reply", None) or "",
        bounced_count=burst.count_bounced,
        complained_count=burst.count_complained,
    )


def bursts_with_counts(queryset: QuerySet[EmailBurst]) -> QuerySet[EmailBurst]:
    """Annotate `recipient_count`: deliveries once started, else members it would mail now."""
    chosen = (
        Member.objects.filter(email_bursts=OuterRef("pk"), is_active=True, unsubscribed_at__isnull=True)
        .order_by()
        .values("email_bursts")
        .annotate(c=Count("*"))
        .values("c")
    )
    # Everyone active and subscribed: the member tally the database keeps, not a count.
    everyone = (
        MemberTally.objects.filter(is_active=True, subscribed=True)
        .order_by()
        .values("is_active")
        .annotate(c=Sum("n"))
        .values("c")
    )
    would_mail = Case(
        When(all_members=True, then=Coalesce(Subquery(everyone[:1]), Value(0))),
        default=Coalesce(Subquery(chosen), Value(0)),
    )
    delivered = _counters_sum(DeliveryStatus.values)
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
        ),
        # Lists or segments to resolve: `recipient_counts_fill` counts those bursts.
        has_audience=reduce(
            operator.or_,
            (
                Exists(getattr(EmailBurst, field).through.objects.filter(emailburst_id=OuterRef("pk")))
                for field in ("lists", "segments")
            ),
        ),
    )


def recipient_counts_fill(bursts: Iterable[EmailBurst]) -> None:
    """Set `recipient_count` of the not yet started bursts (of a page read through
    `bursts_with_counts`) that address lists or segments: one count each, by the
    database (the audience cannot be counted inside the page's query)."""
    for burst in bursts:
        if getattr(burst, "has_audience", False) and burst.status in (
            BurstStatus.DRAFT,
            BurstStatus.SCHEDULED,
        ):
            burst.recipient_count = burst_skip_counts(burst=burst).get("", 0)


def _counters_sum(statuses: Iterable[str]) -> Combinable:
    """The sum of the burst's counters of `statuses`, as an expression."""
    return reduce(operator.add, (F(counter_field(status)) for status in sorted(statuses)))


def annotate_outcomes(queryset: QuerySet[EmailBurst]) -> QuerySet[EmailBurst]:
    """recipient_count plus delivery counts, from the counters: no query per row."""
    return bursts_with_counts(queryset).annotate(
        n_deliveries=_counters_sum(DeliveryStatus.values),
        n_sent=F(counter_field(DeliveryStatus.SENT)),
        n_failed=_counters_sum(FAILED_DELIVERY_STATUSES),
        n_skipped=F(counter_field(DeliveryStatus.SKIPPED)),
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


def delivery_counts(*, burst_id: int) -> dict[str, int]:
    """A burst's deliveries by status, counted (what its counters must say)."""
    counted = dict(
        Delivery.objects.filter(burst_id=burst_id).order_by().values_list("status").annotate(n=Count("id"))
    )
    return {status: counted.get(status, 0) for status in DeliveryStatus.values}


def delivery_event_counts(*, burst_id: int) -> dict[str, int]:
    """A burst's deliveries with a bounce and with a complaint, counted (what
    `count_bounced` and `count_complained` must say)."""
    return Delivery.objects.filter(burst_id=burst_id).aggregate(
        count_bounced=Count("id", filter=Q(bounced_at__isnull=False)),
        count_complained=Count("id", filter=Q(complained_at__isnull=False)),
    )


def daily_outcome_recount() -> dict[tuple[date, str], int]:
    """Deliveries by the day their (non-pending) status was written and status,
    counted (what the daily outcomes must say)."""
    rows = (
        Delivery.objects.exclude(status=DeliveryStatus.PENDING)
        .annotate(day=TruncDate("updated_at", tzinfo=timezone.get_default_timezone()))
        .order_by()
        .values_list("day", "status")
        .annotate(n=Count("id"))
    )
    return {(day, status): n for day, status, n in rows}


def deliveries_known_count(
    *, burst_id: str | None, status: str | None, other_filters: list[str]
) -> int | None:
    """How many deliveries a list filtered only by burst and/or status shows, from
    the counters; None when other filters apply (then they are counted)."""
    if other_filters or (status and status not in DeliveryStatus.values):
        return None
    statuses = [status] if status else DeliveryStatus.values
    bursts = EmailBurst.objects.all()
    if burst_id:
        if not str(burst_id).isdigit():
            return None
        bursts = bursts.filter(pk=int(burst_id))
    total = bursts.aggregate(n=Sum(_counters_sum(statuses)))["n"]
    return int(total or 0)


# --- recipients ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """Who a burst addresses, as ids (read once: 4 small queries at most)."""

    all_members: bool
    lists: tuple[int, ...] = ()
    segments: tuple[tuple[int, str, dict[str, Any]], ...] = ()  # (id, name, rules)
    exclude_lists: tuple[int, ...] = ()
    exclude_segments: tuple[tuple[int, str, dict[str, Any]], ...] = ()

    @property
    def is_plain(self) -> bool:
        """Only chosen members (or everyone): no list or segment involved."""
        return not (self.lists or self.segments or self.exclude_lists or self.exclude_segments)


def burst_audience(burst: EmailBurst) -> Audience:
    if burst.all_members or burst.pk is None:
        return Audience(all_members=burst.all_members)
    cached = getattr(burst, "_audience", None)
    if cached is not None:
        return cached
    through = EmailBurst.lists.through, EmailBurst.exclude_lists.through
    audience = Audience(
        all_members=False,
        lists=tuple(
            through[0]
            .objects.filter(emailburst_id=burst.pk)
            .order_by("mailinglist_id")
            .values_list("mailinglist_id", flat=True)
        ),
        segments=tuple(burst.segments.order_by("pk").values_list("pk", "name", "rules")),
        exclude_lists=tuple(
            through[1]
            .objects.filter(emailburst_id=burst.pk)
            .order_by("mailinglist_id")
            .values_list("mailinglist_id", flat=True)
        ),
        exclude_segments=tuple(burst.exclude_segments.order_by("pk").values_list("pk", "name", "rules")),
    )
    burst._audience = audience
    return audience


# `id IN (SELECT …)` rather than EXISTS: OR-ed together, PostgreSQL hashes each
# subquery once (a "hashed SubPlan") instead of probing an index per member, which
# resolved a million-member audience in 114 s.
def _chosen(burst_id: int, within: Within) -> Q:
    through = EmailBurst.recipients.through.objects.filter(
        member_range("member_id", within), emailburst_id=burst_id
    )
    return Q(pk__in=through.values("member_id"))


def _on_lists(list_ids: Iterable[int], within: Within) -> Q:
    memberships = ListMembership.objects.filter(
        member_range("member_id", within), mailing_list_id__in=list(list_ids)
    )
    return Q(pk__in=memberships.values("member_id"))


def audience_q(burst: EmailBurst, audience: Audience, within: Within = EVERYONE) -> Q:
    """The burst's audience as one filter over members: the chosen members, the lists'
    and the segments' members, minus the excluded lists' and segments'. With `within`
    (member ids (after, end]) every subquery reads only that range."""
    include = _chosen(burst.pk, within)
    if audience.lists:
        include |= _on_lists(audience.lists, within)
    for _pk, _name, rules in audience.segments:
        include |= rules_q(rules, within)
    if audience.exclude_lists:
        include &= ~_on_lists(audience.exclude_lists, within)
    for _pk, _name, rules in audience.exclude_segments:
        include &= ~rules_q(rules, within)
    return member_range("pk", within) & include


def burst_recipients(burst: EmailBurst, *, within: Within = EVERYONE) -> QuerySet[Member]:
    """The members a burst mails: everyone active and subscribed, or its audience
    (chosen members, lists and segments minus the excluded ones), each once; with
    `within`, only those with ids in (after, end]."""
    if burst.all_members:
        return Member.objects.filter(member_range("pk", within), is_active=True, unsubscribed_at__isnull=True)
    audience = burst_audience(burst)
    if audience.is_plain:
        return Member.objects.filter(member_range("pk", within), email_bursts=burst)
    return Member.objects.filter(audience_q(burst, audience, within))


SKIP_UNSUBSCRIBED = "Skipped: the member unsubscribed"
SKIP_INACTIVE = "Skipped: the member is inactive"
# One reason per suppression reason (members.models.SuppressionReason).
SKIP_SUPPRESSED_HARD_BOUNCE = "Skipped: suppressed (hard bounce)"
SKIP_SUPPRESSED_COMPLAINT = "Skipped: suppressed (complaint)"
SKIP_SUPPRESSED_NOT_FOUND = "Skipped: suppressed (not found)"
SKIP_SUPPRESSED_MANUAL = "Skipped: suppressed (added by staff)"
SKIP_SUPPRESSED = {
    SuppressionReason.HARD_BOUNCE: SKIP_SUPPRESSED_HARD_BOUNCE,
    SuppressionReason.COMPLAINT: SKIP_SUPPRESSED_COMPLAINT,
    SuppressionReason.NOT_FOUND: SKIP_SUPPRESSED_NOT_FOUND,
    SuppressionReason.MANUAL: SKIP_SUPPRESSED_MANUAL,
}


def skip_reason_expression(*, burst_id: int) -> Case:
    """Why a recipient (a Member row) gets a `skipped` delivery, "" when mailed: an
    SQL expression, so deliveries are created and pre-flight counted in the database.

    Suppressed: a Suppression row holds the member's address (lower-cased), one probe
    of its unique index per member. `burst_id` is kept for the callers: the rule no
    longer depends on the burst."""
    reason_text = Case(
        *(When(reason=reason, then=Value(text)) for reason, text in SKIP_SUPPRESSED.items()),
        default=Value(SKIP_SUPPRESSED_MANUAL),
        output_field=CharField(),
    )
    # No ordering: the address is unique, a sort per member would be for nothing.
    suppressed = (
        Suppression.objects.filter(email=Lower(OuterRef("email"))).order_by().values(text=reason_text)[:1]
    )
    return Case(
        When(unsubscribed_at__isnull=False, then=Value(SKIP_UNSUBSCRIBED)),
        When(is_active=False, then=Value(SKIP_INACTIVE)),
        default=Coalesce(Subquery(suppressed, output_field=CharField()), Value("")),
        output_field=CharField(),
    )


def recipient_range_end(burst: EmailBurst, *, after: int, size: int) -> int | None:
    """The member id that closes the next batch of at most `size` recipients after id
    `after`; None when fewer are left (the last batch is open-ended). A burst of lists
    or segments is batched by member ids: finding where its `size`-th recipient is
    would resolve the audience twice."""
    if burst_audience(burst).is_plain:
        members = burst_recipients(burst, within=(after, None))
    else:
        members = Member.objects.filter(pk__gt=after)
    ids = members.order_by("pk").values_list("pk", flat=True)
    return ids[size - 1 : size].first()


def burst_skip_counts(*, burst: EmailBurst) -> dict[str, int]:
    """How many recipients each reason skips, and "" -> how many would be mailed."""
    rows = (
        burst_recipients(burst)
        .annotate(reason=skip_reason_expression(burst_id=burst.pk))
        .order_by()
        .values("reason")
        .annotate(n=Count("pk"))
    )
    return {row["reason"]: row["n"] for row in rows}


# --- pre-flight and preview -----------------------------------------------------------------------------


@dataclass
class Preflight:
    to_send: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    render_failures: list[tuple[int, str, str]] = field(default_factory=list)
    render_checked: int = 0
    template_error: str = ""  # the first error, as a send would refuse it
    errors: list[Check] = field(default_factory=list)  # each refuses the send
    warnings: list[Check] = field(default_factory=list)  # worth a look; the send goes ahead
    # Where the audience comes from: (source, members) for each chosen source, and the
    # members each exclusion takes out of them (before skips).
    sources: list[tuple[str, int]] = field(default_factory=list)
    excluded: list[tuple[str, int]] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def _would_mail(burst: EmailBurst) -> QuerySet[Member]:
    """The burst's recipients who would be mailed now (no skip reason)."""
    return (
        burst_recipients(burst).annotate(reason=skip_reason_expression(burst_id=burst.pk)).filter(reason="")
    )


# How a merge field is named to staff, and the stand-in its hint suggests.
EMPTY_FIELD_WORDS = {
    "first_name": ("no first name", "friend"),
    "middle_name": ("no middle name", ""),
    "last_name": ("no last name", "member"),
    "full_name": ("no name at all", "friend"),
    "username": ("no username", "friend"),
}


def _empty(field_name: str) -> Q:
    if field_name == "full_name":
        return Q(first_name="", middle_name="", last_name="")
    return Q(**{field_name: ""})


def _empty_field_warning(*, field_name: str, count: int, part: str, usage: Usage, example: str) -> Check:
    missing, stand_in = EMPTY_FIELD_WORDS[field_name]
    people = f"{count:,} recipient{' has' if count == 1 else 's have'}"
    variable = f"{{{{ member.{field_name} }}}}"
    if stand_in:
        hint = f'use {{{{ member.{field_name}|default:"{stand_in}" }}}} to show a word of your choice instead'
    else:
        hint = f"use {{% if member.{field_name} %}}…{{% endif %}} around it"
    return Check(
        level=WARNING,
        field=part,
        message=f"{people} {missing}: {variable} renders empty for them; {hint}.",
        line=usage.line,
        snippet=usage.snippet,
        count=count,
        example=example,
    )


def burst_empty_field_warnings(*, burst: EmailBurst) -> list[Check]:
    """For each member field the templates render bare, how many of the recipients who
    would be mailed have it empty (one COUNT query for all fields, whatever the
    audience), with what one of them would read."""
    used = merge_fields_used(subject=burst.subject, body=burst.body, html_body=burst.html_body)
    if not used:
        return []
    recipients = _would_mail(burst)
    # Aliases apart from the fields' names, which the filters read.
    counted = recipients.aggregate(**{f"empty_{name}": Count("pk", filter=_empty(name)) for name in used})
    counts = {name: counted[f"empty_{name}"] for name in used}
    warnings = []
    compiled = None
    for name in MERGE_FIELDS:
        if not counts.get(name):
            continue
        part, usage = used[name]
        row = recipients.filter(_empty(name)).order_by("pk").values(*PREVIEW_FIELDS).first()
        example = ""
        if row is not None:
            try:
                compiled = compiled or compile_burst(
                    subject=burst.subject, body=burst.body, html_body=burst.html_body
                )
            except TemplateProblem:
                return []
            context = context_for(burst_subject=burst.subject, member=row, member_id=row["pk"])
            example = empty_field_example(compiled=compiled, context=context, part=part, field=name)
        warnings.append(
            _empty_field_warning(field_name=name, count=counts[name], part=part, usage=usage, example=example)
        )
    return warnings


def burst_send_checks(*, burst: EmailBurst) -> tuple[list[Check], list[Check]]:
    """The burst's errors (each refuses a send) and warnings, as it stands now."""
    checks = burst_checks(
        subject=burst.subject, body=burst.body, html_body=burst.html_body, from_name=burst.from_name
    )
    errors = [check for check in checks if check.is_error]
    warnings = [check for check in checks if not check.is_error]
    if not errors:
        warnings = burst_empty_field_warnings(burst=burst) + warnings
    return errors, warnings


def audience_sources(burst: EmailBurst) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """How many members each source of the audience brings, and how many of them each
    exclusion takes out: one query (a count per source over the members)."""
    if burst.all_members:
        return [("All active, subscribed members", member_tally_count(subscribed=True))], []
    audience = burst_audience(burst)
    sources = [("Members chosen one by one", _chosen(burst.pk, EVERYONE))]
    if audience.lists:
        names = dict(MailingList.objects.filter(pk__in=audience.lists).values_list("pk", "name"))
        sources += [(f"On list “{names.get(pk, pk)}”", _on_lists([pk], EVERYONE)) for pk in audience.lists]
    sources += [(f"In segment “{name}”", rules_q(rules)) for _pk, name, rules in audience.segments]
    included = audience_q(
        burst, Audience(all_members=False, lists=audience.lists, segments=audience.segments)
    )
    excluded: list[tuple[str, Q]] = []
    if audience.exclude_lists:
        names = dict(MailingList.objects.filter(pk__in=audience.exclude_lists).values_list("pk", "name"))
        excluded += [
            (f"Left out: on list “{names.get(pk, pk)}”", included & _on_lists([pk], EVERYONE))
            for pk in audience.exclude_lists
        ]
    excluded += [
        (f"Left out: in segment “{name}”", included & rules_q(rules))
        for _pk, name, rules in audience.exclude_segments
    ]
    filters = [q for _, q in sources] + [q for _, q in excluded]
    totals = Member.objects.aggregate(**{f"n{i}": Count("pk", filter=q) for i, q in enumerate(filters)})
    numbers = [totals[f"n{i}"] for i in range(len(filters))]
    counted_sources = [(label, n) for (label, _), n in zip(sources, numbers, strict=False)]
    counted_excluded = [(label, n) for (label, _), n in zip(excluded, numbers[len(sources) :], strict=True)]
    # The chosen members are listed only when there are some (or nothing else).
    if counted_sources[0][1] == 0 and len(counted_sources) > 1:
        counted_sources = counted_sources[1:]
    return counted_sources, counted_excluded


def member_tally_count(*, subscribed: bool) -> int:
    tally = MemberTally.objects.filter(is_active=True, subscribed=subscribed)
    return int(tally.aggregate(n=Sum("n"))["n"] or 0)


def burst_preflight(*, burst_id: int, max_failures: int = 50, max_rendered: int = 5000) -> Preflight:
    """What a send would do now, without sending: counts, skip reasons, errors and
    warnings of the templates, render failures."""
    burst = EmailBurst.objects.get(pk=burst_id)
    result = Preflight()
    counts = burst_skip_counts(burst=burst)
    result.to_send = counts.pop("", 0)
    result.skipped = counts
    result.sources, result.excluded = audience_sources(burst)
    result.errors, result.warnings = burst_send_checks(burst=burst)
    if result.errors:
        result.template_error = result.errors[0].sentence
        return result
    prepared = prepare_burst(burst)
    # One request's worth of rendering: each member also keeps its own budget; the
    # counts above are exact, rendering is checked on a large sample.
    render_until = time.monotonic() + PREFLIGHT_RENDER_SECONDS
    sample = (
        burst_recipients(burst)
        .annotate(reason=skip_reason_expression(burst_id=burst.pk))
        .filter(reason="")
        .order_by("pk")
        .values(*PREVIEW_FIELDS)[:max_rendered]
    )
    for row in sample.iterator(chunk_size=500):
        now = time.monotonic()
        if now >= render_until or len(result.render_failures) >= max_failures:
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


# The rate is shown once it means something: after this much sending time, or this
# many messages (39 messages in 0.044 s are no "886 msgs/s").
RATE_MIN_SECONDS = 1.0
RATE_MIN_MESSAGES = 100


@dataclass(frozen=True)
class Progress:
    """How far a burst is, from its statistics: what the progress bar shows."""

    status: str
    total: int
    done: int
    percent: float
    elapsed: float  # wall-clock seconds since it started (until it ended); 0 before
    sending_seconds: float  # seconds during which a chunk was sending (retry waits excluded)
    tried: int  # deliveries that went to the SMTP server and are finished (not skipped)
    rate: float | None  # tried per second of sending, once that is meaningful
    eta: float | None  # seconds until the pending ones that may go now are done
    preparing: bool  # sending, its deliveries still being created
    retrying: int  # pending deliveries waiting for a retry
    next_retry_at: datetime | None  # the earliest retry time of those
    retry_reply: str  # the latest reply one of them got

    @property
    def ready(self) -> int:
        """Pending deliveries that may be sent now (not waiting for a retry)."""
        return self.total - self.done - self.retrying


def sending_rate(*, tried: int, sending_seconds: float) -> float | None:
    """Messages per second of sending, or None while too little was sent to tell."""
    if sending_seconds <= 0 or tried <= 0:
        return None
    if sending_seconds < RATE_MIN_SECONDS and tried < RATE_MIN_MESSAGES:
        return None
    return tried / sending_seconds


def burst_progress(*, burst: EmailBurst, stats: BurstStats) -> Progress:
    status = stats.status
    total = stats.total_recipients
    done = total - stats.pending_count
    percent = round(done * 100 / total, 1) if total else (100.0 if status == BurstStatus.SENT else 0.0)
    sending = status == BurstStatus.SENDING
    end = burst.finished_at if burst.finished_at and not sending else timezone.now()
    elapsed = max(0.0, (end - burst.started_at).total_seconds()) if burst.started_at else 0.0
    tried = done - stats.skipped_count
    rate = sending_rate(tried=tried, sending_seconds=burst.sending_seconds)
    retrying = min(stats.retrying_count, stats.pending_count)
    ready = stats.pending_count - retrying
    return Progress(
        status=status,
        total=total,
        done=done,
        percent=percent,
        elapsed=elapsed,
        sending_seconds=burst.sending_seconds,
        tried=tried,
        rate=rate,
        eta=ready / rate if rate and ready and sending else None,
        preparing=sending and not burst.deliveries_ready,
        retrying=retrying,
        next_retry_at=stats.next_retry_at if retrying else None,
        retry_reply=stats.retry_reply if retrying else "",
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
    """The member's latest deliveries, newest first, with their bursts' name, subject and
    status, each delivery's tries that did not end in "sent" (`attempt_log`, oldest
    first) and what was reported about it later (`events`, bounces and complaints, without
    the raw report): three queries however many deliveries, tries and events there are."""
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
            "next_attempt_at",
            "updated_at",
            "burst__id",
            "burst__name",
            "burst__subject",
            "burst__status",
        )
        .prefetch_related(
            "attempt_log", Prefetch("events", queryset=MailEvent.objects.defer("raw").order_by("id"))
        )
        .order_by("-id")[:limit]
    )


# --- the dashboard's figures --------------------------------------------------------------------------------


def burst_status_counts() -> dict[str, int]:
    """How many bursts are in each status (statuses without any are absent)."""
    return dict(EmailBurst.objects.order_by().values_list("status").annotate(n=Count("id")))


def recent_bursts(*, limit: int) -> list[EmailBurst]:
    """The newest bursts, annotated as by `annotate_outcomes`."""
    return list(annotate_outcomes(EmailBurst.objects.order_by("-created_at", "-id"))[:limit])


def delivery_outcomes_by_day(*, first_day: date, days: int) -> dict[date, dict[str, int]]:
    """Deliveries finished per day (the site's time zone, by when their status was
    written), from `first_day` on for `days` days: {day: {status: count}}; days
    without any are absent. Read from the daily counters: 7 rows a day at most."""
    last_day = first_day + timedelta(days=days - 1)
    counts: dict[date, dict[str, int]] = {}
    for day, status, n in DailyOutcome.objects.filter(
        day__range=(first_day, last_day), count__gt=0
    ).values_list("day", "status", "count"):
        counts.setdefault(day, {})[status] = n
    return counts


# --- a delivery's tries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptLine:
    """One try of a delivery as staff read it."""

    at: datetime | None
    outcome: str  # a DeliveryStatus value
    reply: str
    will_retry: bool = False


def attempt_lines(delivery: Delivery, attempts: Iterable[DeliveryAttempt]) -> list[AttemptLine]:
    """The tries of a delivery, oldest first: the logged ones (those that did not end
    in "sent"), then the successful one, which is the delivery row itself."""
    lines = [
        AttemptLine(at=a.attempted_at, outcome=a.outcome, reply=a.reply, will_retry=a.will_retry)
        for a in attempts
    ]
    if delivery.status == DeliveryStatus.SENT:
        lines.append(AttemptLine(at=delivery.sent_at, outcome=DeliveryStatus.SENT, reply="250 accepted"))
    return lines


def delivery_attempt_lines(*, delivery: Delivery) -> list[AttemptLine]:
    return attempt_lines(
        delivery, DeliveryAttempt.objects.filter(delivery_id=delivery.pk).order_by("attempted_at", "id")
    )


# --- the compose form's live audience count ---------------------------------------------------------------


def audience_would_mail(
    *,
    all_members: bool,
    recipient_ids: Iterable[int] = (),
    lists: Iterable[int] = (),
    segments: Iterable[int] = (),
    exclude_lists: Iterable[int] = (),
    exclude_segments: Iterable[int] = (),
) -> int:
    """How many members an audience as the form stands would mail now (skips left
    out): the burst form's live figure, one query besides reading the segments."""
    if all_members:
        return member_tally_count(subscribed=True)
    segment_rules = dict(
        Segment.objects.filter(pk__in=[*segments, *exclude_segments]).values_list("pk", "rules")
    )
    include = Q(pk__in=list(recipient_ids))
    if lists := list(lists):
        include |= _on_lists(lists, EVERYONE)
    for pk in segments:
        if pk in segment_rules:
            include |= rules_q(segment_rules[pk])
    if exclude := list(exclude_lists):
        include &= ~_on_lists(exclude, EVERYONE)
    for pk in exclude_segments:
        if pk in segment_rules:
            include &= ~rules_q(segment_rules[pk])
    return (
        Member.objects.filter(include)
        .annotate(reason=skip_reason_expression(burst_id=0))
        .filter(reason="")
        .count()
    )


def audience_summary(*, burst_id: int) -> str:
    """The burst's lists, segments and exclusions in words, read in one query:
    "lists Board, Helpers; segments Verified; leaving out lists Do not mail"."""
    parts = []
    for name, words in (
        ("lists", "lists"),
        ("segments", "segments"),
        ("exclude_lists", "leaving out lists"),
        ("exclude_segments", "leaving out segments"),
    ):
        through = getattr(EmailBurst, name).through
        target = "mailinglist" if "list" in name else "segment"
        parts.append(
            through.objects.filter(emailburst_id=burst_id)
            .annotate(kind=Value(words, output_field=CharField()), label=F(f"{target}__name"))
            .values_list("kind", "label")
        )
    named: dict[str, list[str]] = {}
    for kind, label in parts[0].union(*parts[1:], all=True):
        named.setdefault(kind, []).append(label)
    order = ["lists", "segments", "leaving out lists", "leaving out segments"]
    return "; ".join(f"{kind} {', '.join(sorted(named[kind]))}" for kind in order if kind in named)


AUDIENCE_FIELD_NAMES = ("lists", "segments", "exclude_lists", "exclude_segments")


def audience_ids_fill(bursts: Iterable[EmailBurst]) -> None:
    """Set `audience_ids` (field -> ids) on each burst of a page: one query for all of
    them and the four audience fields (instead of a prefetch per field)."""
    bursts = list(bursts)
    found: dict[int, dict[str, list[int]]] = {
        b.pk: {name: [] for name in AUDIENCE_FIELD_NAMES} for b in bursts
    }
    if not bursts:
        return
    parts = []
    for name in AUDIENCE_FIELD_NAMES:
        through = getattr(EmailBurst, name).through
        column = "mailinglist_id" if "list" in name else "segment_id"
        parts.append(
            through.objects.filter(emailburst_id__in=list(found))
            .annotate(kind=Value(name, output_field=CharField()), ref=F(column))
            .values_list("emailburst_id", "kind", "ref")
        )
    for burst_id, kind, ref in parts[0].union(*parts[1:], all=True):
        found[burst_id][kind].append(ref)
    for burst in bursts:
        burst.audience_ids = {name: sorted(ids) for name, ids in found[burst.pk].items()}


# --- bounces and complaints -----------------------------------------------------------------------


def mail_events(*, kind: str = "", burst_id: int | None = None) -> QuerySet[MailEvent]:
    """Mail events, newest first, with their delivery's burst (`burst_id`)."""
    events = MailEvent.objects.annotate(burst_id=F("delivery__burst_id")).order_by("-id")
    if kind:
        events = events.filter(kind=kind)
    if burst_id is not None:
        events = events.filter(delivery__burst_id=burst_id)
    return events


def suppressions(*, search: str = "") -> QuerySet[Suppression]:
    """Suppressed addresses, newest first; `search`: part of the address."""
    rows = Suppression.objects.order_by("-id")
    return rows.filter(email__contains=search.strip().lower()) if search.strip() else rows


def delivery_mail_events(*, delivery_id: int) -> list[MailEvent]:
    """What was reported about one delivery after sending, oldest first (no raw report)."""
    return list(MailEvent.objects.filter(delivery_id=delivery_id).defer("raw").order_by("id"))


def reported_counts(*, since: datetime) -> dict[str, int]:
    """Our deliveries with a bounce and with a complaint reported since `since` (events
    matched to a delivery; each delivery once): one query on (kind, received_at)."""
    events = MailEvent.objects.filter(
        kind__in=[MailEventKind.HARD_BOUNCE, MailEventKind.SOFT_BOUNCE, MailEventKind.COMPLAINT],
        received_at__gte=since,
        delivery__isnull=False,
    )
    bounce_kinds = [MailEventKind.HARD_BOUNCE, MailEventKind.SOFT_BOUNCE]
    return events.aggregate(
        bounced=Count("delivery_id", distinct=True, filter=Q(kind__in=bounce_kinds)),
        complained=Count("delivery_id", distinct=True, filter=Q(kind=MailEventKind.COMPLAINT)),
    )
