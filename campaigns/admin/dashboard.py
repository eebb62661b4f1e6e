"""The admin dashboard (`UNFOLD["DASHBOARD_CALLBACK"]`): totals, recent bursts and
delivery outcomes per day, from a fixed handful of aggregate queries whatever the
size of the tables."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from campaigns import selectors
from campaigns.models import FAILED_DELIVERY_STATUSES, BurstStatus, DeliveryStatus
from campaigns.vocabulary import BURST_STATUS_VARIANTS
from members import selectors as member_selectors

DAYS = 30
RECENT_BURSTS = 8
OUTCOME_SERIES = (
    ("Sent", "#16a34a", frozenset({DeliveryStatus.SENT})),
    ("Failed", "#dc2626", FAILED_DELIVERY_STATUSES),
    ("Skipped", "#a8a29e", frozenset({DeliveryStatus.SKIPPED})),
)


def _bursts_by_status() -> list[dict[str, Any]]:
    counts = selectors.burst_status_counts()
    changelist = reverse("admin:campaigns_emailburst_changelist")
    return [
        {
            "key": status.value,
            "label": status.label,
            "count": counts.get(status.value, 0),
            "text": f"{status.label} {counts.get(status.value, 0)}",
            "variant": BURST_STATUS_VARIANTS[status.value],
            "url": f"{changelist}?status__exact={status.value}",
        }
        for status in BurstStatus
    ]


def _recent_bursts() -> list[dict[str, Any]]:
    rows = []
    for burst in selectors.recent_bursts(limit=RECENT_BURSTS):
        rate = selectors.annotated_success_rate(burst)
        rows.append(
            {
                "burst": burst,
                "url": reverse("admin:campaigns_emailburst_change", args=[burst.pk]),
                "status_variant": BURST_STATUS_VARIANTS[burst.status],
                "recipients": burst.recipient_count,
                "sent": burst.n_sent,
                "failed": burst.n_failed,
                "rate": rate,
            }
        )
    return rows


def _outcomes_per_day(today: date) -> tuple[dict[str, Any], dict[str, int]]:
    start_day = today - timedelta(days=DAYS - 1)
    counts = selectors.delivery_outcomes_by_day(first_day=start_day, days=DAYS)
    days = [start_day + timedelta(days=i) for i in range(DAYS)]
    series = {name: [0] * DAYS for name, _, _ in OUTCOME_SERIES}
    totals = {name: 0 for name, _, _ in OUTCOME_SERIES}
    for i, day in enumerate(days):
        for status, n in counts.get(day, {}).items():
            for name, _, statuses in OUTCOME_SERIES:
                if status in statuses:
                    series[name][i] += n
                    totals[name] += n
    data = {
        "labels": [d.strftime("%b %d") for d in days],
        "datasets": [
            {
                "label": name,
                "data": series[name],
                "backgroundColor": color,
                "borderRadius": 3,
                "maxBarThickness": 18,
            }
            for name, color, _ in OUTCOME_SERIES
        ],
    }
    return data, totals


CHART_OPTIONS = {
    "animation": False,
    "responsive": True,
    "maintainAspectRatio": False,
    "plugins": {
        "legend": {
            "display": True,
            "position": "top",
            "align": "end",
            "labels": {"usePointStyle": True, "pointStyle": "circle", "boxWidth": 8, "boxHeight": 8},
        },
        "tooltip": {"enabled": True, "mode": "index", "intersect": False},
    },
    "scales": {
        "x": {"stacked": True, "grid": {"display": False}, "ticks": {"maxTicksLimit": 10}},
        "y": {"stacked": True, "beginAtZero": True, "ticks": {"precision": 0}},
    },
}


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """Each part only for staff who may see its model."""
    user = request.user
    see_members = user.has_perm("members.view_member")
    see_bursts = user.has_perm("campaigns.view_emailburst")
    see_deliveries = user.has_perm("campaigns.view_delivery")
    context["dashboard"] = True
    context["days"] = DAYS
    context["links"] = {
        "members": reverse("admin:members_member_changelist"),
        "subscribed": reverse("admin:members_member_changelist") + "?subscribed=yes",
        "bursts": reverse("admin:campaigns_emailburst_changelist"),
        "new_burst": reverse("admin:campaigns_emailburst_add"),
        "deliveries": reverse("admin:campaigns_delivery_changelist"),
        "import": reverse("admin:members_member_import"),
    }
    if see_members:
        context["member_totals"] = member_selectors.member_totals()
    if see_bursts:
        by_status = _bursts_by_status()
        context["bursts_by_status"] = by_status
        context["bursts_total"] = sum(row["count"] for row in by_status)
        context["recent_bursts"] = _recent_bursts()
    if see_deliveries:
        chart, outcome_totals = _outcomes_per_day(timezone.localdate())
        attempted = outcome_totals["Sent"] + outcome_totals["Failed"]
        context["outcomes_chart"] = json.dumps(chart)
        context["outcomes_chart_options"] = json.dumps(CHART_OPTIONS)
        context["outcome_totals"] = outcome_totals
        context["outcome_success_rate"] = (
            round(outcome_totals["Sent"] * 100 / attempted, 1) if attempted else None
        )
    return context
