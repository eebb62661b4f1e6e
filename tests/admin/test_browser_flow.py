"""The whole staff workflow in a real browser, against a live server, a real
`run_huey` consumer subprocess and an aiosmtpd sink (issue 5 item 9).

log in → import 50 members (3 bad rows shown in the preview) → confirm: 47 members →
create a burst for all members → pre-flight → "Send now" bulk action → the progress
bar reaches 100 % → the report and chart show the right counts → retry the failed
deliveries → they are sent.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from members.models import Member
from tests.admin.browser import login, screenshot
from tests.workers import huey_queue, start_consumer, wait_for  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Rows (1-based, header excluded) that are bad, and why.
BAD_ROWS = {
    10: ("not-an-email", "", "email"),
    25: ("member25@example.test", "2000-31-31", "birth_date"),
    40: ("member40@example.test", "", "is_verified"),
}
REJECTED_ONCE = ("member07@example.test", "member08@example.test")
UNKNOWN = "unknown.zed@example.test"


def members_csv() -> str:
    lines = ["Email,First name,Last name,birth_date,is_verified"]
    for n in range(1, 51):
        email, birth, verified = f"member{n:02d}@example.test", "1990-05-17", "yes" if n % 2 else "no"
        if n == 3:
            email = UNKNOWN
        if n in BAD_ROWS:
            email, birth, field = BAD_ROWS[n]
            if field == "is_verified":
                verified = "maybe"
        lines.append(f"{email},Name{n:02d},Family{n:02d},{birth},{verified}")
    return "\n".join(lines) + "\n"


def report_figure(page, key: str) -> int:
    return int(page.locator(f'[data-figure="{key}"]').inner_text().replace(",", "").strip())


def test_import_send_watch_and_retry(
    page,
    live_server,
    superuser,
    smtp_server,
    start_consumer,  # noqa: F811
    tmp_path,
):
    # The consumer takes a moment to start: start it first.
    consumer = start_consumer(sink=smtp_server, workers=2)
    for address in REJECTED_ONCE:
        smtp_server.script(address, "rcpt:554 5.7.1 Message rejected as spam")

    # --- log in, import --------------------------------------------------------------------
    login(page, "root", "root-pass-1234")
    csv_path = tmp_path / "members.csv"
    csv_path.write_text(members_csv())
    page.goto("/admin/members/member/import/")
    page.set_input_files("input[name=import_file]", str(csv_path))
    with page.expect_navigation():
        page.click("form[enctype='multipart/form-data'] button[type=submit]")

    invalid = page.locator("#import-invalid-rows tr.invalid-row")
    invalid.first.wait_for()
    assert invalid.count() == 3
    # Rows are named by their line in the file (the header is line 1).
    assert [int(invalid.nth(i).get_attribute("data-row")) for i in range(3)] == [
        n + 1 for n in sorted(BAD_ROWS)
    ]
    reasons = page.locator("#import-invalid-rows").inner_text()
    assert "is not a valid email address" in reasons
    assert "birth_date" in reasons
    assert "is_verified" in reasons and "maybe" in reasons
    assert page.locator('[data-count="new"]').inner_text() == "47"
    assert page.locator('[data-count="invalid"]').inner_text() == "3"
    screenshot(page, "flow-01-import-preview")
    with page.expect_navigation():
        page.click("#confirm-import-form button[type=submit]")
    assert "47 new" in page.locator("body").inner_text()
    assert Member.objects.exclude(pk=superuser.pk).count() == 47
    screenshot(page, "flow-02-members-imported", full_page=False)

    # --- compose a burst for all members, pre-flight ------------------------------------------
    page.goto("/admin/campaigns/emailburst/add/")
    page.fill("input[name=subject]", "Autumn news for {{ member.first_name }}")
    page.fill("textarea[name=body]", "Dear {{ member.first_name }},\n\nOur autumn programme is out.\n")
    page.click("[data-editor-mode=raw]")  # the HTML body as raw HTML, not in the rich-text editor
    page.fill(
        "textarea[name=html_body]", "<p>Dear {{ member.first_name }},</p><p>Our <b>autumn</b> programme.</p>"
    )
    page.check("input[name=all_members]")
    page.click("button[name=_continue]")
    page.locator("#burst-ready").wait_for()
    burst = EmailBurst.objects.get()
    assert burst.created_by == superuser and burst.all_members
    page.click("#burst-ready >> text=Pre-flight")
    page.locator("#preflight-figures").wait_for()
    assert page.locator('[data-preflight="to_send"]').inner_text() == "48"  # 47 + root
    assert page.locator('[data-preflight="render_failures"]').inner_text() == "0"
    screenshot(page, "flow-03-preflight")

    # --- "Send now" from the list -----------------------------------------------------------------
    page.goto("/admin/campaigns/emailburst/")
    page.check(f"input.action-select[value='{burst.pk}']")
    page.select_option("select[name=action]", "send_now")
    with page.expect_navigation():
        page.click("button[name=index]")
    assert "1 started" in page.locator("body").inner_text()

    # --- watch the progress bar reach 100 % ------------------------------------------------------
    page.goto(f"/admin/campaigns/emailburst/{burst.pk}/change/")
    page.locator("#progress-bar").wait_for()
    screenshot(page, "flow-04-burst-sending", full_page=False)
    # The page polls the progress view and updates itself in place until the burst is done.
    page.wait_for_selector("#delivery-report[data-status=sent]", timeout=60_000)
    assert page.locator("#progress-percent").get_attribute("data-percent") == "100.0"
    assert report_figure(page, "total") == 48
    assert report_figure(page, "sent") == 45
    assert report_figure(page, "failed") == 3
    assert report_figure(page, "pending") == 0
    chart = page.evaluate(
        "() => { const c = Chart.getChart(document.getElementById('status-chart'));"
        " return {labels: c.data.labels, data: c.data.datasets[0].data}; }"
    )
    assert dict(zip(chart["labels"], chart["data"], strict=True)) == {
        "Sent": 45,
        "Not found": 1,
        "Rejected": 2,
    }
    failed_rows = page.locator("#deliveries-table tr.delivery-row[data-status=failed]")
    page.click("[data-status-tab=failed]")
    page.wait_for_url(re.compile(r".*dstatus=failed.*"))
    assert failed_rows.count() == 2
    assert "554 5.7.1" in page.locator("#deliveries-table").inner_text()
    screenshot(page, "flow-05-burst-sent")

    # --- retry the failed ones ------------------------------------------------------------------------
    page.click("text=Retry failed deliveries")
    page.locator("#retry-form").wait_for()
    assert page.locator("input[name=statuses][value=failed]").is_checked()
    assert page.locator("input[name=statuses][value=connection_error]").is_checked()
    assert page.locator("input[name=statuses][value=not_found]").count() == 0
    page.click("#retry-form button[type=submit]")
    page.wait_for_selector("#delivery-report[data-status=sent]", timeout=60_000)
    assert report_figure(page, "sent") == 47
    assert report_figure(page, "failed") == 1
    screenshot(page, "flow-06-after-retry")

    statuses = dict(Delivery.objects.filter(burst=burst).values_list("email", "status"))
    assert statuses[UNKNOWN] == DeliveryStatus.NOT_FOUND
    assert all(statuses[a] == DeliveryStatus.SENT for a in REJECTED_ONCE)
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert smtp_server.received_count(REJECTED_ONCE[0]) == 1
    assert page.js_errors == []
    assert consumer.proc.poll() is None, consumer.log()
    assert settings.SECRET_KEY  # the consumer ran with the test process's key
