"""Scheduling: the times `burst_schedule` refuses, and a scheduled burst starts once, at
its current slot, and never after it was cancelled or sent.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns import services, tasks
from campaigns.models import BurstStatus, Delivery, EmailBurst
from common.errors import IllegalState, InvalidInput
from tests.campaigns.bursts import burst_row
from tests.factories import DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_burst_schedule_refuses_a_time_in_the_past(engine):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    for when in (timezone.now() - timedelta(minutes=1), timezone.now()):
        with pytest.raises(InvalidInput) as caught:
            services.burst_schedule(burst_id=burst.pk, send_at=when)
        assert caught.value.field == "send_at"
    burst.refresh_from_db()
    assert burst.status == BurstStatus.DRAFT
    assert burst.scheduled_at is None


@pytest.mark.parametrize(
    "status", [BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED]
)
def test_burst_schedule_refuses_a_burst_that_has_started(engine, status):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    EmailBurst.objects.filter(pk=burst.pk).update(status=status)
    before = burst_row(burst)

    with pytest.raises(IllegalState):
        services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(hours=1))

    assert burst_row(burst) == before


def test_burst_schedule_refuses_a_naive_time(engine):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    naive = (timezone.now() + timedelta(hours=1)).replace(tzinfo=None)
    with pytest.raises(InvalidInput):
        services.burst_schedule(burst_id=burst.pk, send_at=naive)
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT


@pytest.mark.parametrize(
    "send_at",
    [
        "9999-12-31T23:30:00-05:00",  # year 10000 in UTC
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:30:00+01:00",  # year 0 in UTC
    ],
)
def test_burst_schedule_refuses_a_time_that_cannot_be_held_in_utc(engine, send_at):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    with pytest.raises(InvalidInput) as caught:
        services.burst_schedule(burst_id=burst.pk, send_at=datetime.fromisoformat(send_at))
    assert caught.value.field == "send_at" and "out of range" in caught.value.message
    assert EmailBurst.objects.filter(pk=burst.pk).values_list("status", "scheduled_at").get() == (
        BurstStatus.DRAFT,
        None,
    )


def test_burst_schedule_takes_at_most_five_years_ahead(engine):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    limit = services.schedule_limit(now=timezone.now())
    with pytest.raises(InvalidInput) as caught:
        services.burst_schedule(burst_id=burst.pk, send_at=limit + timedelta(minutes=1))
    assert "at most 5 years ahead" in caught.value.message and caught.value.field == "send_at"
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT

    services.burst_schedule(burst_id=burst.pk, send_at=limit - timedelta(minutes=1))
    assert EmailBurst.objects.get(pk=burst.pk).scheduled_at == limit - timedelta(minutes=1)


def test_the_schedule_limit_of_29_february_is_28_february_five_years_on():
    assert services.schedule_limit(now=datetime(2028, 2, 29, 12, tzinfo=UTC)) == datetime(
        2033, 2, 28, 12, tzinfo=UTC
    )
    assert services.schedule_limit(now=datetime(2027, 6, 1, tzinfo=UTC)) == datetime(2032, 6, 1, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    """Move django.utils.timezone.now forward: `clock(hours=3)`."""
    real_now = timezone.now

    def move(**delta):
        later = real_now() + timedelta(**delta)
        monkeypatch.setattr(timezone, "now", lambda: later + (real_now() - start))
        return later

    start = real_now()
    return move


def test_a_rescheduled_burst_is_not_started_by_its_old_slot(engine, clock):
    members = MemberFactory.create_bulk(2, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    first_slot = timezone.now() + timedelta(hours=1)
    second_slot = timezone.now() + timedelta(hours=2)
    services.burst_schedule(burst_id=burst.pk, send_at=first_slot)
    services.burst_schedule(burst_id=burst.pk, send_at=second_slot)
    assert EmailBurst.objects.get(pk=burst.pk).scheduled_at == second_slot

    clock(hours=1, minutes=30)  # the old slot has come, the new one not yet
    assert services.burst_send_if_due(burst_id=burst.pk, slot=first_slot) is False
    assert services.burst_send_if_due(burst_id=burst.pk, slot=second_slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED

    clock(hours=3)  # both have come: still only the new slot starts it
    assert services.burst_send_if_due(burst_id=burst.pk, slot=first_slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED
    assert not Delivery.objects.filter(burst=burst).exists()
    assert engine.message_count == 0

    # the delayed task queued for the old slot is a no-op as well
    tasks.send_scheduled.call_local(burst.pk, first_slot.isoformat())
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED

    tasks.send_scheduled.call_local(burst.pk, second_slot.isoformat())
    assert services.burst_send_if_due(burst_id=burst.pk, slot=second_slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_the_dispatcher_starts_a_due_burst_exactly_once(engine, clock):
    members = MemberFactory.create_bulk(3, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(minutes=10))

    assert services.bursts_dispatch_due() == 0  # not due yet
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SCHEDULED

    clock(minutes=11)
    assert services.bursts_dispatch_due() == 1
    assert services.bursts_dispatch_due() == 0

    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert Delivery.objects.filter(burst=burst).count() == 3
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_a_cancelled_scheduled_burst_never_starts(engine, clock):
    burst = DraftBurstFactory(recipients=MemberFactory.create_bulk(2, prefix="m"))
    slot = timezone.now() + timedelta(minutes=5)
    services.burst_schedule(burst_id=burst.pk, send_at=slot)
    services.burst_cancel(burst_id=burst.pk)

    clock(minutes=6)
    assert services.bursts_dispatch_due() == 0
    assert services.burst_send_if_due(burst_id=burst.pk, slot=slot) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.CANCELLED
    assert engine.message_count == 0


def test_a_scheduled_burst_can_still_be_sent_now(engine):
    members = MemberFactory.create_bulk(2, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(days=1))

    services.burst_send(burst_id=burst.pk)

    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert services.bursts_dispatch_due() == 0
    assert engine.received_count_by_address() == {m.email: 1 for m in members}
