"""The delivery report of a burst in the admin: figures, chart, progress, and one
page of its deliveries. Every figure comes from `campaigns.selectors.burst_stats`
(one aggregate query); the deliveries are read one page at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Page
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from campaigns import selectors
from campaigns.admin.changelist import KnownCountPaginator
from campaigns.models import BurstStatus, DeliveryStatus, EmailBurst
from campaigns.selectors import BurstStats
from campaigns.services import DEFAULT_RETRY_STATUSES, RETRYABLE_STATUSES
from campaigns.states import BurstAction, burst_actions_available
from campaigns.vocabulary import BURST_STATUS_VARIANTS, DELIVERY_STATUS_VARIANTS, STATUS_LABELS

DELIVERIES_PER_PAGE = 25

# Chart colours per status.
DELIVERY_STATUS_COLORS: dict[str, str] = {
    DeliveryStatus.SENT: "#16a34a",
    DeliveryStatus.PENDING: "#60a5fa",
    DeliveryStatus.SKIPPED: "#a8a29e",
    DeliveryStatus.NOT_FOUND: "#f97316",
    DeliveryStatus.FAILED: "#dc2626",
    DeliveryStatus.CONNECTION_ERROR: "#9333ea",
    DeliveryStatus.OTHER_ERROR: "#be185d",
}
# Report order: the outcome first, then what is left, then the failure classes.
STATUS_ORDER: tuple[str, ...] = (
    DeliveryStatus.SENT,
    DeliveryStatus.PENDING,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.NOT_FOUND,
    DeliveryStatus.FAILED,
    DeliveryStatus.CONNECTION_ERROR,
    DeliveryStatus.OTHER_ERROR,
)
STARTED_STATUSES = frozenset(
    {BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED}
)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_payload(*, burst: EmailBurst, stats: BurstStats) -> dict[str, Any]:
    """What the progress bar shows (also the JSON the page polls)."""
    progress = selectors.burst_progress(burst=burst, stats=stats)
    status, rate, eta = progress.status, progress.rate, progress.eta
    if progress.preparing:
        eta_display = "preparing the recipient list…"
    elif progress.next_retry_at is not None:
        # The rest waits for retries (greylisting, full mailboxes): say when.
        eta_display = f"waiting for retries, next at {timezone.localtime(progress.next_retry_at):%H:%M:%S}"
    elif eta is not None:
        eta_display = format_duration(eta)
    else:
        eta_display = "done" if not stats.pending_count and progress.total else "—"
    return {
        "status": status,
        "status_display": BurstStatus(status).label,
        "status_variant": BURST_STATUS_VARIANTS.get(status, "default"),
        "pause_reason": burst.pause_reason,
        "deliveries_ready": burst.deliveries_ready,
        "active": status == BurstStatus.SENDING,
        "total": progress.total,
        "done": progress.done,
        "sent": stats.sent_count,
        "failed": stats.failed_count,
        "pending": stats.pending_count,
        "skipped": stats.skipped_count,
        "success_rate": stats.success_rate,
        "percent": progress.percent,
        "rate": round(rate, 1) if rate else None,
        "rate_display": f"{rate:.1f} msg/s" if rate else "—",
        "elapsed_display": format_duration(progress.elapsed) if burst.started_at else "—",
        "eta_seconds": round(eta) if eta is not None else None,
        "eta_display": eta_display,
        "preparing": progress.preparing,
        "status_counts": stats.status_counts,
    }


def chart_data(stats: BurstStats) -> dict[str, Any]:
    """Chart.js data for a doughnut of the status breakdown."""
    statuses = [s for s in STATUS_ORDER if stats.status_counts.get(s)] or [DeliveryStatus.PENDING]
    return {
        "labels": [str(STATUS_LABELS[s]) for s in statuses],
        "datasets": [
            {
                "data": [stats.status_counts.get(s, 0) for s in statuses],
                "backgroundColor": [DELIVERY_STATUS_COLORS[s] for s in statuses],
                "borderWidth": 0,
            }
        ],
    }


CHART_OPTIONS = {
    "animation": False,
    "responsive": True,
    "maintainAspectRatio": False,
    "cutout": "62%",
    "plugins": {
        # The breakdown table next to the chart is its legend.
        "legend": {"display": False},
        "tooltip": {"enabled": True},
    },
}


@dataclass(frozen=True)
class StatusTab:
    key: str
    label: str
    count: int
    url: str
    active: bool
    variant: str


def deliveries_page(request: HttpRequest, burst: EmailBurst, stats: BurstStats) -> dict[str, Any]:
    status = request.GET.get("dstatus", "")
    if status not in DeliveryStatus.values:
        status = ""
    query = request.GET.get("dq", "").strip()[:200]
    queryset = selectors.burst_deliveries(burst_id=burst.pk, status=status, query=query)
    # Without a search, the stats (the counters) know how many rows there are.
    known = None if query else (stats.status_counts.get(status, 0) if status else stats.total_recipients)
    paginator = KnownCountPaginator(queryset, DELIVERIES_PER_PAGE, known_count=known)
    page: Page = paginator.get_page(request.GET.get("dpage"))

    def url(**changes: Any) -> str:
        params = {"dstatus": status, "dq": query, "dpage": page.number, **changes}
        clean = {k: v for k, v in params.items() if v and not (k == "dpage" and v == 1)}
        return "?" + urlencode(clean) + "#deliveries"

    tabs = [
        StatusTab("", "All", stats.total_recipients, url(dstatus="", dpage=1), not status, "default"),
        *(
            StatusTab(
                s,
                str(STATUS_LABELS[s]),
                stats.status_counts.get(s, 0),
                url(dstatus=s, dpage=1),
                status == s,
                DELIVERY_STATUS_VARIANTS[s],
            )
            for s in STATUS_ORDER
            if stats.status_counts.get(s, 0) or status == s
        ),
    ]
    page_links = [
        {"number": n, "url": url(dpage=n) if n != paginator.ELLIPSIS else "", "current": n == page.number}
        for n in paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)
    ]
    changelist = reverse("admin:campaigns_delivery_changelist")
    filtered = {"burst__id__exact": burst.pk}
    if status:
        filtered["status__exact"] = status
    if query:
        filtered["q"] = query
    return {
        "deliveries": page,
        "deliveries_paginator": paginator,
        "deliveries_page_links": page_links if paginator.num_pages > 1 else [],
        "deliveries_status": status,
        "deliveries_query": query,
        "deliveries_tabs": tabs,
        "deliveries_changelist_url": f"{changelist}?{urlencode(filtered)}",
        "delivery_variants": DELIVERY_STATUS_VARIANTS,
    }


def report_context(request: HttpRequest, burst: EmailBurst, stats: BurstStats) -> dict[str, Any]:
    progress = progress_payload(burst=burst, stats=stats)
    failed_by_class = [
        {
            "key": s,
            "label": STATUS_LABELS[s],
            "count": stats.status_counts.get(s, 0),
            "color": DELIVERY_STATUS_COLORS[s],
        }
        for s in STATUS_ORDER
    ]
    retryable = sum(stats.status_counts.get(s, 0) for s in RETRYABLE_STATUSES)
    base = reverse("admin:campaigns_emailburst_change", args=[burst.pk])
    return {
        "burst": burst,
        "stats": stats,
        "progress": progress,
        "progress_url": reverse("admin:campaigns_emailburst_progress", args=[burst.pk]),
        "chart_data": json.dumps(chart_data(stats)),
        "chart_options": json.dumps(CHART_OPTIONS),
        # For the live chart's updates (read by burst_report.js through json_script).
        "chart_statuses": [
            {"key": s, "label": str(STATUS_LABELS[s]), "color": DELIVERY_STATUS_COLORS[s]}
            for s in STATUS_ORDER
        ],
        "status_breakdown": failed_by_class,
        "retryable_count": retryable,
        "retry_legal": BurstAction.RETRY in burst_actions_available(burst.status),
        "default_retry_count": sum(stats.status_counts.get(s, 0) for s in DEFAULT_RETRY_STATUSES),
        "report_started": burst.status in STARTED_STATUSES or stats.total_recipients > 0,
        "export_csv_url": reverse("admin:campaigns_emailburst_report_export", args=[burst.pk, "csv"]),
        "export_xlsx_url": reverse("admin:campaigns_emailburst_report_export", args=[burst.pk, "xlsx"]),
        "burst_change_url": base,
        **deliveries_page(request, burst, stats),
    }
