"""The burst page's live report: what one poll of the progress view answers (figures,
the page's regions rendered anew with the page's own filters, the header's buttons),
at a constant number of queries, and when the page polls at all."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.admin.report import page_parts
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

REGIONS = {"head", "figures", "breakdown", "actions", "tabs", "deliveries", "pagination"}


def poll_url(burst: EmailBurst) -> str:
    return reverse("admin:campaigns_emailburst_progress", args=[burst.pk])


def page_url(burst: EmailBurst) -> str:
    return reverse("admin:campaigns_emailburst_change", args=[burst.pk])


def poll(client, burst: EmailBurst, **query: str) -> dict:
    response = client.get(poll_url(burst), {"stage": "report", **query})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    return response.json()


def burst_sending(n: int, *, sent: int = 0, prefix: str = "live") -> EmailBurst:
    members = MemberFactory.create_bulk(n, prefix=prefix)
    burst = BurstFactory(
        subject="Going out", status=BurstStatus.SENDING, recipients=members, started_at=timezone.now()
    )
    DeliveryFactory.create_for(
        burst, members, status=lambda i: DeliveryStatus.SENT if i < sent else DeliveryStatus.PENDING
    )
    return burst


def mark(burst: EmailBurst, count: int, status: str, **fields) -> None:
    """The next `count` pending deliveries get `status`, as a worker would write it."""
    from tests.factories import counters_repair

    ids = list(
        Delivery.objects.filter(burst=burst, status=DeliveryStatus.PENDING)
        .order_by("id")
        .values_list("id", flat=True)[:count]
    )
    Delivery.objects.filter(id__in=ids).update(status=status, **fields)
    counters_repair()


def row_statuses(html: str) -> list[str]:
    return re.findall(r'class="delivery-row[^"]*"[^>]*data-status="([a-z_]+)"', html)


# --- what a poll answers ---------------------------------------------------------------------------------


def test_a_poll_answers_every_region_of_the_page_as_it_is_now(root_client):
    burst = burst_sending(6)
    first = poll(root_client, burst)
    assert set(first["parts"]) == REGIONS
    assert row_statuses(first["parts"]["deliveries"]) == ["pending"] * 6

    mark(burst, 4, DeliveryStatus.SENT, sent_at=timezone.now())
    mark(burst, 1, DeliveryStatus.NOT_FOUND, error_message="550 5.1.1 User unknown")
    body = poll(root_client, burst)

    # The header's figures and the table below say the same thing (the user's "6 sent of
    # 11" above a table of PENDING rows).
    assert (body["sent"], body["failed"], body["pending"], body["total"]) == (4, 1, 1, 6)
    assert row_statuses(body["parts"]["deliveries"]) == ["sent"] * 4 + ["not_found", "pending"]
    assert "550 5.1.1 User unknown" in body["parts"]["deliveries"]
    assert 'data-figure="sent">4<' in body["parts"]["figures"]
    assert 'data-figure="failed">1<' in body["parts"]["figures"]
    assert "Sending: 5 of 6 done." in body["parts"]["head"]
    assert 'data-status-tab="not_found"' in body["parts"]["tabs"]
    assert body["status_counts"]["sent"] == 4


def test_the_poll_keeps_the_pages_own_filters_and_page(root_client):
    burst = burst_sending(60, prefix="pg")
    mark(burst, 30, DeliveryStatus.SENT, sent_at=timezone.now())

    body = poll(root_client, burst, dstatus="sent", dpage="2")

    assert row_statuses(body["parts"]["deliveries"]) == ["sent"] * 5  # 26-30 of 30
    assert "26–30 of 30 deliveries" in body["parts"]["pagination"]
    active = re.search(r'data-status-tab="sent"[^>]*class="[^"]*bg-white', body["parts"]["tabs"])
    assert active, body["parts"]["tabs"]

    body = poll(root_client, burst, dq="pg07@")
    assert re.findall(r">(pg\d+@example\.test)<", body["parts"]["deliveries"]) == ["pg07@example.test"]


def test_a_poll_costs_the_same_queries_whatever_the_size_the_page_and_the_retries(root_client):
    small = burst_sending(3, prefix="sm")
    big = burst_sending(80, sent=20, prefix="bg")
    mark(big, 10, DeliveryStatus.FAILED, error_message="554 5.7.1 Spam")
    waiting = list(
        Delivery.objects.filter(burst=big, status=DeliveryStatus.PENDING).values_list("id", flat=True)[:7]
    )
    Delivery.objects.filter(id__in=waiting).update(
        next_attempt_at=timezone.now() + timedelta(minutes=3), error_message="452 4.2.2 Mailbox full"
    )
    poll(root_client, small)  # the session and the user are read once per request, as any poll

    counts = []
    for burst, query in ((small, {}), (big, {"dpage": "3"}), (big, {"dstatus": "failed"})):
        with CaptureQueriesContext(connection) as queries:
            body = poll(root_client, burst, **query)
        counts.append(len(queries))
    assert body["retrying_count"] == 7  # the big burst's, on its failed tab
    assert counts == [counts[0]] * 3
    # session, user, the burst, its figures (one query with the retries), one page of rows
    assert counts[0] == 5


def test_the_whole_report_comes_only_when_the_page_must_switch_to_it(root_client):
    burst = burst_sending(2)

    assert "report" not in poll(root_client, burst, stage="report")["parts"]
    switch = poll(root_client, burst, stage="ready")
    assert switch["stage"] == "report"
    report = switch["parts"]["report"]
    assert report.startswith('<div id="delivery-report"') and 'id="status-chart"' in report
    assert page_parts(report).keys() == REGIONS


def test_a_scheduled_burst_answers_its_status_line_until_it_starts(root_client):
    when = timezone.now() + timedelta(minutes=5)
    burst = BurstFactory(status=BurstStatus.SCHEDULED, scheduled_at=when)

    body = poll(root_client, burst, stage="ready")

    assert (body["stage"], body["live"], set(body["parts"])) == ("ready", True, {"ready_status"})
    assert f"Scheduled for {timezone.localtime(when):%Y-%m-%d %H:%M}" in body["parts"]["ready_status"]


def test_the_header_buttons_follow_the_burst_state(root_client):
    burst = burst_sending(2)
    base = page_url(burst).removesuffix("change/")

    sending = poll(root_client, burst)
    assert f"{base}pause/" in sending["buttons_key"].split()
    assert f'href="{base}pause/"' in sending["buttons_html"]
    assert f"{base}send/" not in sending["buttons_key"].split()

    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.PAUSED, pause_reason="Paused by staff")
    paused = poll(root_client, burst)
    assert f"{base}resume/" in paused["buttons_key"].split()
    assert f"{base}pause/" not in paused["buttons_key"].split()
    assert "Paused by staff" in paused["parts"]["head"]


def test_the_page_writes_the_same_buttons_key_as_the_poll(root_client):
    burst = burst_sending(2)
    html = root_client.get(page_url(burst)).content.decode()
    key = re.search(r'data-buttons-key="([^"]*)"', html)[1]
    assert " ".join(key.split()) == poll(root_client, burst)["buttons_key"]


def test_the_retry_button_of_the_report_appears_when_a_delivery_can_be_retried(root_client):
    burst = burst_sending(3)
    assert "Retry failed deliveries" not in poll(root_client, burst)["parts"]["actions"]

    mark(burst, 1, DeliveryStatus.CONNECTION_ERROR, error_message="Connection refused")

    assert "Retry failed deliveries (1)" in poll(root_client, burst)["parts"]["actions"]


def test_the_page_says_whether_its_form_could_be_saved_when_it_was_opened(root_client, editor_client):
    scheduled = BurstFactory(status=BurstStatus.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=1))
    sending = burst_sending(1)

    assert 'data-editable="1"' in root_client.get(page_url(scheduled)).content.decode()
    # Without the send permission a scheduled burst is read-only; a started one for anyone.
    assert 'data-editable="0"' in editor_client.get(page_url(scheduled)).content.decode()
    assert 'data-editable="0"' in root_client.get(page_url(sending)).content.decode()


def test_a_page_opened_while_scheduled_is_told_the_burst_started(root_client):
    burst = burst_sending(2)

    assert "notice" not in poll(root_client, burst, opened="sending")
    body = poll(root_client, burst, opened="scheduled")

    assert "has started since this page was opened" in body["notice"]


def test_member_data_cannot_forge_a_region_of_the_page(root_client):
    members = [
        MemberFactory(
            email="forger@example.test",
            first_name="<!--/part:deliveries--><!--part:actions--><b>x</b>",
            last_name="<script>alert(1)</script>",
        )
    ]
    burst = BurstFactory(status=BurstStatus.SENDING, recipients=members, started_at=timezone.now())
    DeliveryFactory.create_for(burst, members)

    body = poll(root_client, burst)

    assert set(body["parts"]) == REGIONS
    assert "&lt;!--/part:deliveries--&gt;" in body["parts"]["deliveries"]
    assert "<script>" not in body["parts"]["deliveries"] and "<b>x</b>" not in body["parts"]["actions"]


def test_only_staff_who_may_see_bursts_can_poll(client, member, root_client):
    burst = burst_sending(1)
    client.force_login(member)

    response = client.get(poll_url(burst))

    assert response.status_code == 302 and "/login/" in response["Location"]


# --- when the page polls -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "live"),
    [
        (BurstStatus.DRAFT, "0"),
        (BurstStatus.SCHEDULED, "1"),
        (BurstStatus.SENDING, "1"),
        (BurstStatus.PAUSED, "1"),
        (BurstStatus.SENT, "0"),
        (BurstStatus.CANCELLED, "0"),
    ],
)
def test_the_page_polls_while_the_burst_is_scheduled_sending_or_paused(root_client, status, live):
    burst = BurstFactory(status=status, scheduled_at=timezone.now() + timedelta(days=1))

    html = root_client.get(page_url(burst)).content.decode()

    assert f'data-live="{live}"' in html
    assert "campaigns/admin/burst_report.js" in html
    assert "<script>" not in html.split('id="burst-live"')[1].split("report-chart-statuses")[0]


def test_a_poll_of_a_finished_burst_says_it_is_no_longer_live(root_client):
    burst = burst_sending(2, sent=2)
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENT, finished_at=timezone.now())

    body = poll(root_client, burst)

    assert (body["status"], body["live"]) == ("sent", False)
    assert "updating live" not in body["parts"]["head"]
    assert 'id="progress-live"' in poll(root_client, burst_sending(1, prefix="other"))["parts"]["head"]
