"""The progress JSON of the burst page: the rate counts sending time only, the ETA and
the status line say how many deliveries wait for a retry, until when and why."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db


def progress(client, burst) -> dict:
    response = client.get(reverse("admin:campaigns_emailburst_progress", args=[burst.pk]))
    assert response.status_code == 200
    return response.json()


def sending_burst(n: int, *, done: int, sending_seconds: float, started_ago: float = 600) -> EmailBurst:
    """A burst sending to `n` members, the first `done` of them sent."""
    members = MemberFactory.create_bulk(n)
    burst = BurstFactory(
        status=BurstStatus.SENDING,
        recipients=members,
        started_at=timezone.now() - timedelta(seconds=started_ago),
        sending_seconds=sending_seconds,
    )
    DeliveryFactory.create_for(
        burst, members, status=lambda i: DeliveryStatus.SENT if i < done else DeliveryStatus.PENDING
    )
    return burst


def wait_for_retry(burst: EmailBurst, count: int, *, at, reply: str = "452 4.2.2 Mailbox full") -> None:
    ids = Delivery.objects.filter(burst=burst, status=DeliveryStatus.PENDING).order_by("id")
    chosen = list(ids.values_list("id", flat=True)[:count])
    Delivery.objects.filter(id__in=chosen).update(next_attempt_at=at, error_message=reply, attempts=1)


def test_the_rate_is_messages_per_second_of_sending_not_of_wall_clock(root_client):
    # Started 10 minutes ago (a wait for retries in between), but sent for 4 s.
    burst = sending_burst(1000, done=400, sending_seconds=4.0, started_ago=600)

    body = progress(root_client, burst)

    assert body["rate"] == 100.0
    assert body["rate_display"] == "100 msgs/s"
    assert body["sending_display"] == "4 s"
    assert body["elapsed_display"].startswith("10 min")  # wall clock, shown apart
    assert body["eta_seconds"] == 6  # 600 left at 100 a second
    assert body["eta_display"] == "about 6 s"


def test_no_rate_is_shown_for_a_handful_of_messages_sent_in_a_blink(root_client):
    # The user's report: "Rate: 2.2 msg/s" for 39 messages sent in 0.044 s.
    burst = sending_burst(40, done=39, sending_seconds=0.044)

    body = progress(root_client, burst)

    assert body["rate"] is None and body["rate_display"] == "—"
    assert body["eta_seconds"] is None and body["eta_display"] == "estimating…"


def test_a_hundred_messages_give_a_rate_even_within_a_second(root_client):
    burst = sending_burst(150, done=100, sending_seconds=0.05)

    body = progress(root_client, burst)

    assert body["rate_display"] == "2,000 msgs/s"
    assert body["eta_display"] == "less than a second"


def test_it_says_how_many_wait_for_a_retry_until_when_and_why(root_client):
    burst = sending_burst(4, done=2, sending_seconds=2.0)
    retry_at = timezone.now() + timedelta(minutes=2)
    wait_for_retry(burst, 2, at=retry_at)

    body = progress(root_client, burst)

    clock = f"{timezone.localtime(retry_at):%H:%M:%S}"
    assert body["pending"] == 2 and body["retrying_count"] == 2
    assert body["next_retry_at"] == retry_at.isoformat()
    assert body["eta_display"] == f"2 deliveries wait for a retry until {clock}"
    assert body["status_line"] == (
        f"Sending: 2 of 4 done. 2 deliveries wait for a retry until {clock} (452 4.2.2 Mailbox full)."
    )


def test_the_eta_counts_only_those_that_may_go_now_then_names_the_retries(root_client):
    burst = sending_burst(30, done=10, sending_seconds=10.0)  # 1 a second
    retry_at = timezone.now() + timedelta(minutes=5)
    wait_for_retry(burst, 1, at=retry_at)

    body = progress(root_client, burst)

    # 19 may go now at 1 a second; the one waiting is not in the estimate.
    assert body["eta_seconds"] == 19
    assert body["eta_display"] == (
        f"about 19 s, then 1 delivery waits for a retry until {timezone.localtime(retry_at):%H:%M:%S}"
    )


def test_a_retry_whose_time_has_come_is_due_now(root_client):
    burst = sending_burst(3, done=2, sending_seconds=1.0)
    wait_for_retry(burst, 1, at=timezone.now() - timedelta(seconds=5), reply="451 4.7.1 Greylisted")

    body = progress(root_client, burst)

    assert (
        body["status_line"]
        == "Sending: 2 of 3 done. 1 delivery is due for a retry now (451 4.7.1 Greylisted)."
    )


def test_a_paused_burst_still_says_who_waits_for_a_retry(root_client):
    burst = sending_burst(5, done=1, sending_seconds=1.0)
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.PAUSED, pause_reason="Paused by staff")
    retry_at = timezone.now() + timedelta(hours=1)
    wait_for_retry(burst, 2, at=retry_at)

    body = progress(root_client, burst)

    assert body["status"] == "paused" and body["live"] is True
    assert body["status_line"].startswith(
        "Paused: no new message leaves until it is resumed (4 deliveries left)."
    )
    assert "2 deliveries wait for a retry until" in body["status_line"]
    assert body["eta_display"] == "—"


def test_a_sent_burst_is_done_and_no_longer_live(root_client):
    burst = sending_burst(3, done=3, sending_seconds=1.5)
    finished = timezone.now()
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENT, finished_at=finished)

    body = progress(root_client, burst)

    assert (body["live"], body["eta_display"], body["percent_display"]) == (False, "done", "100.0 %")
    assert body["status_line"] == f"Sent: finished {timezone.localtime(finished):%Y-%m-%d %H:%M}."
    assert body["success_rate_display"] == "100.0 %"
    assert body["retrying_count"] == 0 and body["next_retry_at"] is None
