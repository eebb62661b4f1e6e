"""The dashboard at /admin/: totals, recent bursts with their success rate and the
delivery outcomes of the last 30 days."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory, counters_repair

pytestmark = pytest.mark.django_db


def test_dashboard(root_client, editor):
    people = MemberFactory.create_bulk(10)
    people[0].unsubscribed_at = timezone.now()
    people[0].save()
    sent = BurstFactory(subject="Gala", status=BurstStatus.SENT, recipients=people)
    DeliveryFactory.create_for(
        sent, people, status=lambda i: DeliveryStatus.SENT if i < 8 else DeliveryStatus.FAILED
    )
    BurstFactory(
        subject="Next", status=BurstStatus.SCHEDULED, scheduled_at=timezone.now() + timedelta(days=2)
    )
    BurstFactory(subject="Idea")
    Delivery.objects.filter(burst=sent).update(updated_at=timezone.now())
    old = Delivery.objects.filter(burst=sent).order_by("id")[:2]
    Delivery.objects.filter(id__in=[d.id for d in old]).update(updated_at=timezone.now() - timedelta(days=3))
    Delivery.objects.filter(id=Delivery.objects.order_by("-id")[0].id).update(
        updated_at=timezone.now() - timedelta(days=45)
    )
    counters_repair()  # the outcomes moved to other days behind the recording code's back

    response = root_client.get("/admin/")
    assert response.status_code == 200
    ctx = response.context
    assert ctx["member_totals"] == {"members": 12, "subscribed": 11, "verified": 0, "staff": 2}
    by_status = {row["key"]: row["count"] for row in ctx["bursts_by_status"]}
    assert by_status == {"draft": 1, "scheduled": 1, "sending": 0, "paused": 0, "sent": 1, "cancelled": 0}
    recent = {row["burst"].subject: row for row in ctx["recent_bursts"]}
    assert recent["Gala"]["rate"] == 80.0 and recent["Gala"]["sent"] == 8 and recent["Gala"]["failed"] == 2
    assert recent["Idea"]["rate"] is None

    chart = json.loads(ctx["outcomes_chart"])
    assert len(chart["labels"]) == 30
    sent_series = next(d for d in chart["datasets"] if d["label"] == "Sent")["data"]
    failed_series = next(d for d in chart["datasets"] if d["label"] == "Failed")["data"]
    assert sent_series[-1] == 6 and sent_series[-4] == 2  # two sent three days ago
    assert sum(failed_series) == 1  # the other failure is older than 30 days
    assert ctx["outcome_totals"] == {"Sent": 8, "Failed": 1, "Skipped": 0}
    html = response.content.decode()
    assert 'id="outcomes-chart"' in html and 'data-type="bar"' in html and "80.0 %" in html


def test_dashboard_shows_only_what_the_user_may_see(client, db):
    from django.contrib.auth.models import Permission

    from members.models import Member

    user = Member.objects.create_user("camp", "camp@example.test", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_emailburst", "view_delivery"]))
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "member_totals" not in response.context
    assert "recent_bursts" in response.context and "outcomes_chart" in response.context
    assert 'data-total="members"' not in response.content.decode()


def test_dashboard_writes_figures_in_the_one_format(root_client):
    people = MemberFactory.create_bulk(1200, prefix="big")
    sent = BurstFactory(name="Big news", status=BurstStatus.SENT, recipients=people)
    plan = [DeliveryStatus.SENT] * 1187 + [DeliveryStatus.NOT_FOUND] * 8 + [DeliveryStatus.FAILED] * 5
    DeliveryFactory.create_for(sent, people, status=lambda i: plan[i])
    BurstFactory(name="Not yet")

    response = root_client.get("/admin/")

    ctx = response.context
    assert ctx["outcome_figures"] == {
        "sent": "1,187",
        "failed": "13",  # not found + rejected: "Failed" as on every page
        "skipped": "0",
        "success_rate": "98.9 %",
    }
    assert ctx["member_figures"]["members"] == "1,201"  # and root
    rows = {row["burst"].display_name: row for row in ctx["recent_bursts"]}
    assert (rows["Big news"]["sent_display"], rows["Big news"]["rate_display"]) == ("1,187", "98.9 %")
    assert (rows["Not yet"]["sent_display"], rows["Not yet"]["rate_display"]) == ("—", "—")
    html = response.content.decode()
    assert 'data-total="success_rate_30d">98.9 %<' in html and "98.92" not in html


def test_dashboard_success_rate_is_a_dash_without_outcomes(root_client):
    response = root_client.get("/admin/")
    assert response.context["outcome_success_rate"] is None
    assert "success_rate_30d" not in response.content.decode()
