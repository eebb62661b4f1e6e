"""Every main admin page in a real browser: no JavaScript error, no
Content-Security-Policy violation, and a screenshot of each under test-artifacts/
for a human to look at."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import BurstStatus, DeliveryStatus
from tests.admin.browser import login, screenshot
from tests.admin.csp_watch import csp_violations, watch_csp
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OUTCOMES = [DeliveryStatus.SENT] * 8 + [
    DeliveryStatus.FAILED,
    DeliveryStatus.NOT_FOUND,
    DeliveryStatus.SKIPPED,
]


def test_gallery(page, superuser, live_server):
    members = MemberFactory.create_bulk(60, prefix="gal")
    members[0].unsubscribed_at = members[0].date_joined
    members[0].save()
    draft = BurstFactory(
        subject="Spring news for {{ member.first_name }}",
        recipients=members[:12],
        html_body="<h1>Hello {{ member.first_name }}</h1><p>Our spring programme is out.</p>",
        from_name="The Society",
    )
    sent = BurstFactory(subject="Winter gala", status=BurstStatus.SENT, recipients=members)
    # outcomes over three days, for the dashboard's chart
    DeliveryFactory.create_for(sent, members, status=lambda i: OUTCOMES[i % len(OUTCOMES)], spread_days=3)
    scheduled = BurstFactory(
        subject="Summer picnic",
        status=BurstStatus.SCHEDULED,
        all_members=True,
        scheduled_at=timezone.now() + timedelta(days=3),
    )
    watch_csp(page)
    login(page, "root", "root-pass-1234")
    shots = {
        "dashboard": "/admin/",
        "members-list": "/admin/members/member/",
        "member-page": f"/admin/members/member/{members[1].pk}/change/",
        "members-import": "/admin/members/member/import/",
        "bursts-list": "/admin/campaigns/emailburst/",
        "burst-draft": f"/admin/campaigns/emailburst/{draft.pk}/change/",
        "burst-sent": f"/admin/campaigns/emailburst/{sent.pk}/change/",
        "burst-scheduled": f"/admin/campaigns/emailburst/{scheduled.pk}/change/",
        "burst-preview": f"/admin/campaigns/emailburst/{draft.pk}/preview/",
        "burst-preflight": f"/admin/campaigns/emailburst/{draft.pk}/preflight/",
        "burst-schedule": f"/admin/campaigns/emailburst/{draft.pk}/schedule/",
        "burst-retry": f"/admin/campaigns/emailburst/{sent.pk}/retry/",
        "deliveries-list": f"/admin/campaigns/delivery/?burst__id__exact={sent.pk}",
    }
    for name, url in shots.items():
        response = page.goto(url)
        assert response.status == 200, (name, response.status)
        page.wait_for_load_state("load")
        screenshot(page, f"gallery-{name}")
        assert csp_violations(page) == [], name
        if name.startswith("burst-"):
            screenshot(page, f"gallery-{name}-top", full_page=False)
    assert page.js_errors == []
