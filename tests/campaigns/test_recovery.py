"""Recovery after a worker died: expired leases are taken back, live ones left alone,
forgotten bursts finished and half-created deliveries completed.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.engine import claiming
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from tests.campaigns.bursts import sending_burst
from tests.factories import DraftBurstFactory, MemberFactory, counters_repair

pytestmark = pytest.mark.django_db(transaction=True)


def test_deliveries_recover_takes_back_expired_leases_and_sends_them(engine):
    members = MemberFactory.create_bulk(4, prefix="m")
    burst = sending_burst(members)
    assert claiming.claim(burst_id=burst.pk, token="dead-worker", limit=4) == 4
    # nothing is available while the lease lives
    assert services.chunk_process(burst_id=burst.pk).claimed == 0
    Delivery.objects.filter(burst=burst).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    report = services.deliveries_recover()

    assert report["recovered"] == 4
    assert report["dispatched"] >= 1
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_deliveries_recover_leaves_live_leases_alone(engine):
    members = MemberFactory.create_bulk(4, prefix="m")
    burst = sending_burst(members)
    claiming.claim(burst_id=burst.pk, token="dead-worker", limit=2)
    claiming.claim(burst_id=burst.pk, token="live-worker", limit=2)
    dead = list(Delivery.objects.filter(claim_token="dead-worker").values_list("pk", flat=True))
    Delivery.objects.filter(pk__in=dead).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    live = Delivery.objects.filter(claim_token="live-worker")
    assert live.count() == 2
    leases = dict(live.values_list("pk", "lease_expires_at"))

    report = services.deliveries_recover()

    assert report["recovered"] == 2
    assert not Delivery.objects.filter(pk__in=dead).exclude(claim_token="").exists()
    assert (
        dict(Delivery.objects.filter(claim_token="live-worker").values_list("pk", "lease_expires_at"))
        == leases
    )
    # the live worker is not robbed: nothing of its chunk was sent by anyone else
    assert (
        engine.received_count_by_address()
        .keys()
        .isdisjoint(Delivery.objects.filter(pk__in=leases).values_list("email", flat=True))
    )
    # the taken-back deliveries are available again, the live ones are not
    assert services.chunk_process(burst_id=burst.pk).claimed == 2
    assert set(engine.received_count_by_address()) == set(
        Delivery.objects.filter(pk__in=dead).values_list("email", flat=True)
    )


def test_deliveries_recover_finishes_a_forgotten_burst(engine):
    burst = sending_burst(MemberFactory.create_bulk(2, prefix="m"))
    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SENT)
    counters_repair()

    report = services.deliveries_recover()

    assert report["finished"] == 1
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT


def test_a_chunk_never_sends_a_delivery_another_worker_holds(engine):
    members = MemberFactory.create_bulk(4, prefix="m")
    burst = sending_burst(members)
    claiming.claim(burst_id=burst.pk, token="other-worker", limit=2)

    result = services.chunk_process(burst_id=burst.pk)

    assert result.claimed == 2
    held = set(Delivery.objects.filter(claim_token="other-worker").values_list("email", flat=True))
    assert len(held) == 2
    assert held.isdisjoint(engine.received_count_by_address())
    assert engine.message_count == 2


def test_deliveries_recover_creates_the_deliveries_of_a_burst_whose_creation_died(engine):
    members = MemberFactory.create_bulk(5, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    long_ago = timezone.now() - timedelta(hours=1)
    EmailBurst.objects.filter(pk=burst.pk).update(
        status=BurstStatus.SENDING, started_at=long_ago, deliveries_ready=False, updated_at=long_ago
    )
    # the creating worker died after its first batch
    Delivery.objects.bulk_create(
        Delivery(burst=burst, member=m, email=m.email, status=DeliveryStatus.PENDING) for m in members[:2]
    )
    counters_repair()  # that batch was counted as it was created

    report = services.deliveries_recover()

    assert report["created"] == 1
    assert Delivery.objects.filter(burst=burst).count() == 5
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_deliveries_recover_leaves_a_burst_whose_deliveries_are_still_being_created(engine):
    members = MemberFactory.create_bulk(3, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    EmailBurst.objects.filter(pk=burst.pk).update(
        status=BurstStatus.SENDING, started_at=timezone.now(), deliveries_ready=False
    )

    report = services.deliveries_recover()

    assert report["created"] == 0
    assert not Delivery.objects.filter(burst=burst).exists()
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENDING
    assert engine.message_count == 0
