"""The admin dashboard (`UNFOLD["DASHBOARD_CALLBACK"]`): totals, recent bursts and
delivery outcomes per day, from a fixed handful of aggregate queries whatever the
size of the tables."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from campaigns import selectors
from campaigns.models import FAILED_DELIVERY_STATUSES, BurstStatus, DeliveryStatus
from campaigns.vocabulary import (
    BURST_STATUS_LABELS,
    BURST_STATUS_VARIANTS,
    FAILED_COLOR,
    FIGURE_HELP,
    FIGURE_LABELS,
    SENT_COLOR,
    SKIPPED_COLOR,
    format_count,
    format_percent,
)
from members import selectors as member_selectors

DAYS = 30
RECENT_BURSTS = 8
SENT, FAILED, SKIPPED = (FIGURE_LABELS[k] for k in ("sent_count", "failed_count", "skipped_count"))
# "Failed" is what it is on every page: not found + rejected + connection + other error.
OUTCOME_SERIES = (
    (SENT, SENT_COLOR, frozenset({DeliveryStatus.SENT})),
    (FAILED, FAILED_COLOR, FAILED_DELIVERY_STATUSES),
    (SKIPPED, SKIPPED_COLOR, frozenset({DeliveryStatus.SKIPPED})),
)


def _bursts_by_status() -> list[dict[str, Any]]:
    counts = selectors.burst_status_counts()
    changelist = reverse("admin:campaigns_emailburst_changelist")
    return [
        {
            "key": status.value,
            "label": BURST_STATUS_LABELS[status.value],
            "count": counts.get(status.value, 0),
            "text": f"{BURST_STATUS_LABELS[status.value]} {format_count(counts.get(status.value, 0))}",
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
                "status_label": BURST_STATUS_LABELS[burst.status],
                "status_variant": BURST_STATUS_VARIANTS[burst.status],
                "recipients": burst.recipient_count,
                "sent": burst.n_sent,
                "failed": burst.n_failed,
                "rate": rate,
                "recipients_display": format_count(burst.recipient_count),
                # Before it started a burst has no outcome: "—", as on the burst list.
                "sent_display": format_count(burst.n_sent) if burst.n_deliveries else "—",
                "failed_display": format_count(burst.n_failed) if burst.n_deliveries else "—",
                "rate_display": format_percent(rate),
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


def _outcome_success_rate(totals: dict[str, int]) -> float | None:
    """The bursts' success rate formula over the finished deliveries of the days
    shown; None (shown "—") when none was to be sent."""
    sent, failed, skipped = totals[SENT], totals[FAILED], totals[SKIPPED]
    if not sent + failed:
        return None
    return selectors.success_rate(sent=sent, total=sent + failed + skipped, skipped=skipped)


# The bulk-sender limits (Gmail's and Yahoo's since 2024): complaints must stay under
# 0.3 % of the messages delivered, and should stay under 0.1 %. Bounces: ESPs review
# an account above about 2 % (no published mailbox provider limit), warned from 1 %.
COMPLAINT_LIMIT, COMPLAINT_WARNING = 0.3, 0.1
BOUNCE_LIMIT, BOUNCE_WARNING = 2.0, 1.0


def _rate_figure(count: int, sent: int, *, limit: float, warning: float, what: str) -> dict[str, Any]:
    rate = count / sent * 100 if sent else None
    if rate is None or rate < warning:
        level, variant = "ok", "success"
    elif rate < limit:
        level, variant = "warning", "warning"
    else:
        level, variant = "over", "danger"
    notes = {
        "ok": f"under the {format_percent(limit)} limit",
        "warning": f"close to the {format_percent(limit)} limit: look at who {what}",
        "over": f"over the {format_percent(limit)} limit: mailbox providers may refuse your mail",
    }
    return {
        "count": format_count(count),
        "rate": format_percent(rate),
        "level": level,
        "variant": variant,
        "note": notes[level],
    }


def _reputation(today: date, sent: int) -> dict[str, Any]:
    """Bounce and complaint rates of the last DAYS days against the bulk-sender limits:
    matched bounces and complaints (MailEvent) over the messages sent (daily outcomes)."""
    start = timezone.make_aware(
        datetime.combine(today - timedelta(days=DAYS - 1), time.min), timezone.get_default_timezone()
    )
    counts = selectors.reported_counts(since=start)
    return {
        "bounces": _rate_figure(
            counts["bounced"], sent, limit=BOUNCE_LIMIT, warning=BOUNCE_WARNING, what="bounces"
        ),
        "complaints": _rate_figure(
            counts["complained"], sent, limit=COMPLAINT_LIMIT, warning=COMPLAINT_WARNING, what="complains"
        ),
        "events_url": reverse("admin:campaigns_mailevent_changelist"),
    }


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
        context["member_figures"] = {k: format_count(v) for k, v in context["member_totals"].items()}
    if see_bursts:
        by_status = _bursts_by_status()
        context["bursts_by_status"] = by_status
        context["bursts_total"] = sum(row["count"] for row in by_status)
        context["bursts_total_display"] = format_count(context["bursts_total"])
        context["recent_bursts"] = _recent_bursts()
    if see_deliveries:
        chart, outcome_totals = _outcomes_per_day(timezone.localdate())
        context["outcomes_chart"] = json.dumps(chart)
        context["outcomes_chart_options"] = json.dumps(CHART_OPTIONS)
        context["outcome_totals"] = outcome_totals
        context["outcome_success_rate"] = _outcome_success_rate(outcome_totals)
        context["outcome_figures"] = {
            "sent": format_count(outcome_totals[SENT]),
            "failed": format_count(outcome_totals[FAILED]),
            "skipped": format_count(outcome_totals[SKIPPED]),
            "success_rate": format_percent(context["outcome_success_rate"]),
        }
        context["failed_help"] = FIGURE_HELP["failed_count"]
        context["reputation"] = reputation = _reputation(timezone.localdate(), outcome_totals[SENT])
        context["reputation_cards"] = [
            ("bounces", f"Bounce rate, last {DAYS} days", reputation["bounces"]),
            ("complaints", f"Complaint rate, last {DAYS} days", reputation["complaints"]),
        ]
    return context
