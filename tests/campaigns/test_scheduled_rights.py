"""A scheduled burst is set to go, so changing or deleting it needs the send
permission; a draft does not.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import BurstStatus, EmailBurst
from common.errors import IllegalState
from members.models import Member
from tests.campaigns.bursts import burst_row
from tests.factories import DraftBurstFactory, EditorFactory, MemberFactory, StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_send(db) -> Member:
    """Staff with every campaigns permission but sending."""
    return EditorFactory(permissions__apps=["campaigns"])


@pytest.fixture
def sender(db) -> Member:
    return StaffFactory(permissions__apps=["campaigns"])


def scheduled_burst() -> EmailBurst:
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(days=1))
    return burst


def test_staff_without_the_send_permission_cannot_change_or_delete_a_scheduled_burst(engine, no_send):
    burst = scheduled_burst()
    before = burst_row(burst)
    with pytest.raises(services.Forbidden) as caught:
        services.burst_update(burst_id=burst.pk, actor=no_send, all_members=True)
    assert "campaigns.send_emailburst" in caught.value.message
    with pytest.raises(services.Forbidden):
        services.burst_delete(burst_id=burst.pk, actor=no_send)
    with pytest.raises(services.Forbidden):
        services.burst_change_check(burst_id=burst.pk, actor=no_send)
    assert burst_row(burst) == before


def test_the_send_permission_changes_and_deletes_a_scheduled_burst(engine, sender):
    burst = scheduled_burst()
    services.burst_change_check(burst_id=burst.pk, actor=sender)
    services.burst_update(burst_id=burst.pk, actor=sender, subject="Changed")
    assert EmailBurst.objects.values_list("subject", "status").get(pk=burst.pk) == ("Changed", "scheduled")
    services.burst_delete(burst_id=burst.pk, actor=sender)
    assert not EmailBurst.objects.filter(pk=burst.pk).exists()


def test_a_draft_is_changed_and_deleted_without_the_send_permission(engine, no_send):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    services.burst_change_check(burst_id=burst.pk, actor=no_send)
    services.burst_update(burst_id=burst.pk, actor=no_send, subject="Changed")
    assert EmailBurst.objects.get(pk=burst.pk).subject == "Changed"
    services.burst_delete(burst_id=burst.pk, actor=no_send)
    assert not EmailBurst.objects.filter(pk=burst.pk).exists()


def test_a_started_burst_is_illegal_to_change_before_it_is_forbidden(engine, no_send):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENT)
    with pytest.raises(IllegalState):
        services.burst_update(burst_id=burst.pk, actor=no_send, subject="Changed")
