"""Every try of a delivery is kept (issue 11 point 7): the reply of each try that did
not end in "sent", so that a greylisted first try's 451 is still there after the
second try succeeds. Real aiosmtpd sink and engine."""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import Delivery, DeliveryAttempt, DeliveryStatus
from tests.campaigns.bursts import drive
from tests.factories import DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def attempts_of(address: str) -> list[tuple[str, bool, bool, str]]:
    delivery = Delivery.objects.get(email=address)
    return [
        (a.outcome, a.will_retry, a.counted, a.reply)
        for a in DeliveryAttempt.objects.filter(delivery=delivery).order_by("attempted_at", "id")
    ]


def test_it_keeps_the_451_of_a_greylisted_first_try_after_the_second_succeeds(engine):
    greylisted = MemberFactory(email="grey@example.test")
    plain = MemberFactory(email="plain@example.test")
    engine.script("grey@example.test", "451 4.7.1 Greylisted, try again later")
    burst = DraftBurstFactory(recipients=[greylisted, plain])

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    delivery = Delivery.objects.get(email="grey@example.test")
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 2
    [(outcome, will_retry, counted, reply)] = attempts_of("grey@example.test")
    assert (outcome, will_retry, counted) == (DeliveryStatus.FAILED, True, True)
    assert reply.startswith("451 4.7.1 Greylisted")
    # A first try that succeeds is the delivery row itself: no attempt row.
    assert attempts_of("plain@example.test") == []


def test_it_keeps_every_failed_try_up_to_the_final_failure(engine):
    member = MemberFactory(email="full@example.test")
    engine.script(
        "full@example.test", "452 4.2.2 Mailbox full", "452 4.2.2 Mailbox full", "452 4.2.2 Mailbox full"
    )
    burst = DraftBurstFactory(recipients=[member])

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    delivery = Delivery.objects.get(email="full@example.test")
    assert delivery.status == DeliveryStatus.FAILED
    log = attempts_of("full@example.test")
    assert len(log) == delivery.attempts == 3
    assert [will_retry for _, will_retry, _, _ in log] == [True, True, False]
    assert all(reply.startswith("452 4.2.2 Mailbox full") for *_, reply in log)


def test_it_keeps_a_dropped_connection_and_a_permanent_refusal(engine):
    members = [MemberFactory(email="drop@example.test"), MemberFactory(email="gone@example.test")]
    engine.script("drop@example.test", "rcpt:drop")
    engine.script("gone@example.test", "550 5.1.1 User unknown")
    burst = DraftBurstFactory(recipients=members)

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    [(outcome, will_retry, _, _)] = attempts_of("drop@example.test")
    assert (outcome, will_retry) == (DeliveryStatus.CONNECTION_ERROR, True)
    [(outcome, will_retry, _, reply)] = attempts_of("gone@example.test")
    assert (outcome, will_retry) == (DeliveryStatus.NOT_FOUND, False)
    assert reply.startswith("550 5.1.1 User unknown")


def test_the_delivery_page_lists_every_try_with_its_reply(engine, client, superuser):
    member = MemberFactory(email="grey@example.test")
    engine.script("grey@example.test", "451 4.7.1 Greylisted, try again later")
    burst = DraftBurstFactory(recipients=[member])
    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)
    delivery = Delivery.objects.get(email="grey@example.test")
    client.force_login(superuser)

    page = client.get(f"/admin/campaigns/delivery/{delivery.pk}/change/").content.decode()

    assert "451 4.7.1 Greylisted" in page
    assert "(to be tried again)" in page
    assert "250 accepted" in page
    assert page.index("451 4.7.1 Greylisted") < page.index("250 accepted")
