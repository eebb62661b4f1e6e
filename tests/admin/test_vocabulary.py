"""One set of words and one number format on every page: a success rate is written the
same way on the burst list, the report, the dashboard and the progress JSON; "Failed"
always means `failed_count`, and the delivery status `failed` is called "Rejected"."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.models import BurstStatus, DeliveryStatus, EmailBurst
from campaigns.vocabulary import (
    DELIVERY_STATUS_LABELS,
    format_clock,
    format_count,
    format_duration,
    format_percent,
    format_speed,
)
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

# 37 sent of the 39 there was something to send to (one skipped): 94.87 %.
PLAN = (
    [DeliveryStatus.SENT] * 37 + [DeliveryStatus.FAILED, DeliveryStatus.NOT_FOUND] + [DeliveryStatus.SKIPPED]
)


@pytest.fixture
def autumn() -> EmailBurst:
    members = MemberFactory.create_bulk(len(PLAN), prefix="au")
    burst = BurstFactory(
        name="Autumn news", status=BurstStatus.SENT, recipients=members, finished_at=timezone.now()
    )
    DeliveryFactory.create_for(burst, members, status=lambda i: PLAN[i])
    return burst


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# --- the formats ----------------------------------------------------------------------------------------


def test_numbers_are_written_one_way():
    assert (format_count(1234567), format_count(0), format_count(None)) == ("1,234,567", "0", "—")
    assert (format_percent(94.87), format_percent(70), format_percent(100), format_percent(None)) == (
        "94.9 %",
        "70.0 %",
        "100.0 %",
        "—",
    )
    assert (format_speed(1234.4), format_speed(2.25), format_speed(None)) == (
        "1,234 msgs/s",
        "2.2 msgs/s",
        "—",
    )
    assert (format_duration(42), format_duration(185), format_duration(7500)) == (
        "42 s",
        "3 min 05 s",
        "2 h 05 min",
    )
    assert (format_duration(0.044), format_duration(0), format_duration(None)) == (
        "less than 1 s",
        "0 s",
        "—",
    )


def test_a_time_today_is_a_clock_and_another_day_has_its_date(settings):
    settings.TIME_ZONE = "UTC"
    now = timezone.now()
    assert format_clock(now) == f"{now:%H:%M:%S}"
    other = datetime(2030, 5, 1, 14, 5, tzinfo=timezone.get_current_timezone())
    assert format_clock(other) == "2030-05-01 14:05"


def test_the_delivery_status_failed_is_called_rejected():
    assert DELIVERY_STATUS_LABELS[DeliveryStatus.FAILED] == "Rejected"
    assert "Failed" not in DELIVERY_STATUS_LABELS.values()
    assert set(DELIVERY_STATUS_LABELS) == set(DeliveryStatus.values)


# --- the same success rate everywhere -----------------------------------------------------------------------


def test_a_success_rate_reads_the_same_on_every_page(root_client, autumn):
    report = root_client.get(f"/admin/campaigns/emailburst/{autumn.pk}/change/").content.decode()
    listing = root_client.get("/admin/campaigns/emailburst/").content.decode()
    dashboard = root_client.get("/admin/").content.decode()
    progress = root_client.get(f"/admin/campaigns/emailburst/{autumn.pk}/progress/").json()

    assert re.search(r'data-figure="success_rate">94\.9 %<', report)
    assert "94.9 %" in text_of(listing)
    recent = text_of(dashboard.split('id="recent-bursts"')[1])
    assert "Autumn news Sent 40 37 2 94.9 %" in recent
    assert progress["success_rate_display"] == "94.9 %"
    for html in (report, listing, dashboard):
        assert "94.87" not in html and "94.9%" not in html
    # The API keeps its number (two places), documented as such.
    assert progress["success_rate"] == 94.87


def test_with_nothing_to_send_the_success_rate_is_a_dash(root_client):
    members = MemberFactory.create_bulk(2, prefix="sk")
    burst = BurstFactory(status=BurstStatus.SENT, recipients=members, finished_at=timezone.now())
    DeliveryFactory.create_for(burst, members, status=DeliveryStatus.SKIPPED)

    report = root_client.get(f"/admin/campaigns/emailburst/{burst.pk}/change/").content.decode()

    assert re.search(r'data-figure="success_rate">—<', report)


# --- one meaning per word ---------------------------------------------------------------------------------------


def test_failed_means_the_failed_count_on_every_page(root_client, autumn):
    report = root_client.get(f"/admin/campaigns/emailburst/{autumn.pk}/change/").content.decode()
    dashboard = root_client.get("/admin/").content.decode()

    # The card and the breakdown's "Failed" row are the same number (not found + rejected).
    assert re.search(r'data-figure="failed">2<', report)
    breakdown = text_of(report.split('id="status-breakdown"')[1].split("</table>")[0])
    assert "Failed 2 Not found 1 Rejected 1 Connection error 0 Other error 0" in breakdown
    assert 'data-status-count="failed">1<' in report
    assert (
        "Failed"
        not in json.loads(re.search(r'data-value="([^"]+)"', report)[1].replace("&quot;", '"'))["labels"]
    )
    tabs = text_of(report.split('id="delivery-status-tabs"')[1].split("</nav>")[0])
    assert "Rejected 1" in tabs and "Failed" not in tabs
    assert "failed" in text_of(dashboard.split('data-total="sent_30d"')[1])
    assert 'data-total="failed_30d">2<' in dashboard


def test_a_deliveries_table_row_of_a_rejected_message_says_rejected(root_client, autumn):
    page = root_client.get(f"/admin/campaigns/emailburst/{autumn.pk}/change/", {"dstatus": "failed"})
    rows = page.content.decode().split('id="deliveries-table"')[1].split("</table>")[0]

    # The badge, then the attempts, then the server's own words.
    assert "Rejected 1 554 5.7.1 Rejected (at RCPT)" in text_of(rows)
    assert "Failed" not in text_of(rows)


def test_the_retry_wait_is_said_in_the_same_words_in_the_status_line_and_the_eta(root_client):
    members = MemberFactory.create_bulk(3, prefix="rt")
    burst = BurstFactory(status=BurstStatus.SENDING, recipients=members, started_at=timezone.now())
    DeliveryFactory.create_for(burst, members)
    at = timezone.now() + timedelta(minutes=4)
    burst.deliveries.update(next_attempt_at=at, error_message="451 4.7.1 Greylisted")

    body = root_client.get(f"/admin/campaigns/emailburst/{burst.pk}/progress/").json()

    words = f"3 deliveries wait for a retry until {format_clock(at)}"
    assert body["eta_display"] == words
    assert words + " (451 4.7.1 Greylisted)." in body["status_line"]
