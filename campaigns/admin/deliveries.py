"""Deliveries in the admin: the engine's records, to browse and filter, never edit."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import AutocompleteSelectFilter, ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import display
from unfold.views import ChangeList

from campaigns import selectors
from campaigns.admin.changelist import CheckedChangeList, KnownCountPaginator
from campaigns.models import Delivery
from campaigns.vocabulary import DELIVERY_STATUS_VARIANTS, STATUS_LABELS

# Query parameters that leave the row count to the counters: the filters by burst and
# status, the page and the sort order.
COUNTED_PARAMS = frozenset({"burst__id__exact", "status__exact", "p", "o"})


@admin.register(Delivery)
class DeliveryAdmin(ModelAdmin):
    """Deliveries are the engine's records: browse and filter, never edit."""

    list_display = (
        "id",
        "burst_link",
        "recipient",
        "status_badge",
        "attempts",
        "smtp_reply",
        "sent_at",
        "updated_at",
    )
    list_display_links = ("id",)
    list_filter = (
        ("status", ChoicesDropdownFilter),
        ("burst", AutocompleteSelectFilter),
        ("updated_at", RangeDateTimeFilter),
    )
    list_filter_submit = True
    search_fields = ("email",)
    list_select_related = ("burst",)
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-id",)
    readonly_fields = (
        "burst",
        "member",
        "email",
        "status",
        "error_message",
        "attempts",
        "sent_at",
        "created_at",
        "updated_at",
        "attempt_history",
        "mail_events",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).defer("burst__body", "burst__html_body")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CheckedChangeList

    def get_paginator(
        self, request: HttpRequest, queryset: QuerySet, per_page: int, *args: Any, **kwargs: Any
    ):
        """Filtered by burst and status only (the common view), the number of rows is
        the bursts' counters: no count over millions of deliveries per page view."""
        known = selectors.deliveries_known_count(
            burst_id=request.GET.get("burst__id__exact"),
            status=request.GET.get("status__exact"),
            other_filters=sorted(set(request.GET) - COUNTED_PARAMS),
        )
        return KnownCountPaginator(queryset, per_page, *args, known_count=known, **kwargs)

    @display(description="Tries")
    def attempt_history(self, delivery: Delivery) -> str:
        return render_to_string(
            "campaigns/admin/attempt_history.html",
            {
                "lines": [
                    (line, STATUS_LABELS.get(line.outcome, line.outcome))
                    for line in selectors.delivery_attempt_lines(delivery=delivery)
                ]
            },
        )

    @display(description="Reported later")
    def mail_events(self, delivery: Delivery) -> str:
        """Bounces and complaints about this message (its status stays what SMTP said)."""
        events = selectors.delivery_mail_events(delivery_id=delivery.pk)
        if not events:
            return "Nothing reported after sending."
        return format_html_join(
            "",
            '<div><a href="{}">{} {}</a>: {}</div>',
            (
                (
                    reverse("admin:campaigns_mailevent_change", args=[e.pk]),
                    e.get_kind_display(),
                    f"{e.received_at:%Y-%m-%d %H:%M}",
                    e.diagnostic or e.email,
                )
                for e in events
            ),
        )

    @display(description="Burst", ordering="burst")
    def burst_link(self, delivery: Delivery) -> str:
        url = reverse("admin:campaigns_emailburst_change", args=[delivery.burst_id])
        return format_html(
            '<a class="text-primary-600 dark:text-primary-500" href="{}">{}</a>',
            url,
            delivery.burst.display_name,
        )

    @display(description="Recipient", ordering="email")
    def recipient(self, delivery: Delivery) -> str:
        if delivery.member_id:
            url = reverse("admin:members_member_change", args=[delivery.member_id])
            return format_html('<a href="{}">{}</a>', url, delivery.email or f"member {delivery.member_id}")
        return delivery.email or "deleted member"

    @display(description="Status", ordering="status", label=DELIVERY_STATUS_VARIANTS)
    def status_badge(self, delivery: Delivery) -> tuple[str, str]:
        return delivery.status, delivery.get_status_display()

    @display(description="SMTP reply")
    def smtp_reply(self, delivery: Delivery) -> str:
        text = delivery.error_message
        return text if len(text) <= 90 else text[:88] + "…"
