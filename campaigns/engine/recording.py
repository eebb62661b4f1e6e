"""Writing what happened to each delivery: outcomes are collected and written as
grouped UPDATEs every few dozen messages (or every second), and the chunk's lease
is renewed as it goes. Also the burst's streak of connection failures, counted
across all workers."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import CharField, F, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from campaigns.engine.classify import Outcome
from campaigns.engine.journal import Journal
from campaigns.models import (
    DailyOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EmailBurst,
    counter_field,
)
from members.models import Suppression, SuppressionReason

FLUSH_EVERY = 50
FLUSH_SECONDS = 1.0


@dataclass
class Recorder:
    """Collects outcomes and writes them as grouped UPDATEs. With a journal, each
    outcome is on disk before `add` returns and the journal is emptied once the
    database holds it; `replay` writes a dead chunk's journal (its deliveries may
    have been released or taken back since, but not yet claimed again)."""

    burst_id: int
    token: str
    journal: Journal | None = None
    replay: bool = False
    sent: list[int] = field(default_factory=list)
    # (delivery id, the relay's id) of the sent ones whose relay named its id.
    relay_ids: list[tuple[int, str]] = field(default_factory=list)
    others: dict[tuple, list[int]] = field(default_factory=lambda: defaultdict(list))
    retry_at: list[datetime] = field(default_factory=list)
    # Deliveries written so far, by the status they were written with (a retry is pending).
    outcomes: Counter[str] = field(default_factory=Counter)
    last_flush: float = field(default_factory=time.monotonic)
    renewed: float = field(default_factory=time.monotonic)
    count: int = 0
    done: int = 0

    def add(self, delivery_id: int, attempts_before: int, outcome: Outcome) -> None:
        if self.journal is not None:
            self.journal.write(delivery_id, attempts_before, outcome)
        self.count += 1
        if outcome.status == DeliveryStatus.SENT:
            self.sent.append(delivery_id)
            if outcome.relay_id:
                self.relay_ids.append((delivery_id, outcome.relay_id))
            return
        increment = 1 if outcome.smtp_tried else 0
        attempts = attempts_before + increment
        if outcome.transient and attempts < settings.EMAIL_MAX_ATTEMPTS:
            delay = settings.EMAIL_RETRY_DELAY * (2 ** max(0, attempts - 1))
            self.others[(DeliveryStatus.PENDING, outcome.error, increment, delay, outcome.status)].append(
                delivery_id
            )
        else:
            self.others[(outcome.status, outcome.error, increment, None, outcome.status)].append(delivery_id)

    def due(self) -> bool:
        return self.count >= FLUSH_EVERY or (
            self.count and time.monotonic() - self.last_flush >= FLUSH_SECONDS
        )

    def flush(self) -> None:
        if not self.count:
            return
        now = timezone.now()
        tokens = [self.token, ""] if self.replay else [self.token]
        mine = Delivery.objects.filter(claim_token__in=tokens, status=DeliveryStatus.PENDING)
        written_now: Counter[str] = Counter()
        with transaction.atomic():
            burst_lock(self.burst_id)
            if connection.vendor == "postgresql":
                # Status writes do not wait for the WAL flush (3-15 ms per commit
                # here). Only a crash of PostgreSQL itself can lose the last
                # fraction of a second of them: those deliveries go back to
                # pending and are sent again, as if they had been in flight.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            if self.sent:
                relay = {"relay_message_id": relay_id_case(self.relay_ids)} if self.relay_ids else {}
                written = mine.filter(id__in=self.sent).update(
                    status=DeliveryStatus.SENT,
                    sent_at=now,
                    attempts=F("attempts") + 1,
                    error_message="",
                    claim_token="",
                    lease_expires_at=None,
                    next_attempt_at=None,
                    updated_at=now,
                    **relay,
                )
                written_now[DeliveryStatus.SENT] += written
            attempts: list[DeliveryAttempt] = []
            not_found: list[int] = []
            for (status, error, increment, delay, outcome), ids in self.others.items():
                next_at = now + timedelta(seconds=delay) if delay is not None else None
                if next_at:
                    self.retry_at.append(next_at)
                written = mine.filter(id__in=ids).update(
                    status=status,
                    error_message=error,
                    attempts=F("attempts") + increment,
                    claim_token="",
                    lease_expires_at=None,
                    next_attempt_at=next_at,
                    updated_at=now,
                )
                written_now[status] += written
                if written and status == DeliveryStatus.NOT_FOUND:
                    not_found += ids
                if written:
                    attempts += attempt_rows(
                        ids,
                        burst_id=self.burst_id,
                        now=now,
                        outcome=outcome,
                        reply=error,
                        will_retry=next_at is not None,
                        counted=bool(increment),
                    )
            if attempts:
                DeliveryAttempt.objects.bulk_create(attempts)
            if not_found:
                suppress_not_found(not_found, now=now)
            moved_from_pending(burst_id=self.burst_id, moved=written_now, now=now)
            # Still working on the rest of the chunk: renew the lease, a third of
            # the way through it (renewing every flush rewrote every row each time).
            if not self.replay and time.monotonic() - self.renewed >= settings.EMAIL_CLAIM_TIMEOUT / 3:
                mine.update(lease_expires_at=now + timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT))
                self.renewed = time.monotonic()
        if self.journal is not None:
            self.journal.clear()
        self.outcomes.update(written_now)
        self.done += self.count
        self.sent, self.relay_ids, self.others, self.count = [], [], defaultdict(list), 0
        self.last_flush = time.monotonic()


def relay_id_case(pairs: list[tuple[int, str]]) -> RawSQL:
    """The relay ids as one CASE inside the UPDATE that marks the deliveries sent: no
    query of their own (a CASE of ORM When()s cost more per message than the build)."""
    column, pk = (connection.ops.quote_name(name) for name in ("relay_message_id", "id"))
    whens = " ".join(["WHEN %s THEN %s"] * len(pairs))
    params = [value for delivery_id, relay_id in pairs for value in (delivery_id, relay_id[:255])]
    return RawSQL(f"CASE {pk} {whens} ELSE {column} END", params, output_field=CharField())


def attempt_rows(
    ids: list[int], *, burst_id: int, now: datetime, outcome: str, reply: str, will_retry: bool, counted: bool
) -> list[DeliveryAttempt]:
    return [
        DeliveryAttempt(
            delivery_id=delivery_id,
            burst_id=burst_id,
            attempted_at=now,
            outcome=outcome,
            will_retry=will_retry,
            counted=counted,
            reply=reply,
        )
        for delivery_id in ids
    ]


def suppress_not_found(delivery_ids: list[int], *, now: datetime) -> None:
    """Suppress the addresses these deliveries found not to exist: one INSERT … SELECT
    per flush, in its transaction; an address already suppressed keeps its row."""
    table = connection.ops.quote_name(Suppression._meta.db_table)
    deliveries = connection.ops.quote_name(Delivery._meta.db_table)
    marks = ", ".join(["%s"] * len(delivery_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (email, reason, note, created_at) "
            f"SELECT DISTINCT lower(email), %s, %s, %s FROM {deliveries} "
            f"WHERE id IN ({marks}) AND status = %s AND email <> '' "
            "ON CONFLICT (email) DO NOTHING",
            [SuppressionReason.NOT_FOUND, "", now, *delivery_ids, DeliveryStatus.NOT_FOUND],
        )


def fail_claimed(*, burst_id: int, token: str, error: str) -> int:
    """Mark everything a chunk holds other_error (a burst whose message cannot be built)."""
    return pending_finish(
        Delivery.objects.filter(claim_token=token),
        burst_id=burst_id,
        status=DeliveryStatus.OTHER_ERROR,
        error=error,
    )


# --- the counters ---------------------------------------------------------------------------------
# Every write of a delivery's status also moves the burst's counters and the day's
# outcomes, in the same transaction, so that they always equal a recount. The
# burst's row is locked first, in every writer, so that writers of one burst
# queue in one order and never deadlock.


def outcome_day(moment: datetime) -> date:
    """The day a status written at `moment` counts for: the site's time zone."""
    return timezone.localdate(moment, timezone.get_default_timezone())


def burst_lock(burst_id: int) -> None:
    """Lock the burst's row for this transaction (PostgreSQL; SQLite writers queue anyway)."""
    list(EmailBurst.objects.select_for_update().filter(pk=burst_id).values_list("pk", flat=True))


def tally(*, burst_id: int, changes: Counter[str] | dict[str, int]) -> None:
    """Move the burst's counters: status -> deliveries gained (negative: lost)."""
    fields = {counter_field(status): F(counter_field(status)) + n for status, n in changes.items() if n}
    if fields:
        EmailBurst.objects.filter(pk=burst_id).update(**fields)


def daily_add(changes: Counter[tuple[date, str]] | dict[tuple[date, str], int]) -> None:
    """Move the daily outcomes: (day, status) -> deliveries gained (negative: lost)."""
    rows = sorted(  # one order for every writer: no deadlock between two of them
        (day.isoformat(), status, n)
        for (day, status), n in changes.items()
        if n and status != DeliveryStatus.PENDING
    )
    if not rows:
        return
    table = connection.ops.quote_name(DailyOutcome._meta.db_table)
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (day, status, count) VALUES {values} "
            f"ON CONFLICT (day, status) DO UPDATE SET count = {table}.count + excluded.count",
            [value for row in rows for value in row],
        )


def moved_from_pending(*, burst_id: int, moved: Counter[str] | dict[str, int], now: datetime) -> None:
    """Count deliveries that left `pending` for the statuses in `moved` at `now`."""
    changes = Counter({status: n for status, n in moved.items() if status != DeliveryStatus.PENDING})
    if not changes:
        return
    changes[DeliveryStatus.PENDING] -= sum(changes.values())
    tally(burst_id=burst_id, changes=changes)
    today = outcome_day(now)
    daily_add({(today, status): n for status, n in changes.items()})


def pending_finish(queryset: QuerySet[Delivery], *, burst_id: int, status: str, error: str) -> int:
    """Give the pending deliveries of `queryset` (all of one burst) a final status
    and count them; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        burst_lock(burst_id)
        moved = queryset.filter(burst_id=burst_id, status=DeliveryStatus.PENDING).update(
            status=status,
            error_message=error,
            claim_token="",
            lease_expires_at=None,
            next_attempt_at=None,
            updated_at=now,
        )
        moved_from_pending(burst_id=burst_id, moved={status: moved}, now=now)
    return moved


def connection_failure_count(burst_id: int) -> int:
    """Count a connection failure for the burst, across all workers; returns the streak."""
    EmailBurst.objects.filter(pk=burst_id).update(connection_failures=F("connection_failures") + 1)
    return EmailBurst.objects.filter(pk=burst_id).values_list("connection_failures", flat=True).first() or 0


def connection_failures_reset(burst_id: int) -> None:
    """The server answered: the burst's streak of connection failures ends."""
    EmailBurst.objects.filter(pk=burst_id, connection_failures__gt=0).update(connection_failures=0)
