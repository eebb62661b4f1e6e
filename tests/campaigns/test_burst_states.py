"""The burst state machine: every (status, action) pair, through the real services,
the admin and the API, answers as `campaigns.states.BURST_TRANSITIONS` says.

A legal pair moves the burst to the table's status; an illegal one is refused
(IllegalState from a staff action's service, 409 from the API, no button in the
admin) or, for the system's own actions (finish, hold), leaves the burst alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils import timezone

from campaigns import services
from campaigns.models import BurstStatus, DeliveryStatus, EmailBurst
from campaigns.states import (
    BURST_TRANSITIONS,
    STAFF_ACTIONS,
    BurstAction,
    burst_actions_available,
)
from common.errors import IllegalState
from tests.api.conftest import Api, access_token
from tests.factories import DeliveryFactory, DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db

STARTED = (BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED)
PAIRS = [(status, action) for status in BurstStatus for action in BurstAction]


def burst_in(status: str, *, can_start: bool = True) -> EmailBurst:
    """A burst in `status` for which every legal action can go through: two
    recipients; once started, one delivery sent and one failed (something to retry,
    nothing pending: done). `can_start=False`: no recipients, and its schedule is due."""
    members = MemberFactory.create_bulk(2)
    burst = DraftBurstFactory(subject="News", body="Hello", recipients=members)
    now = timezone.now()
    fields = {"status": status}
    if status == BurstStatus.SCHEDULED:
        fields["scheduled_at"] = now + timedelta(days=1)
    if status in STARTED:
        fields["started_at"] = now - timedelta(minutes=5)
        outcomes = (DeliveryStatus.SENT, DeliveryStatus.FAILED)
        DeliveryFactory.create_for(burst, members, status=lambda i: outcomes[i])
    if not can_start:
        burst.recipients.clear()
        fields["scheduled_at"] = now - timedelta(minutes=1)
    EmailBurst.objects.filter(pk=burst.pk).update(**fields)
    burst.refresh_from_db()
    return burst


# The real service behind each action.
SERVICES: dict[BurstAction, Callable[[int], object]] = {
    BurstAction.SEND: lambda pk: services.burst_send(burst_id=pk),
    BurstAction.SCHEDULE: lambda pk: services.burst_schedule(
        burst_id=pk, send_at=timezone.now() + timedelta(days=2)
    ),
    BurstAction.PAUSE: lambda pk: services.burst_pause(burst_id=pk),
    BurstAction.RESUME: lambda pk: services.burst_resume(burst_id=pk),
    BurstAction.CANCEL: lambda pk: services.burst_cancel(burst_id=pk),
    BurstAction.RETRY: lambda pk: services.burst_retry(burst_id=pk),
    BurstAction.FINISH: lambda pk: services.burst_finish_if_done(burst_id=pk),
    BurstAction.HOLD: lambda pk: services.burst_send_if_due(burst_id=pk),
}


def status_of(burst: EmailBurst) -> str:
    return EmailBurst.objects.values_list("status", flat=True).get(pk=burst.pk)


def test_every_action_has_a_service():
    assert set(SERVICES) == set(BurstAction)


@pytest.mark.parametrize("status, action", PAIRS)
def test_the_service_of_each_action_answers_as_the_table_says(status, action):
    burst = burst_in(status, can_start=action != BurstAction.HOLD)
    target = BURST_TRANSITIONS.get((status, action))
    run = SERVICES[action]

    if target is not None:
        run(burst.pk)
        assert status_of(burst) == target
    elif action in STAFF_ACTIONS:
        with pytest.raises(IllegalState) as refused:
            run(burst.pk)
        assert f"this one is {status}" in refused.value.message
        assert status_of(burst) == status
    else:  # the system's own actions leave a burst they do not apply to alone
        assert run(burst.pk) is False
        assert status_of(burst) == status


# --- what the admin offers ----------------------------------------------------------------------------------


@pytest.fixture
def root_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.mark.parametrize("status", list(BurstStatus))
def test_the_burst_page_offers_exactly_the_legal_actions(root_client, status):
    burst = burst_in(status)
    html = root_client.get(f"/admin/campaigns/emailburst/{burst.pk}/change/").content.decode()

    shown = {action for action in STAFF_ACTIONS if f"/{burst.pk}/{action}/" in html}
    assert shown == burst_actions_available(status)
    # Pre-flight shows what a send would do: offered where sending is.
    assert (f"/{burst.pk}/preflight/" in html) == (BurstAction.SEND in burst_actions_available(status))


@pytest.mark.parametrize("status", list(BurstStatus))
@pytest.mark.parametrize(
    "bulk, action", [("send_now", BurstAction.SEND), ("cancel_selected", BurstAction.CANCEL)]
)
def test_a_bulk_action_acts_exactly_where_it_is_legal(root_client, status, bulk, action):
    burst = burst_in(status)
    root_client.post(
        "/admin/campaigns/emailburst/", {"action": bulk, ACTION_CHECKBOX_NAME: [burst.pk]}, follow=True
    )
    assert status_of(burst) == BURST_TRANSITIONS.get((status, action), status)


# --- what the API allows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(BurstStatus))
@pytest.mark.parametrize("action", STAFF_ACTIONS)
def test_the_api_allows_exactly_the_legal_actions(superuser, status, action):
    burst = burst_in(status)
    api = Api(access_token(superuser))
    body = (
        {"send_at": (timezone.now() + timedelta(days=2)).isoformat()}
        if action == BurstAction.SCHEDULE
        else None
    )

    response = api.post(f"/api/email-burst/{burst.pk}/{action}/", body)

    legal = (status, action) in BURST_TRANSITIONS
    assert response.status_code == (202 if legal else 409), response.content
    assert status_of(burst) == BURST_TRANSITIONS.get((status, action), status)
