"""The relay's own id for each message (SPEC 13, correlation): read from its reply to
DATA by the engine's SMTP session and kept on the delivery (`relay_message_id`), in
the UPDATE that marks the deliveries sent (no query of its own)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.engine import chunk_send
from campaigns.engine.classify import relay_id_from_reply
from campaigns.models import Delivery, DeliveryStatus
from tests.campaigns.bursts import sending_burst
from tests.factories import MemberFactory
from tests.smtpd import point_email_settings

pytestmark = pytest.mark.django_db

SES_ID = "0100018e0f1d2c3b-5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d-000000"


@pytest.mark.parametrize(
    ("reply", "relay_id"),
    [
        (b"2.0.0 Ok: queued as 4ABC123", "4ABC123"),
        (b"2.0.0 OK: queued as 4Tq9Lm2Xy7zK3", "4Tq9Lm2Xy7zK3"),
        (f"Ok <{SES_ID}@email.amazonses.com>".encode(), f"{SES_ID}@email.amazonses.com"),
        (f"Ok {SES_ID}".encode(), SES_ID),
        (b"OK id=1abcde-000123-AB", "1abcde-000123-AB"),
        (
            b"2.6.0 <a1b2c3@DM6PR12MB4321.namprd12.prod.outlook.com> [InternalId=123456, "
            b"Hostname=DM6PR12MB4321.namprd12.prod.outlook.com] Queued mail for delivery",
            "a1b2c3@DM6PR12MB4321.namprd12.prod.outlook.com",
        ),
        (b"2.0.0 <abc@example.org> Queued mail for delivery", "abc@example.org"),
        (b"2.0.0 42P9CD0x012345 Message accepted for delivery", "42P9CD0x012345"),
        (b"2.0.0 OK  1709630000 a1-20020a05620a.38 - gsmtp", "a1-20020a05620a.38"),
        (b"2.0.0 Ok", ""),
        (b"OK", ""),
        (b"Ok: message accepted", ""),
        (b"2.0.0 Ok <\x00\xff>", ""),
    ],
)
def test_the_relay_id_is_read_from_each_servers_reply_to_data(reply, relay_id):
    assert relay_id_from_reply(reply) == relay_id


def relay_ids(burst) -> dict[str, str]:
    return dict(Delivery.objects.filter(burst=burst).values_list("email", "relay_message_id"))


def test_the_relay_id_of_each_accepted_message_is_kept_on_its_delivery(engine):
    ada, bob, cy, dee = (MemberFactory(username=n) for n in ("ada", "bob", "cy", "dee"))
    engine.script("ada@example.test", "data:250 2.0.0 Ok: queued as ABC123")
    engine.script("bob@example.test", f"data:250 Ok <{SES_ID}@email.amazonses.com>")
    engine.script("cy@example.test", "data:250 Ok")
    engine.script("dee@example.test", "rcpt:550 5.1.1 User unknown")
    burst = sending_burst([ada, bob, cy, dee])

    chunk_send(burst_id=burst.pk)

    assert relay_ids(burst) == {
        "ada@example.test": "ABC123",
        "bob@example.test": f"{SES_ID}@email.amazonses.com",
        "cy@example.test": "",
        "dee@example.test": "",
    }
    assert Delivery.objects.get(burst=burst, email="dee@example.test").status == DeliveryStatus.NOT_FOUND


def test_the_relay_id_is_read_without_pipelining_too(smtp_server_factory, settings, engine):
    server = point_email_settings(settings, smtp_server_factory(keep_messages=True, pipelining=False))
    server.script("ada@example.test", "data:250 OK id=1abcde-000123-AB")
    burst = sending_burst([MemberFactory(username="ada")])

    chunk_send(burst_id=burst.pk)

    assert relay_ids(burst) == {"ada@example.test": "1abcde-000123-AB"}


def test_a_retry_keeps_the_relay_id_of_the_try_that_was_accepted(engine):
    ada = MemberFactory(username="ada")
    engine.script(
        "ada@example.test", "451 4.7.1 Greylisted, try again later", "data:250 2.0.0 Ok: queued as RETRY1"
    )
    burst = sending_burst([ada])

    chunk_send(burst_id=burst.pk)
    assert relay_ids(burst) == {"ada@example.test": ""}
    Delivery.objects.filter(burst=burst).update(next_attempt_at=None)
    chunk_send(burst_id=burst.pk)

    delivery = Delivery.objects.get(burst=burst)
    assert (delivery.status, delivery.attempts, delivery.relay_message_id) == (
        DeliveryStatus.SENT,
        2,
        "RETRY1",
    )


def test_keeping_relay_ids_adds_no_query(engine):
    with_ids = [MemberFactory(username=f"with{n}") for n in range(5)]
    without = [MemberFactory(username=f"without{n}") for n in range(5)]
    for member in without:
        engine.script(member.email, "data:250 2.0.0 Ok")
    first, second = sending_burst(with_ids), sending_burst(without)

    with CaptureQueriesContext(connection) as queries_with:
        chunk_send(burst_id=first.pk)
    with CaptureQueriesContext(connection) as queries_without:
        chunk_send(burst_id=second.pk)

    assert all(relay_ids(first).values()) and not any(relay_ids(second).values())
    assert len(queries_with) == len(queries_without)
