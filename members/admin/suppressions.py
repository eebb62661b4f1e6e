"""Suppressed addresses in the admin: the list, a search by address, adding one by
hand (through the service) and deleting one, which makes the address mailable again."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import display

from campaigns import services
from members.models import Suppression, SuppressionReason

REASON_VARIANTS = {"hard_bounce": "danger", "complaint": "danger", "not_found": "warning", "manual": "info"}


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ("email", "note")
        help_texts = {"email": "Bursts skip this address, whichever member has it, until it is removed here."}

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


@admin.register(Suppression)
class SuppressionAdmin(ModelAdmin):
    form = SuppressionForm
    list_display = ("email", "reason_badge", "event_link", "note", "created_at", "created_by")
    list_filter = ("reason",)
    search_fields = ("email",)
    list_select_related = ("created_by",)
    ordering = ("-id",)
    list_per_page = 50
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj: Suppression | None = None) -> bool:
        return False  # a suppression is added or removed, never edited

    def get_fields(self, request: HttpRequest, obj: Suppression | None = None) -> tuple[str, ...]:
        return (
            ("email", "note")
            if obj is None
            else ("email", "reason", "event", "note", "created_at", "created_by")
        )

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        # The form checked the address and that it is not suppressed yet; the service writes.
        saved = services.suppression_add(
            email=obj.email, reason=SuppressionReason.MANUAL, note=obj.note, actor=request.user
        )
        obj.pk, obj.reason, obj.created_at, obj.created_by = (
            saved.pk,
            saved.reason,
            saved.created_at,
            saved.created_by,
        )

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        services.suppression_remove(suppression_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> None:
        for suppression_id in queryset.values_list("pk", flat=True):
            services.suppression_remove(suppression_id=suppression_id)

    @display(description="Reason", ordering="reason", label=REASON_VARIANTS)
    def reason_badge(self, suppression: Suppression) -> tuple[str, str]:
        return suppression.reason, suppression.get_reason_display()

    @display(description="Caused by")
    def event_link(self, suppression: Suppression) -> str:
        if suppression.event_id is None:
            return "—"
        url = reverse("admin:campaigns_mailevent_change", args=[suppression.event_id])
        return format_html('<a href="{}">mail event {}</a>', url, suppression.event_id)
