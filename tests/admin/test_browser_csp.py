"""The admin works under its Content-Security-Policy, in chromium, with no violation
logged: unfold's Alpine (sidebar, dropdowns), its charts, the live progress of a
burst being sent, the import page, the preview and its sandboxed HTML frame,
/api/docs (Swagger UI) and the unsubscribe page."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from campaigns.engine.tokens import unsubscribe_url
from campaigns.models import BurstStatus, Delivery, DeliveryStatus
from tests.admin.browser import login
from tests.admin.csp_watch import csp_violations, settle, watch_csp
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory, counters_repair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OUTCOMES = [DeliveryStatus.SENT] * 6 + [
    DeliveryStatus.FAILED,
    DeliveryStatus.NOT_FOUND,
    DeliveryStatus.SKIPPED,
]


def open_page(page, url: str) -> None:
    response = page.goto(url)
    assert response.status == 200, (url, response.status)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"], url
    settle(page)


def has_chart(page, canvas_id: str) -> bool:
    return page.evaluate(
        "(id) => Boolean(window.Chart && window.Chart.getChart(document.getElementById(id)))", canvas_id
    )


def alpine_started(page) -> bool:
    # Alpine removes x-cloak from <html> once it has evaluated unfold's x-data.
    return page.evaluate("() => Boolean(window.Alpine) && !document.documentElement.hasAttribute('x-cloak')")


@pytest.fixture
def watched(page):
    return watch_csp(page)


def test_the_main_pages_work_without_a_violation(watched, superuser, live_server):
    page = watched
    members = MemberFactory.create_bulk(30, prefix="csp")
    draft = BurstFactory(
        subject="Spring news for {{ member.first_name }}",
        recipients=members[:10],
        html_body='<h1 id="greeting">Hello {{ member.first_name }}</h1><img src="https://example.test/logo.png" alt="">',
    )
    sent = BurstFactory(
        subject="Winter gala", status=BurstStatus.SENT, recipients=members, started_at=timezone.now()
    )
    DeliveryFactory.create_for(sent, members, status=lambda i: OUTCOMES[i % len(OUTCOMES)])
    login(page, "root", "root-pass-1234")

    open_page(page, "/admin/")
    assert alpine_started(page)
    assert has_chart(page, "outcomes-chart")

    # unfold's sidebar toggle and its dropdowns are Alpine.
    open_page(page, f"/admin/campaigns/emailburst/{draft.pk}/change/")
    page.locator("li", has=page.locator("a", has_text="Check")).locator("a").first.click()
    page.locator("nav a", has_text="Pre-flight").wait_for(state="visible")

    open_page(page, f"/admin/campaigns/emailburst/{sent.pk}/change/")
    assert has_chart(page, "status-chart")

    open_page(page, f"/admin/campaigns/emailburst/{draft.pk}/preview/?member={members[3].pk}")
    frame = page.frame_locator("#preview-html")
    assert frame.locator("#greeting").inner_text() == f"Hello {members[3].first_name}"
    # Choosing another member re-renders (preview.js, not an inline handler).
    with page.expect_navigation():
        page.select_option("select[name=member]", str(members[5].pk))
    assert frame.locator("#greeting").inner_text() == f"Hello {members[5].first_name}"

    for url in [
        "/admin/members/member/",
        f"/admin/members/member/{members[1].pk}/change/",
        "/admin/members/member/import/",
        "/admin/members/member/export/",
        "/admin/campaigns/emailburst/",
        "/admin/campaigns/emailburst/add/",
        f"/admin/campaigns/emailburst/{draft.pk}/preflight/",
        f"/admin/campaigns/emailburst/{draft.pk}/schedule/",
        f"/admin/campaigns/emailburst/{draft.pk}/send/",
        f"/admin/campaigns/emailburst/{sent.pk}/retry/",
        f"/admin/campaigns/emailburst/{draft.pk}/send-test/",
        f"/admin/campaigns/delivery/?burst__id__exact={sent.pk}",
        f"/admin/campaigns/delivery/{sent.deliveries.first().pk}/change/",
        f"/admin/campaigns/emailburst/{sent.pk}/history/",
        f"/admin/members/member/{members[1].pk}/password/",
        "/admin/password_change/",
        "/admin/auth/group/add/",
    ]:
        open_page(page, url)
        assert alpine_started(page), url
        assert csp_violations(page) == [], url

    assert csp_violations(page) == []
    assert page.js_errors == []


def test_the_live_progress_bar_updates_under_the_policy(watched, superuser, live_server):
    page = watched
    members = MemberFactory.create_bulk(4, prefix="live")
    burst = BurstFactory(
        subject="Going out", status=BurstStatus.SENDING, recipients=members, started_at=timezone.now()
    )
    DeliveryFactory.create_for(burst, members, status=DeliveryStatus.PENDING)
    login(page, "root", "root-pass-1234")
    open_page(page, f"/admin/campaigns/emailburst/{burst.pk}/change/")
    assert page.locator("#progress-percent").get_attribute("data-percent") in ("0", "0.0")

    half = list(Delivery.objects.filter(burst=burst).order_by("id").values_list("id", flat=True)[:2])
    Delivery.objects.filter(id__in=half).update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    counters_repair()
    page.wait_for_function("Number(document.getElementById('progress-percent').dataset.percent) === 50")
    assert page.locator('[data-figure="sent"]').inner_text() == "2"

    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    counters_repair()
    burst.status = BurstStatus.SENT
    burst.finished_at = timezone.now()
    burst.save(update_fields=["status", "finished_at"])
    # Once the burst is no longer sending, the page reloads itself for the final report.
    page.wait_for_function("document.getElementById('delivery-report').dataset.status === 'sent'")
    assert has_chart(page, "status-chart")
    assert csp_violations(page) == []
    assert page.js_errors == []


def test_api_docs_and_the_unsubscribe_page_work_under_their_policy(watched, member, live_server):
    page = watched
    response = page.goto("/api/docs")
    assert response.status == 200
    assert "object-src 'none'" in response.headers["content-security-policy"]
    page.locator(".swagger-ui .info .title").wait_for()
    page.locator(".opblock").first.wait_for()

    response = page.goto(urlsplit(unsubscribe_url(member.pk)).path)
    assert response.status == 200
    assert "script-src 'none'" in response.headers["content-security-policy"]
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "You are unsubscribed" in page.content()
    assert csp_violations(page) == []
    assert page.js_errors == []
