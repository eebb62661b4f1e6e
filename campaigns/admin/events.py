"""Mail events in the admin: bounces, complaints, delays and unreadable reports that
came in after sending (SPEC 13). Records of what was reported: browse, never edit."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter
from unfold.decorators import action, display

from campaigns.models import MailEvent

KIND_VARIANTS = {
    "hard_bounce": "danger",
    "complaint": "danger",
    "soft_bounce": "warning",
    "blocked": "warning",
    "delayed": "info",
    "unparsed": "default",
}


@admin.register(MailEvent)
class MailEventAdmin(ModelAdmin):
    list_display = (
        "id",
        "kind_badge",
        "email",
        "burst_link",
        "matched",
        "source",
        "occurred_at",
        "received_at",
    )
    list_display_links = ("id", "kind_badge")
    list_filter = (("kind", ChoicesDropdownFilter), "source", "matched_by")
    list_filter_submit = True
    search_fields = ("email",)
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-id",)
    fields = (
        "kind",
        "source",
        "email",
        "delivery_link",
        "member_link",
        "matched_by",
        "occurred_at",
        "received_at",
        "dedup_key",
        "diagnostic_text",
        "raw_text",
    )
    readonly_fields = fields
    # A bounce that came by other means (saved from a mail client): the upload page.
    actions_list = ["upload_report"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MailEvent | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[MailEvent]:
        # The raw report is only read on an event's own page.
        queryset = super().get_queryset(request).select_related("delivery__burst")
        return queryset.defer("delivery__burst__body", "delivery__burst__html_body")

    @action(
        description="Upload a bounce (.eml)",
        url_path="upload-report",
        icon="upload_file",
        permissions=["upload"],
    )
    def upload_report(self, request: HttpRequest) -> HttpResponseRedirect:
        return redirect("bounce_upload")

    def has_upload_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.add_mailevent")  # what the upload page asks

    @display(description="Kind", ordering="kind", label=KIND_VARIANTS)
    def kind_badge(self, event: MailEvent) -> tuple[str, str]:
        return event.kind, event.get_kind_display()

    @display(description="Burst")
    def burst_link(self, event: MailEvent) -> str:
        if event.delivery is None:
            return "—"
        burst = event.delivery.burst
        url = reverse("admin:campaigns_emailburst_change", args=[burst.pk])
        return format_html(
            '<a class="text-primary-600 dark:text-primary-500" href="{}">{}</a>', url, burst.display_name
        )

    @display(description="Matched by", ordering="matched_by")
    def matched(self, event: MailEvent) -> str:
        return event.get_matched_by_display()

    @display(description="Delivery")
    def delivery_link(self, event: MailEvent) -> str:
        if event.delivery_id is None:
            return "Not matched to a delivery: recorded only, nobody was suppressed."
        url = reverse("admin:campaigns_delivery_change", args=[event.delivery_id])
        return format_html('<a href="{}">{}</a>', url, event.delivery)

    @display(description="Member")
    def member_link(self, event: MailEvent) -> str:
        if event.member_id is None:
            return "—"
        url = reverse("admin:members_member_change", args=[event.member_id])
        return format_html('<a href="{}">member {}</a>', url, event.member_id)

    @display(description="Diagnostic")
    def diagnostic_text(self, event: MailEvent) -> str:
        return format_html('<pre class="whitespace-pre-wrap break-all">{}</pre>', event.diagnostic or "—")

    @display(description="Report as received")
    def raw_text(self, event: MailEvent) -> str:
        return format_html('<pre class="whitespace-pre-wrap break-all text-xs">{}</pre>', event.raw)
