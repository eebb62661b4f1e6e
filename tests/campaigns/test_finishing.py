"""A burst is marked sent by the chunk that finishes its last delivery, once, and only
once every delivery exists.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns import services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from tests.campaigns.bursts import pending, sending_burst
from tests.factories import DraftBurstFactory, MemberFactory, counters_repair

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_chunk_that_finishes_the_last_delivery_marks_the_burst_sent(engine):
    members = MemberFactory.create_bulk(3, prefix="m")
    engine.script("m01@example.test", "451 4.7.1 Greylisted")
    burst = DraftBurstFactory(recipients=members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENDING
    assert burst.finished_at is None
    assert pending(burst).count() == 1

    pending(burst).update(next_attempt_at=None)
    services.chunk_process(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    last = Delivery.objects.get(burst=burst, member=members[1])
    assert burst.finished_at is not None
    assert burst.finished_at >= last.sent_at
    assert (burst.finished_at - last.sent_at) < timedelta(seconds=5)


def test_burst_finish_if_done_waits_for_every_delivery_and_for_deliveries_ready(engine):
    members = MemberFactory.create_bulk(2, prefix="m")
    burst = sending_burst(members)
    EmailBurst.objects.filter(pk=burst.pk).update(deliveries_ready=False)
    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SENT)
    counters_repair()

    # every delivery that exists is done, but more may still be created
    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENDING

    EmailBurst.objects.filter(pk=burst.pk).update(deliveries_ready=True)
    Delivery.objects.filter(burst=burst, member=members[1]).update(status=DeliveryStatus.PENDING)
    counters_repair()
    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).finished_at is None

    Delivery.objects.filter(burst=burst, member=members[1]).update(status=DeliveryStatus.FAILED)
    counters_repair()
    assert services.burst_finish_if_done(burst_id=burst.pk) is True
    finished = EmailBurst.objects.get(pk=burst.pk)
    assert finished.status == BurstStatus.SENT
    assert finished.finished_at is not None

    # only once
    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).finished_at == finished.finished_at


@pytest.mark.parametrize("status", [BurstStatus.PAUSED, BurstStatus.CANCELLED, BurstStatus.DRAFT])
def test_burst_finish_if_done_leaves_other_states_alone(engine, status):
    burst = sending_burst([MemberFactory()])
    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SENT)
    EmailBurst.objects.filter(pk=burst.pk).update(status=status)
    counters_repair()

    assert services.burst_finish_if_done(burst_id=burst.pk) is False
    assert EmailBurst.objects.get(pk=burst.pk).status == status
