"""The delivery report of a burst in the admin: status, figures, chart, progress, one
page of its deliveries, and the live updates of all of it.

Every figure comes from `campaigns.selectors.burst_stats` (one query on the burst's
counters); the deliveries are read one page at a time. Words and number formats
come from `campaigns.vocabulary`.

While a burst is scheduled, sending or paused, `burst_report.js` polls
`live_payload` (the progress view) every 2 s: the figures as JSON plus the page's
regions rendered by the very template of the page (`burst_report.html`, whose
regions are marked `<!--part:NAME-->…<!--/part:NAME-->`) and the header's buttons,
which the script swaps in. One poll costs the same few queries whatever the size of
the burst.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.admin import ModelAdmin
from django.core.paginator import Page
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from campaigns import selectors
from campaigns.admin.changelist import KnownCountPaginator
from campaigns.admin.forms import zone_description
from campaigns.models import EDITABLE_BURST_STATUSES, BurstStatus, DeliveryStatus, EmailBurst
from campaigns.selectors import BurstStats, Progress
from campaigns.services import DEFAULT_RETRY_STATUSES, RETRYABLE_STATUSES
from campaigns.states import BurstAction, burst_actions_available
from campaigns.vocabulary import (
    BURST_STATUS_LABELS,
    BURST_STATUS_VARIANTS,
    DELIVERY_STATUS_COLORS,
    DELIVERY_STATUS_HELP,
    DELIVERY_STATUS_LABELS,
    DELIVERY_STATUS_VARIANTS,
    FAILED_COLOR,
    FAILED_STATUSES_TEXT,
    FIGURE_HELP,
    FIGURE_LABELS,
    NOTHING,
    deliveries_word,
    format_clock,
    format_count,
    format_duration,
    format_moment,
    format_percent,
    format_speed,
)

DELIVERIES_PER_PAGE = 25
TEMPLATE = "campaigns/admin/burst_report.html"

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
FAILED_ORDER = STATUS_ORDER[3:]
STARTED_STATUSES = frozenset(
    {BurstStatus.SENDING, BurstStatus.PAUSED, BurstStatus.SENT, BurstStatus.CANCELLED}
)
# While a burst is in one of these its page polls; it stops after the first answer
# in any other status (that answer is applied: the last refresh).
LIVE_STATUSES = frozenset({BurstStatus.SCHEDULED, BurstStatus.SENDING, BurstStatus.PAUSED})
POLL_MILLISECONDS = 2000


# --- words of the progress --------------------------------------------------------------------------


def retry_wait_text(progress: Progress, *, with_reply: bool) -> str:
    """ "3 deliveries wait for a retry until 14:05:30 (452 4.2.2 Mailbox full)"."""
    count = progress.retrying
    when = progress.next_retry_at
    if when is not None and when > timezone.now():
        text = (
            f"{deliveries_word(count)} wait{'s' if count == 1 else ''} for a retry until {format_clock(when)}"
        )
    else:
        text = f"{deliveries_word(count)} {'is' if count == 1 else 'are'} due for a retry now"
    reply = " ".join(progress.retry_reply.split())
    if with_reply and reply:
        text += f" ({reply[:160]})"
    return text


def status_line(burst: EmailBurst, progress: Progress) -> str:
    """One sentence that says where the burst is, and why it waits when it does."""
    status = progress.status
    if status == BurstStatus.DRAFT:
        line = "A draft: nothing has been sent."
    elif status == BurstStatus.SCHEDULED:
        when = format_moment(burst.scheduled_at)
        line = f"Scheduled for {when}, {zone_description()}: sending starts by itself."
    elif status == BurstStatus.SENDING and progress.preparing:
        line = f"Sending: preparing the recipient list ({format_count(progress.total)} so far)."
    elif status == BurstStatus.SENDING:
        line = f"Sending: {format_count(progress.done)} of {format_count(progress.total)} done."
    elif status == BurstStatus.PAUSED:
        left = progress.total - progress.done
        line = f"Paused: no new message leaves until it is resumed ({deliveries_word(left)} left)."
    elif status == BurstStatus.SENT:
        line = f"Sent: finished {format_moment(burst.finished_at)}."
    else:
        line = f"Cancelled {format_moment(burst.finished_at)}: the deliveries not sent by then were skipped."
    if progress.retrying and status in (BurstStatus.SENDING, BurstStatus.PAUSED):
        line += " " + retry_wait_text(progress, with_reply=True) + "."
    return line


def eta_text(progress: Progress) -> str:
    if progress.preparing:
        return "preparing the recipient list…"
    if progress.status == BurstStatus.SENT:
        return "done"
    if progress.status != BurstStatus.SENDING:
        return NOTHING
    parts = []
    if progress.ready and progress.eta is None:
        parts.append("estimating…")
    elif progress.ready:
        parts.append(f"about {format_duration(progress.eta)}" if progress.eta >= 1 else "less than a second")
    if progress.retrying:
        parts.append(retry_wait_text(progress, with_reply=False))
    return ", then ".join(parts) if parts else "finishing…"


# --- the figures --------------------------------------------------------------------------------------


def progress_payload(*, burst: EmailBurst, stats: BurstStats) -> dict[str, Any]:
    """The figures of the progress, as numbers and as the words the page shows."""
    progress = selectors.burst_progress(burst=burst, stats=stats)
    status = progress.status
    return {
        "status": status,
        "status_display": BURST_STATUS_LABELS.get(status, status),
        "status_variant": BURST_STATUS_VARIANTS.get(status, "default"),
        "status_line": status_line(burst, progress),
        "stage": "report" if report_started(burst, stats) else "ready",
        "live": status in LIVE_STATUSES,
        "pause_reason": burst.pause_reason,
        "deliveries_ready": burst.deliveries_ready,
        "active": status == BurstStatus.SENDING,
        "total": progress.total,
        "total_display": format_count(progress.total),
        "done": progress.done,
        "done_display": format_count(progress.done),
        "sent_display": format_count(stats.sent_count),
        "sent": stats.sent_count,
        "failed": stats.failed_count,
        "pending": stats.pending_count,
        "skipped": stats.skipped_count,
        "retrying_count": progress.retrying,
        "next_retry_at": progress.next_retry_at.isoformat() if progress.next_retry_at else None,
        "success_rate": stats.shown_success_rate,
        "success_rate_display": format_percent(stats.shown_success_rate),
        "percent": progress.percent,
        "percent_display": format_percent(progress.percent),
        "rate": round(progress.rate, 1) if progress.rate else None,
        "rate_display": format_speed(progress.rate),
        "sending_seconds": round(progress.sending_seconds, 3),
        "sending_display": format_duration(progress.sending_seconds) if progress.sending_seconds else NOTHING,
        "elapsed_display": format_duration(progress.elapsed) if burst.started_at else NOTHING,
        "eta_seconds": round(progress.eta) if progress.eta is not None else None,
        "eta_display": eta_text(progress),
        "preparing": progress.preparing,
        "status_counts": stats.status_counts,
    }


def report_started(burst: EmailBurst, stats: BurstStats) -> bool:
    return burst.status in STARTED_STATUSES or stats.total_recipients > 0


TONES = {
    "important": "text-font-important-light dark:text-font-important-dark",
    "green": "text-green-700 dark:text-green-400",
    "red": "text-red-700 dark:text-red-400",
    "blue": "text-blue-700 dark:text-blue-400",
}


def figure_cards(stats: BurstStats) -> list[dict[str, str]]:
    """The figure cards, in the words and formats of `campaigns.vocabulary`."""
    retrying = f"{format_count(stats.retrying_count)} waiting for a retry" if stats.retrying_count else ""
    cards = (
        ("total", "total_recipients", format_count(stats.total_recipients), "important", ""),
        ("sent", "sent_count", format_count(stats.sent_count), "green", ""),
        ("failed", "failed_count", format_count(stats.failed_count), "red", FAILED_STATUSES_TEXT),
        ("pending", "pending_count", format_count(stats.pending_count), "blue", retrying),
        ("skipped", "skipped_count", format_count(stats.skipped_count), "important", ""),
        ("success_rate", "success_rate", format_percent(stats.shown_success_rate), "important", ""),
    )
    return [
        {
            "key": key,
            "label": FIGURE_LABELS[name],
            "value": value,
            "help": FIGURE_HELP.get(name, ""),
            "tone": TONES[tone],
            "note": note,
        }
        for key, name, value, tone, note in cards
    ]


def reported_line(stats: BurstStats) -> str:
    """Bounces and complaints reported after the server accepted the messages."""
    bounced, complained = stats.bounced_count, stats.complained_count
    return (
        f"Reported after sending: {format_count(bounced)} bounced "
        f"({format_percent(_share(bounced, stats.sent_count))}), "
        f"{format_count(complained)} marked as spam ({format_percent(_share(complained, stats.sent_count))})."
    )


def _share(part: int, whole: int) -> float | None:
    return round(part / whole * 100, 1) if whole else None


def status_breakdown(stats: BurstStats) -> list[dict[str, Any]]:
    """The rows next to the chart: each status, the failure classes grouped under
    "Failed" (the same number as the Failed card)."""

    def row(status: str, *, nested: bool = False) -> dict[str, Any]:
        count = stats.status_counts.get(status, 0)
        note = ""
        if status == DeliveryStatus.PENDING and stats.retrying_count:
            note = f"{format_count(stats.retrying_count)} waiting for a retry"
        return {
            "key": status,
            "label": DELIVERY_STATUS_LABELS[status],
            "help": DELIVERY_STATUS_HELP[status],
            "count": format_count(count),
            "color": DELIVERY_STATUS_COLORS[status],
            "nested": nested,
            "note": note,
        }

    failed = {
        "key": "failed_count",
        "label": FIGURE_LABELS["failed_count"],
        "help": FIGURE_HELP["failed_count"],
        "count": format_count(stats.failed_count),
        "color": FAILED_COLOR,
        "nested": False,
        "note": "",
        "group": True,
    }
    return [
        *(row(s) for s in (DeliveryStatus.SENT, DeliveryStatus.PENDING, DeliveryStatus.SKIPPED)),
        failed,
        *(row(s, nested=True) for s in FAILED_ORDER),
    ]


def chart_data(stats: BurstStats) -> dict[str, Any]:
    """Chart.js data for a doughnut of the status breakdown."""
    statuses = [s for s in STATUS_ORDER if stats.status_counts.get(s)] or [DeliveryStatus.PENDING]
    return {
        "labels": [DELIVERY_STATUS_LABELS[s] for s in statuses],
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


# --- one page of deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusTab:
    key: str
    label: str
    count: str
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
        StatusTab(
            "", "All", format_count(stats.total_recipients), url(dstatus="", dpage=1), not status, "default"
        ),
        *(
            StatusTab(
                s,
                DELIVERY_STATUS_LABELS[s],
                format_count(stats.status_counts.get(s, 0)),
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
    count = paginator.count
    return {
        "deliveries": page,
        "deliveries_paginator": paginator,
        "deliveries_page_links": page_links if paginator.num_pages > 1 else [],
        "deliveries_range": (
            f"{format_count(page.start_index())}–{format_count(page.end_index())} of {deliveries_word(count)}"
            if count
            else ""
        ),
        "deliveries_status": status,
        "deliveries_query": query,
        "deliveries_tabs": tabs,
        "deliveries_changelist_url": f"{changelist}?{urlencode(filtered)}",
        "delivery_variants": DELIVERY_STATUS_VARIANTS,
        "delivery_labels": DELIVERY_STATUS_LABELS,
        "delivery_help": DELIVERY_STATUS_HELP,
    }


# --- the page ---------------------------------------------------------------------------------------------


def report_context(request: HttpRequest, burst: EmailBurst, stats: BurstStats) -> dict[str, Any]:
    progress = progress_payload(burst=burst, stats=stats)
    retryable = sum(stats.status_counts.get(s, 0) for s in RETRYABLE_STATUSES)
    base = reverse("admin:campaigns_emailburst_change", args=[burst.pk])
    return {
        "burst": burst,
        "stats": stats,
        "progress": progress,
        "progress_url": reverse("admin:campaigns_emailburst_progress", args=[burst.pk]),
        "poll_milliseconds": POLL_MILLISECONDS,
        "figures": figure_cards(stats),
        "reported_line": reported_line(stats),
        "failed_statuses_text": FAILED_STATUSES_TEXT,
        "chart_data": json.dumps(chart_data(stats)),
        "chart_options": json.dumps(CHART_OPTIONS),
        # For the live chart's updates (read by burst_report.js through json_script).
        "chart_statuses": [
            {"key": s, "label": DELIVERY_STATUS_LABELS[s], "color": DELIVERY_STATUS_COLORS[s]}
            for s in STATUS_ORDER
        ],
        "status_breakdown": status_breakdown(stats),
        "retryable_count": retryable,
        "retry_legal": BurstAction.RETRY in burst_actions_available(burst.status),
        "default_retry_count": sum(stats.status_counts.get(s, 0) for s in DEFAULT_RETRY_STATUSES),
        "report_started": report_started(burst, stats),
        "started_display": format_moment(burst.started_at) if burst.started_at else "",
        "finished_display": format_moment(burst.finished_at) if burst.finished_at else "",
        "export_csv_url": reverse("admin:campaigns_emailburst_report_export", args=[burst.pk, "csv"]),
        "export_xlsx_url": reverse("admin:campaigns_emailburst_report_export", args=[burst.pk, "xlsx"]),
        "burst_change_url": base,
        **deliveries_page(request, burst, stats),
    }


# --- the live updates ------------------------------------------------------------------------------------

_PART_START = re.compile(r"<!--part:([a-z_]+)-->")


def page_parts(html: str) -> dict[str, str]:
    """The marked regions of a rendered report (nested ones too: the whole report
    holds the others). Member data cannot forge a marker: it is escaped (`<` becomes
    `&lt;`)."""
    parts = {}
    for start in _PART_START.finditer(html):
        end = html.find(f"<!--/part:{start[1]}-->", start.end())
        if end != -1:
            parts[start[1]] = html[start.end() : end].strip()
    return parts


def header_buttons(model_admin: ModelAdmin, request: HttpRequest, burst: EmailBurst) -> tuple[str, str]:
    """The burst page's header buttons (unfold's `actions_detail`, as the change
    view builds them) and their key (the paths shown), to swap when the key changes.

    `_get_actions_navigation` is unfold's own (0.91): the header shows exactly what
    the change form would."""
    navigation = model_admin._get_actions_navigation(
        model_admin.actions_detail, model_admin.get_actions_detail(request, burst.pk), burst.pk
    )
    object_tools = render_to_string(
        "admin/change_form_object_tools.html",
        {
            "opts": model_admin.model._meta,
            "original": burst,
            "show_history": bool(settings.UNFOLD.get("SHOW_HISTORY")),
            "preserved_filters": "",
        },
        request=request,
    )
    html = render_to_string(
        "unfold/helpers/tab_actions.html",
        {
            "actions_detail": navigation,
            "actions_detail_hide_default": model_admin.actions_detail_hide_default,
            "nav_global": mark_safe(object_tools),  # noqa: S308 - our own template's output
        },
        request=request,
    )
    return html, buttons_key(navigation)


def buttons_key(navigation: list[dict[str, Any]]) -> str:
    """The paths of the buttons shown, in order (`burst_report.html` writes the
    same from the page's own `actions_detail`)."""
    paths = []
    for item in navigation:
        paths += [child["path"] for child in item["items"]] if item.get("items") else [item["path"]]
    return " ".join(paths)


def live_payload(model_admin: ModelAdmin, request: HttpRequest, burst: EmailBurst) -> dict[str, Any]:
    """What the burst page's script applies every poll: the figures, the page's
    regions (with the page's own deliveries filters, from the query string) and the
    header's buttons. With `stage` = the stage the page shows, the whole report is
    left out unless the page must switch to it (a scheduled burst that started)."""
    stats = selectors.burst_stats(burst_id=burst.pk)
    # The header's buttons read the burst and its figures from the request's caches,
    # as on the change page (no query more).
    request.__dict__.setdefault("_emailer_bursts", {})[burst.pk] = burst
    request.__dict__.setdefault("_emailer_stats", {})[burst.pk] = stats
    context = {
        **report_context(request, burst, stats),
        "can_send": model_admin.has_send_permission(request),
        "zone": zone_description(),
        "live_part": True,
    }
    parts = page_parts(render_to_string(TEMPLATE, context, request=request))
    payload = context["progress"]
    if request.GET.get("stage") == payload["stage"]:
        parts.pop("report", None)
        parts.pop("ready", None)
    opened = request.GET.get("opened", "")
    if opened in EDITABLE_BURST_STATUSES and burst.status not in EDITABLE_BURST_STATUSES:
        payload["notice"] = (
            "This burst has started since this page was opened: its settings can no longer "
            "be changed. Reload the page to see them read-only."
        )
    buttons, key = header_buttons(model_admin, request, burst)
    return {**payload, "parts": parts, "buttons_html": buttons, "buttons_key": key}
