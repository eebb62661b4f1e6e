"""The member export (django-import-export): CSV and XLSX from the members list.

Members are imported by members.importing, the one validator the admin and
`manage.py import_members` share (this resource imports nothing any more).

Exported text cells that a spreadsheet would run as a formula (starting with
``= + - @``, tab or CR) get a leading ``'`` (OWASP CSV injection); the import takes
the same quote off again, so an export can be edited and imported back.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from import_export import fields, resources, widgets

from members.importing import STAFF_ROW_REFUSED, escape_formula, unescape_formula
from members.models import Member

__all__ = [
    "STAFF_ROW_REFUSED",
    "FormulaEscapingMixin",
    "MemberResource",
    "escape_formula",
    "unescape_formula",
]


class FormulaEscapingMixin:
    """Escapes every exported cell (mix into any Resource)."""

    def export_field(self, field: fields.Field, instance: Any, **kwargs: Any) -> Any:
        return escape_formula(super().export_field(field, instance, **kwargs))  # type: ignore[misc]


class YesNoWidget(widgets.BooleanWidget):
    """Booleans exported as yes / no (blank when unknown)."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if value is None:
            return ""
        return "yes" if value else "no"


class MemberResource(FormulaEscapingMixin, resources.ModelResource):
    email = fields.Field(attribute="email", column_name="email")
    username = fields.Field(attribute="username", column_name="username")
    is_verified = fields.Field(attribute="is_verified", column_name="is_verified", widget=YesNoWidget())
    is_active = fields.Field(attribute="is_active", column_name="is_active", widget=YesNoWidget())
    is_staff = fields.Field(attribute="is_staff", column_name="is_staff", widget=YesNoWidget())
    subscribed = fields.Field(column_name="subscribed")
    unsubscribed_at = fields.Field(
        attribute="unsubscribed_at", column_name="unsubscribed_at", widget=widgets.DateTimeWidget()
    )
    date_joined = fields.Field(
        attribute="date_joined", column_name="date_joined", widget=widgets.DateTimeWidget()
    )

    class Meta:
        model = Member
        fields = (
            "email",
            "username",
            "first_name",
            "middle_name",
            "last_name",
            "birth_date",
            "is_verified",
            "is_active",
            "is_staff",
            "subscribed",
            "unsubscribed_at",
            "date_joined",
        )
        export_order = fields

    def get_queryset(self) -> QuerySet[Member]:
        return Member.objects.order_by("pk")

    def dehydrate_subscribed(self, member: Member) -> str:
        return "yes" if member.unsubscribed_at is None else "no"
