"""Real `run_huey` consumers: concurrency, crashes, rate limit, scheduling.

They run on whatever the suite is configured with: SQLite + huey on SQLite for
the embedded run, PostgreSQL + Redis for the services run of CI.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from tests.campaigns.bursts import assert_counters_exact, burst_done
from tests.factories import DraftBurstFactory, MemberFactory
from tests.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class EveryoneFactory(DraftBurstFactory):
    """A burst for all members, in text and HTML."""

    all_members = True
    html_body = "<p>Dear {{ member.first_name }},</p><p>news.</p>"


def assert_every_recipient_terminal(burst_id: int, expected: int) -> None:
    rows = Delivery.objects.filter(burst_id=burst_id)
    assert rows.count() == expected
    assert not rows.exclude(status__in=[DeliveryStatus.SENT]).exists(), Counter(
        rows.values_list("status", flat=True)
    )


def test_two_consumers_never_send_one_delivery_twice(sink, start_consumer):
    MemberFactory.create_bulk(1500)
    burst = EveryoneFactory()
    services.burst_send(burst_id=burst.pk)
    consumers = [start_consumer(sink=sink, workers=2, EMAIL_CHUNK_SIZE=50) for _ in range(2)]
    wait_for(lambda: burst_done(burst.pk), timeout=120, what="the burst to be sent")
    counts = sink.received_count_by_address()
    assert len(counts) == 1500
    assert set(counts.values()) == {1}
    assert_every_recipient_terminal(burst.pk, 1500)
    assert_counters_exact(burst.pk)  # chunks of two consumers counted side by side
    assert all(c.proc.poll() is None for c in consumers)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_a_crashed_consumer_loses_nothing_and_resends_at_most_what_was_in_flight(sink, start_consumer, sig):
    total = 2000
    MemberFactory.create_bulk(total)
    burst = EveryoneFactory()
    services.burst_send(burst_id=burst.pk)
    first = start_consumer(sink=sink, workers=2, EMAIL_CLAIM_TIMEOUT="3", EMAIL_CHUNK_SIZE="100")
    wait_for(lambda: sink.message_count >= total * 0.3, timeout=120, interval=0.01, what="30 % accepted")
    first.send_signal(sig)
    first.proc.wait(timeout=60)
    # What was claimed but not recorded when the consumer died.
    in_flight = set(
        Delivery.objects.filter(burst_id=burst.pk, status=DeliveryStatus.PENDING)
        .exclude(claim_token="")
        .values_list("email", flat=True)
    )
    time.sleep(3.2)  # the dead consumer's leases expire
    services.deliveries_recover()
    start_consumer(sink=sink, workers=2, EMAIL_CLAIM_TIMEOUT="3", EMAIL_CHUNK_SIZE="100")
    wait_for(lambda: burst_done(burst.pk), timeout=180, what="the burst to be sent")

    counts = sink.received_count_by_address()
    assert len(counts) == total, "an address never reached the sink"
    twice = {address for address, n in counts.items() if n > 1}
    assert max(counts.values()) <= 2
    assert twice <= in_flight
    # Only the message in flight on each open connection (two workers): every reply
    # read was journaled, and the recovery recorded the journal before taking back.
    assert len(twice) <= 2, sorted(twice)
    if sig == signal.SIGINT:
        assert twice == set()
    assert_every_recipient_terminal(burst.pk, total)
    assert_counters_exact()  # what the dead consumer had not committed was never counted


def test_the_rate_limit_holds_across_two_consumers(sink, start_consumer):
    MemberFactory.create_bulk(500)
    burst = EveryoneFactory()
    started = time.monotonic()
    services.burst_send(burst_id=burst.pk)
    for _ in range(2):
        start_consumer(sink=sink, workers=2, EMAIL_RATE_LIMIT="50", EMAIL_CHUNK_SIZE="50")
    wait_for(lambda: burst_done(burst.pk), timeout=120, what="the burst to be sent")
    elapsed = time.monotonic() - started
    assert sink.message_count == 500
    assert elapsed >= 9.0, f"500 messages at 50/s took only {elapsed:.2f} s"


def test_a_scheduled_burst_fires_once_at_its_time_and_the_old_slot_never_fires(sink, start_consumer):
    MemberFactory.create_bulk(5)
    moved = EveryoneFactory()
    services.burst_schedule(burst_id=moved.pk, send_at=timezone.now() + timedelta(seconds=2))
    services.burst_schedule(burst_id=moved.pk, send_at=timezone.now() + timedelta(days=1))  # rescheduled
    cancelled = EveryoneFactory()
    services.burst_schedule(burst_id=cancelled.pk, send_at=timezone.now() + timedelta(seconds=2))
    services.burst_cancel(burst_id=cancelled.pk)
    due = EveryoneFactory()
    services.burst_schedule(burst_id=due.pk, send_at=timezone.now() + timedelta(seconds=3))
    start_consumer(sink=sink, workers=2)
    wait_for(lambda: burst_done(due.pk), timeout=60, what="the scheduled burst to be sent")
    time.sleep(1.5)
    assert sink.message_count == 5
    assert EmailBurst.objects.get(pk=moved.pk).status == BurstStatus.SCHEDULED
    assert EmailBurst.objects.get(pk=cancelled.pk).status == BurstStatus.CANCELLED
    assert not Delivery.objects.filter(burst_id__in=[moved.pk, cancelled.pk]).exists()


def test_the_periodic_dispatcher_sends_a_due_burst_whose_delayed_task_was_lost(
    sink, start_consumer, huey_queue
):
    from huey.contrib.djhuey import HUEY

    MemberFactory.create_bulk(5)
    burst = EveryoneFactory()
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(seconds=1))
    HUEY.storage.flush_schedule()  # the queue lost the delayed task
    time.sleep(1.2)
    # No consumer ran at send_at; the periodic task starts it (called directly
    # rather than waiting up to a minute for the tick).
    from campaigns.tasks import periodic_maintenance

    periodic_maintenance.call_local()
    periodic_maintenance.call_local()
    start_consumer(sink=sink, workers=1)
    wait_for(lambda: burst_done(burst.pk), timeout=60, what="the burst to be sent")
    assert sink.message_count == 5
    assert set(sink.received_count_by_address().values()) == {1}
