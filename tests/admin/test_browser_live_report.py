"""A real burst goes from scheduled to sent on one open page, in chromium, with a live
server, a real `run_huey` consumer and the aiosmtpd sink: the page is opened once and
never reloaded; its status, status line, figures, deliveries table and buttons follow
the burst, one greylisted recipient is said to wait for a retry, and the polling stops
once the burst is sent."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import BurstStatus, DeliveryStatus, EmailBurst
from tests.admin.browser import login, screenshot
from tests.factories import DraftBurstFactory, MemberFactory
from tests.workers import huey_queue, start_consumer  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECIPIENTS = 8
GREYLISTED = "live03@example.test"
# The greylisted recipient is tried again this many seconds later: long enough to
# be seen waiting, on a page polled every 2 s.
RETRY_DELAY = 6


def figure(page, key: str) -> str:
    return page.locator(f'[data-figure="{key}"]').inner_text().strip()


def header_buttons(page) -> str:
    return page.locator("#header-inner").inner_text()


def test_the_open_page_follows_a_burst_from_scheduled_to_sent(
    page,
    live_server,
    superuser,
    smtp_server,
    start_consumer,  # noqa: F811
):
    consumer = start_consumer(sink=smtp_server, workers=2, EMAIL_RETRY_DELAY=str(RETRY_DELAY))
    smtp_server.script(GREYLISTED, "rcpt:451 4.7.1 Greylisted, try again later")
    members = MemberFactory.create_bulk(RECIPIENTS, prefix="live")
    burst = DraftBurstFactory(subject="Live news for {{ member.first_name }}", recipients=members)
    login(page, "root", "root-pass-1234")
    # A few seconds ahead: time to open the page and see it scheduled.
    services.burst_schedule(burst_id=burst.pk, send_at=timezone.now() + timedelta(seconds=6))

    polls: list[float] = []
    progress_path = f"/admin/campaigns/emailburst/{burst.pk}/progress/"
    page.on("request", lambda request: progress_path in request.url and polls.append(time.monotonic()))
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: frame == page.main_frame and navigations.append(frame.url))

    page.goto(f"/admin/campaigns/emailburst/{burst.pk}/change/")
    live = page.locator("#burst-live")
    assert live.get_attribute("data-status") == "scheduled"
    assert live.get_attribute("data-live") == "1"
    assert "Scheduled for" in page.locator("#burst-ready").inner_text()
    assert "Schedule" in header_buttons(page) and "Pause" not in header_buttons(page)
    page.evaluate("() => { window.openedOnce = true; }")  # gone if the page reloads
    screenshot(page, "live-01-scheduled", full_page=False)

    # --- it starts: the report takes the card's place, on the same page -----------------------
    page.wait_for_selector("#delivery-report", timeout=30_000)
    assert page.locator("#burst-ready").count() == 0
    # The form under the report was opened editable: the page says it is out of date.
    page.locator("#report-notice").wait_for()
    assert "has started since this page was opened" in page.locator("#report-notice").inner_text()

    # --- sending: the greylisted recipient waits for its retry, and the page says so ---------
    page.wait_for_selector("#burst-live[data-status=sending]", timeout=30_000)
    page.wait_for_function(
        "() => document.getElementById('report-status-line').textContent.includes('wait')", timeout=30_000
    )
    status_line = page.locator("#report-status-line").inner_text()
    assert re.search(
        r"1 delivery waits for a retry until \d\d:\d\d:\d\d \(451 4\.7\.1 Greylisted", status_line
    )
    assert "for a retry until" in page.locator("#progress-eta").inner_text()
    assert figure(page, "sent") == str(RECIPIENTS - 1)
    assert figure(page, "pending") == "1"
    assert "1 waiting for a retry" in page.locator('[data-figure-note="pending"]').inner_text()
    rows = page.locator("#deliveries-table tr.delivery-row")
    assert rows.count() == RECIPIENTS
    row_statuses = [rows.nth(i).get_attribute("data-status") for i in range(RECIPIENTS)]
    assert sorted(row_statuses) == ["pending"] + ["sent"] * (RECIPIENTS - 1)
    assert "451 4.7.1" in page.locator("#deliveries-table tr.delivery-row[data-status=pending]").inner_text()
    assert "Pause" in header_buttons(page) and "Schedule" not in header_buttons(page)
    chart = page.evaluate(
        "() => { const c = Chart.getChart(document.getElementById('status-chart'));"
        " return c ? Object.fromEntries(c.data.labels.map((l, i) => [l, c.data.datasets[0].data[i]])) : null; }"
    )
    assert chart == {"Sent": RECIPIENTS - 1, "Pending": 1}
    screenshot(page, "live-02-waiting-for-a-retry", full_page=False)

    # --- sent: every region follows, then the polling stops -------------------------------------
    page.wait_for_selector("#delivery-report[data-status=sent]", timeout=60_000)
    assert page.locator("#burst-live").get_attribute("data-live") == "0"
    assert page.locator("#progress-percent").get_attribute("data-percent") == "100.0"
    assert figure(page, "sent") == str(RECIPIENTS) and figure(page, "pending") == "0"
    assert figure(page, "success_rate") == "100.0 %"
    assert page.locator("#report-status-line").inner_text().startswith("Sent: finished")
    assert page.locator("#deliveries-table tr.delivery-row[data-status=sent]").count() == RECIPIENTS
    assert "Pause" not in header_buttons(page) and "Cancel" not in header_buttons(page)
    assert page.locator("#progress-live").count() == 0
    polls_when_sent = len(polls)
    time.sleep(3 * 2.0 + 1)  # three poll intervals
    assert len(polls) == polls_when_sent
    screenshot(page, "live-03-sent", full_page=False)

    assert page.evaluate("() => window.openedOnce") is True
    assert len(navigations) == 1  # the one goto
    assert polls_when_sent >= 5  # it polled all along (every 2 s)
    stored = EmailBurst.objects.get(pk=burst.pk)
    assert stored.status == BurstStatus.SENT
    assert stored.deliveries.filter(status=DeliveryStatus.SENT).count() == RECIPIENTS
    assert smtp_server.rcpt_attempts(GREYLISTED) == 2
    assert page.js_errors == []
    assert consumer.proc.poll() is None, consumer.log()
