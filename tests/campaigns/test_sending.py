"""`services.burst_send`: what it refuses before any message leaves, and the one
delivery per recipient it creates and mails once.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from common.errors import IllegalState, InvalidInput
from members.models import Member
from tests.campaigns.bursts import burst_row
from tests.factories import DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "status", [BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED]
)
def test_burst_send_refuses_a_burst_that_is_not_draft_or_scheduled_and_changes_nothing(engine, status):
    members = MemberFactory.create_bulk(2, prefix="m")
    burst = DraftBurstFactory(recipients=members)
    EmailBurst.objects.filter(pk=burst.pk).update(status=status)
    before = burst_row(burst)

    with pytest.raises(IllegalState):
        services.burst_send(burst_id=burst.pk)

    assert burst_row(burst) == before
    assert not Delivery.objects.filter(burst=burst).exists()
    assert engine.message_count == 0
    assert engine.connection_count == 0


@pytest.mark.parametrize(
    ("field", "source"),
    [
        ("subject", "Hello {% if %}"),
        ("body", "Hello {{ member.first_name|no_such_filter }}"),
        ("body", "{% for x in %}{% endfor %}"),
        ("html_body", "<p>{% endif %}</p>"),
        ("body", "{% load static %}hi"),
        # compiles, but does not render for a member whose optional fields are empty
        ("body", "{{ member.first_name|divisibleby:2 }}"),
    ],
)
def test_burst_send_refuses_a_broken_template_before_any_message_leaves(engine, field, source):
    members = MemberFactory.create_bulk(3, prefix="m")
    burst = DraftBurstFactory(recipients=members, html_body="<p>Hi</p>")
    # The services refuse such a template when it is saved; it can still reach the
    # row another way (an older version, a data migration, the shell).
    EmailBurst.objects.filter(pk=burst.pk).update(**{field: source})

    with pytest.raises(InvalidInput) as caught:
        services.burst_send(burst_id=burst.pk)

    assert caught.value.field == field
    burst.refresh_from_db()
    assert burst.status == BurstStatus.DRAFT
    assert burst.started_at is None
    assert not Delivery.objects.filter(burst=burst).exists()
    assert engine.message_count == 0
    assert engine.connection_count == 0


def test_burst_send_refuses_a_burst_without_recipients(engine):
    burst = DraftBurstFactory()
    with pytest.raises(InvalidInput) as caught:
        services.burst_send(burst_id=burst.pk)
    assert caught.value.field == "recipients"
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.DRAFT


def test_it_creates_one_delivery_per_recipient_and_mails_each_once(engine):
    members = MemberFactory.create_bulk(7, prefix="m")
    burst = DraftBurstFactory(recipients=members)

    returned = services.burst_send(burst_id=burst.pk)

    assert returned.status == BurstStatus.SENDING  # what the caller saw
    deliveries = Delivery.objects.filter(burst=burst)
    assert deliveries.count() == 7
    assert sorted(deliveries.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
    assert {d.email for d in deliveries} == {m.email for m in members}
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert engine.received_count_by_address() == {m.email: 1 for m in members}
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert burst.deliveries_ready
    assert burst.started_at is not None and burst.finished_at is not None
    # creating the deliveries again adds nothing
    assert services.burst_create_deliveries(burst_id=burst.pk) == 0
    assert Delivery.objects.filter(burst=burst).count() == 7


def test_a_large_burst_gets_its_deliveries_from_a_task_and_is_finished_only_after(engine, monkeypatch):
    monkeypatch.setattr(services, "INLINE_DELIVERY_LIMIT", 2)
    monkeypatch.setattr(services, "CREATE_BATCH", 2)
    members = MemberFactory.create_bulk(5, prefix="m")
    burst = DraftBurstFactory(recipients=members)

    services.burst_send(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert Delivery.objects.filter(burst=burst).count() == 5
    assert engine.received_count_by_address() == {m.email: 1 for m in members}


def test_it_keeps_the_address_used_at_send_time_on_the_delivery(engine):
    ada = MemberFactory(email="ada@example.test")
    burst = DraftBurstFactory(recipients=[ada])
    services.burst_send(burst_id=burst.pk)
    Member.objects.filter(pk=ada.pk).update(email="ada.new@example.test")

    assert Delivery.objects.get(burst=burst).email == "ada@example.test"
