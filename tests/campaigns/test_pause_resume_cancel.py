"""Pause, resume and cancel: between chunks, while a chunk is in flight, and while a
dead worker still holds deliveries.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from campaigns import selectors, services
from campaigns.engine import claiming, recording
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from common.errors import IllegalState
from tests.campaigns.bursts import pending, sending_burst, statuses
from tests.factories import DraftBurstFactory, MemberFactory
from tests.smtpd import point_email_settings

pytestmark = pytest.mark.django_db(transaction=True)


def test_pause_stops_a_sending_burst_and_resume_sends_the_rest(engine):
    members = MemberFactory.create_bulk(4, prefix="m")
    burst = sending_burst(members)

    services.burst_pause(burst_id=burst.pk, reason="Checking a typo")
    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    assert burst.pause_reason == "Checking a typo"

    result = services.chunk_process(burst_id=burst.pk)
    assert result.stopped == BurstStatus.PAUSED
    assert engine.message_count == 0
    assert set(statuses(burst).values()) == {DeliveryStatus.PENDING}
    assert not pending(burst).exclude(claim_token="").exists()

    services.burst_resume(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_pause_and_resume_refuse_the_wrong_states(engine):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    with pytest.raises(IllegalState):
        services.burst_pause(burst_id=burst.pk)
    with pytest.raises(IllegalState):
        services.burst_resume(burst_id=burst.pk)
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT


def test_cancel_makes_the_remaining_deliveries_skipped(engine):
    members = MemberFactory.create_bulk(4, prefix="m")
    burst = sending_burst(members)
    Delivery.objects.filter(burst=burst, member=members[0]).update(
        status=DeliveryStatus.SENT, attempts=1, sent_at=timezone.now()
    )

    services.burst_cancel(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.CANCELLED
    assert burst.finished_at is not None
    assert statuses(burst) == {
        "m00@example.test": DeliveryStatus.SENT,
        "m01@example.test": DeliveryStatus.SKIPPED,
        "m02@example.test": DeliveryStatus.SKIPPED,
        "m03@example.test": DeliveryStatus.SKIPPED,
    }
    services.chunk_process(burst_id=burst.pk)
    assert engine.message_count == 0
    with pytest.raises(IllegalState):
        services.burst_resume(burst_id=burst.pk)


def test_cancel_works_on_a_paused_burst(engine):
    burst = sending_burst(MemberFactory.create_bulk(2, prefix="m"))
    services.burst_pause(burst_id=burst.pk)

    services.burst_cancel(burst_id=burst.pk)

    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.CANCELLED
    assert set(statuses(burst).values()) == {DeliveryStatus.SKIPPED}


def _act_on_rcpt_of(address: str, action):
    """A sink observer that runs `action` once, when `address` is first RCPT'd, before the
    reply goes out.

    The sink calls observers in its event loop, where Django refuses database access:
    the action runs in a thread of its own, and the loop waits for it."""
    done = threading.Event()

    def run():
        try:
            action()
        finally:
            db_connection.close()  # this thread's own connection

    def on_event(event):
        if event.stage == "rcpt" and event.address == address and event.kind == "reply" and not done.is_set():
            done.set()
            thread = threading.Thread(target=run)
            thread.start()
            thread.join(10)

    return on_event


def test_cancel_while_a_chunk_is_in_flight_skips_the_rest_of_the_chunk(
    settings, smtp_server_factory, immediate_huey, monkeypatch
):
    monkeypatch.setattr(recording, "FLUSH_EVERY", 1)  # the worker looks at the burst after each message
    members = MemberFactory.create_bulk(6, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    server = smtp_server_factory(
        on_event=_act_on_rcpt_of("m02@example.test", lambda: services.burst_cancel(burst_id=burst.pk))
    )
    point_email_settings(settings, server)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.CANCELLED
    got = statuses(burst)
    received = server.received_count_by_address()
    # what went before is sent; m02, in flight when the cancel came, ends with its real
    # outcome (sent, or skipped when its message never left); the rest are skipped
    assert got["m00@example.test"] == got["m01@example.test"] == DeliveryStatus.SENT
    assert got["m02@example.test"] == (
        DeliveryStatus.SENT if "m02@example.test" in received else DeliveryStatus.SKIPPED
    )
    assert [got[f"m0{i}@example.test"] for i in (3, 4, 5)] == [DeliveryStatus.SKIPPED] * 3
    assert received == {email: 1 for email, status in got.items() if status == DeliveryStatus.SENT}
    assert not Delivery.objects.filter(burst=burst).exclude(claim_token="").exists()


def test_pause_while_a_chunk_is_in_flight_then_resume_mails_each_address_once(
    settings, smtp_server_factory, immediate_huey, monkeypatch
):
    monkeypatch.setattr(recording, "FLUSH_EVERY", 1)
    members = MemberFactory.create_bulk(6, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    server = smtp_server_factory(
        on_event=_act_on_rcpt_of("m02@example.test", lambda: services.burst_pause(burst_id=burst.pk))
    )
    point_email_settings(settings, server)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.PAUSED
    got = statuses(burst)
    assert got["m00@example.test"] == got["m01@example.test"] == DeliveryStatus.SENT
    assert [got[f"m0{i}@example.test"] for i in (3, 4, 5)] == [DeliveryStatus.PENDING] * 3
    assert server.received_count_by_address() == {
        email: 1 for email, status in got.items() if status == DeliveryStatus.SENT
    }
    assert not pending(burst).exclude(claim_token="").exists()

    services.burst_resume(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert server.received_count_by_address() == {m.email: 1 for m in members}


def test_cancel_while_a_dead_worker_holds_deliveries_leaves_none_pending_after_recovery(engine):
    members = MemberFactory.create_bulk(4, prefix="m")
    burst = sending_burst(members)
    claiming.claim(burst_id=burst.pk, token="dead-worker", limit=2)

    services.burst_cancel(burst_id=burst.pk)
    Delivery.objects.filter(claim_token="dead-worker").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    services.deliveries_recover()

    assert set(statuses(burst).values()) == {DeliveryStatus.SKIPPED}
    assert selectors.burst_stats(burst_id=burst.pk).pending_count == 0
