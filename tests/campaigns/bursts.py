"""Reading and driving bursts in the sending tests.

Huey runs in immediate mode there, where delayed tasks (a retry's) never run: `drive`
plays the consumer, calling `services.chunk_process` until nothing is pending.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet
from django.utils import timezone

from campaigns import selectors, services
from campaigns.models import BurstStatus, DailyOutcome, Delivery, DeliveryStatus, EmailBurst
from members.models import Member
from tests.factories import DeliveryFactory, DraftBurstFactory


def statuses(burst: EmailBurst) -> dict[str, str]:
    """Each delivery's status by the address it was sent to."""
    return dict(Delivery.objects.filter(burst=burst).values_list("email", "status"))


def pending(burst: EmailBurst) -> QuerySet[Delivery]:
    return Delivery.objects.filter(burst=burst, status=DeliveryStatus.PENDING)


def burst_row(burst: EmailBurst) -> dict:
    """The burst's stored row, to show that a refused action changed nothing."""
    return EmailBurst.objects.filter(pk=burst.pk).values().get()


def drive(burst_id: int, *, rounds: int = 20) -> int:
    """Run chunks until no delivery of the burst is pending; returns the rounds it took."""
    for n in range(rounds):
        waiting = Delivery.objects.filter(burst_id=burst_id, status=DeliveryStatus.PENDING)
        if not waiting.exists():
            return n
        # With EMAIL_RETRY_DELAY=0 a retry is due at once; clear it anyway so the test
        # never depends on the clock's resolution.
        waiting.update(next_attempt_at=None)
        services.chunk_process(burst_id=burst_id)
    raise AssertionError(f"deliveries of burst {burst_id} still pending after {rounds} rounds")


def sending_burst(members: Iterable[Member], **fields) -> EmailBurst:
    """A burst in `sending` whose pending deliveries all exist and no worker holds yet."""
    members = list(members)
    burst = DraftBurstFactory(recipients=members, **fields)
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENDING, started_at=timezone.now())
    DeliveryFactory.create_for(burst, members)
    burst.refresh_from_db()
    return burst


def burst_done(burst_id: int) -> bool:
    return EmailBurst.objects.filter(pk=burst_id, status=BurstStatus.SENT).exists()


def assert_counters_exact(burst_id: int | None = None) -> None:
    """The counters kept while statuses were written equal a recount: the burst's (or
    every burst's) per status, and the daily outcomes."""
    bursts = EmailBurst.objects.all() if burst_id is None else EmailBurst.objects.filter(pk=burst_id)
    for burst in bursts:
        assert burst.counts == selectors.delivery_counts(burst_id=burst.pk), f"burst {burst.pk}"
    kept = {
        (day, status): n for day, status, n in DailyOutcome.objects.values_list("day", "status", "count") if n
    }
    assert kept == selectors.daily_outcome_recount()
