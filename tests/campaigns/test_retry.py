"""`services.burst_retry`: only the chosen statuses that can be retried are sent again.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import BurstStatus, DeliveryStatus, EmailBurst
from common.errors import IllegalState, InvalidInput
from tests.campaigns.bursts import burst_row, statuses
from tests.factories import DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished_with_failures(engine, settings):
    """A sent burst with one delivery in each final status."""
    settings.EMAIL_MAX_ATTEMPTS = 1
    plan = {
        "ok@example.test": (),
        "policy@example.test": ("554 5.7.1 Blocked for now",),
        "unknown@example.test": ("550 5.1.1 User unknown",),
        "flaky@example.test": ("rcpt:drop",),
    }
    members = [MemberFactory(email=address) for address in plan]
    for address, script in plan.items():
        if script:
            engine.script(address, *script)
    accented = MemberFactory(email="jos\u00e9@example.test", username="jose")
    burst = DraftBurstFactory(recipients=[*members, accented])
    services.burst_send(burst_id=burst.pk)
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert statuses(burst) == {
        "ok@example.test": DeliveryStatus.SENT,
        "policy@example.test": DeliveryStatus.FAILED,
        "unknown@example.test": DeliveryStatus.NOT_FOUND,
        "flaky@example.test": DeliveryStatus.CONNECTION_ERROR,
        "jos\u00e9@example.test": DeliveryStatus.OTHER_ERROR,
    }
    return burst


def test_burst_retry_requeues_only_the_chosen_statuses(finished_with_failures, engine):
    burst = finished_with_failures

    count = services.burst_retry(burst_id=burst.pk, statuses=[DeliveryStatus.FAILED])

    assert count == 1
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert statuses(burst) == {
        "ok@example.test": DeliveryStatus.SENT,
        "policy@example.test": DeliveryStatus.SENT,
        "unknown@example.test": DeliveryStatus.NOT_FOUND,
        "flaky@example.test": DeliveryStatus.CONNECTION_ERROR,
        "jos\u00e9@example.test": DeliveryStatus.OTHER_ERROR,
    }
    assert engine.received_count_by_address() == {"ok@example.test": 1, "policy@example.test": 1}
    assert engine.rcpt_attempts("flaky@example.test") == 1
    assert engine.rcpt_attempts("unknown@example.test") == 1


def test_burst_retry_of_connection_errors_sends_them(finished_with_failures, engine):
    burst = finished_with_failures

    assert services.burst_retry(burst_id=burst.pk, statuses=[DeliveryStatus.CONNECTION_ERROR]) == 1

    assert statuses(burst)["flaky@example.test"] == DeliveryStatus.SENT
    assert statuses(burst)["policy@example.test"] == DeliveryStatus.FAILED
    assert engine.received_count("flaky@example.test") == 1
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT


@pytest.mark.parametrize(
    "chosen",
    [[DeliveryStatus.NOT_FOUND], [DeliveryStatus.FAILED, DeliveryStatus.NOT_FOUND], [DeliveryStatus.SENT],
     [DeliveryStatus.SKIPPED], [DeliveryStatus.PENDING], ["bogus"]],
)  # fmt: skip
def test_burst_retry_refuses_not_found_and_statuses_that_cannot_be_retried(finished_with_failures, chosen):
    burst = finished_with_failures
    before = statuses(burst)
    row = burst_row(burst)

    with pytest.raises(InvalidInput) as caught:
        services.burst_retry(burst_id=burst.pk, statuses=chosen)

    assert caught.value.field == "statuses"
    assert statuses(burst) == before
    assert burst_row(burst) == row


def test_burst_retry_refuses_a_draft_burst(engine):
    burst = DraftBurstFactory(recipients=[MemberFactory()])
    with pytest.raises(IllegalState):
        services.burst_retry(burst_id=burst.pk, statuses=[DeliveryStatus.FAILED])
