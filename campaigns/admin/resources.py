"""Export of a burst's delivery report (CSV / XLSX), formula-escaped."""

from __future__ import annotations

from django.db.models import QuerySet
from import_export import fields, resources, widgets

from campaigns.models import Delivery
from members.resources import FormulaEscapingMixin


class DeliveryResource(FormulaEscapingMixin, resources.ModelResource):
    burst_id = fields.Field(attribute="burst_id", column_name="burst_id")
    burst = fields.Field(attribute="burst__display_name", column_name="burst")
    subject = fields.Field(attribute="burst__subject", column_name="burst_subject")
    member_id = fields.Field(attribute="member_id", column_name="member_id")
    name = fields.Field(column_name="name")
    email = fields.Field(attribute="email", column_name="email")
    status = fields.Field(attribute="status", column_name="status")
    attempts = fields.Field(attribute="attempts", column_name="attempts", widget=widgets.IntegerWidget())
    smtp_reply = fields.Field(attribute="error_message", column_name="smtp_reply")
    sent_at = fields.Field(attribute="sent_at", column_name="sent_at", widget=widgets.DateTimeWidget())
    updated_at = fields.Field(
        attribute="updated_at", column_name="updated_at", widget=widgets.DateTimeWidget()
    )

    class Meta:
        model = Delivery
        fields = (
            "id",
            "burst_id",
            "burst",
            "subject",
            "member_id",
            "name",
            "email",
            "status",
            "attempts",
            "smtp_reply",
            "sent_at",
            "updated_at",
        )
        export_order = fields
        chunk_size = 2000

    def dehydrate_name(self, delivery: Delivery) -> str:
        member = delivery.member
        return member.get_full_name() if member is not None else ""

    @staticmethod
    def report_queryset(burst_id: int) -> QuerySet[Delivery]:
        return (
            Delivery.objects.filter(burst_id=burst_id)
            .select_related("burst", "member")
            .only(
                "id",
                "burst_id",
                "burst__name",
                "burst__subject",
                "member_id",
                "member__first_name",
                "member__middle_name",
                "member__last_name",
                "email",
                "status",
                "attempts",
                "error_message",
                "sent_at",
                "updated_at",
            )
            .order_by("id")
        )
