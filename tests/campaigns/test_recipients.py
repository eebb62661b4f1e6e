"""Who a burst mails: unsubscribed and inactive members are skipped with a reason, an
address last found not to exist is suppressed until it changes, and "all members"
is resolved at send time.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits).
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Delivery, DeliveryStatus
from members.models import Member
from tests.campaigns.bursts import statuses
from tests.factories import DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_skips_unsubscribed_and_inactive_members_with_a_reason(engine):
    ok = MemberFactory(email="ok@example.test")
    gone = MemberFactory(email="gone@example.test", unsubscribed_at=timezone.now())
    inactive = MemberFactory(email="inactive@example.test", is_active=False)
    burst = DraftBurstFactory(recipients=[ok, gone, inactive])

    services.burst_send(burst_id=burst.pk)

    assert statuses(burst) == {
        "ok@example.test": DeliveryStatus.SENT,
        "gone@example.test": DeliveryStatus.SKIPPED,
        "inactive@example.test": DeliveryStatus.SKIPPED,
    }
    assert "unsubscribed" in Delivery.objects.get(burst=burst, member=gone).error_message
    assert "inactive" in Delivery.objects.get(burst=burst, member=inactive).error_message
    skipped = Delivery.objects.filter(burst=burst, status=DeliveryStatus.SKIPPED)
    assert set(skipped.values_list("attempts", flat=True)) == {0}
    assert engine.received_count_by_address() == {"ok@example.test": 1}


def test_a_member_whose_last_delivery_was_not_found_is_suppressed_until_the_address_changes(engine):
    bob = MemberFactory(email="bob@example.test")
    ada = MemberFactory(email="ada@example.test")
    engine.script("bob@example.test", "550 5.1.1 User unknown")

    first = DraftBurstFactory(recipients=[bob, ada])
    services.burst_send(burst_id=first.pk)
    assert statuses(first)["bob@example.test"] == DeliveryStatus.NOT_FOUND

    second = DraftBurstFactory(recipients=[bob, ada])
    services.burst_send(burst_id=second.pk)
    skipped = Delivery.objects.get(burst=second, member=bob)
    assert skipped.status == DeliveryStatus.SKIPPED
    assert "suppressed" in skipped.error_message

    # a skipped delivery does not lift the suppression
    third = DraftBurstFactory(recipients=[bob, ada])
    services.burst_send(burst_id=third.pk)
    assert statuses(third)["bob@example.test"] == DeliveryStatus.SKIPPED
    assert engine.rcpt_attempts("bob@example.test") == 1

    # a new address is mailed again
    Member.objects.filter(pk=bob.pk).update(email="robert@example.test")
    fourth = DraftBurstFactory(recipients=[bob, ada])
    services.burst_send(burst_id=fourth.pk)
    assert statuses(fourth) == {
        "robert@example.test": DeliveryStatus.SENT,
        "ada@example.test": DeliveryStatus.SENT,
    }
    assert engine.received_count("robert@example.test") == 1


def test_suppression_compares_addresses_case_insensitively(engine):
    bob = MemberFactory(email="Bob@Example.test")
    engine.script("bob@example.test", "550 5.1.1 User unknown")
    first = DraftBurstFactory(recipients=[bob])
    services.burst_send(burst_id=first.pk)
    Member.objects.filter(pk=bob.pk).update(email="bob@example.test")

    second = DraftBurstFactory(recipients=[bob])
    services.burst_send(burst_id=second.pk)

    assert Delivery.objects.get(burst=second).status == DeliveryStatus.SKIPPED


def test_a_failed_delivery_does_not_suppress_the_member(engine):
    bob = MemberFactory(email="bob@example.test")
    engine.script("bob@example.test", "554 5.7.1 Spam")
    services.burst_send(burst_id=DraftBurstFactory(recipients=[bob]).pk)

    second = DraftBurstFactory(recipients=[bob])
    services.burst_send(burst_id=second.pk)

    assert Delivery.objects.get(burst=second).status == DeliveryStatus.SENT


def test_all_members_includes_staff_and_ignores_verification(engine, staff_user, superuser):
    verified = MemberFactory(email="verified@example.test", is_verified=True)
    unverified = MemberFactory(email="unverified@example.test", is_verified=False)
    MemberFactory(email="inactive@example.test", is_active=False)
    MemberFactory(email="gone@example.test", unsubscribed_at=timezone.now())
    burst = DraftBurstFactory(all_members=True)

    services.burst_send(burst_id=burst.pk)

    expected = {staff_user.email, superuser.email, verified.email, unverified.email}
    assert statuses(burst) == {email: DeliveryStatus.SENT for email in expected}
    assert set(engine.received_count_by_address()) == expected


def test_all_members_is_resolved_at_send_time(engine):
    early = MemberFactory(email="early@example.test")
    burst = DraftBurstFactory(all_members=True)
    late = MemberFactory(email="late@example.test")
    Member.objects.filter(pk=early.pk).update(unsubscribed_at=timezone.now())

    services.burst_send(burst_id=burst.pk)

    assert statuses(burst) == {late.email: DeliveryStatus.SENT}
