"""Import and export of members (django-import-export).

The export is this module's; the import shared by the admin and `manage.py import_members`
is members.importing (this resource's import is what the admin used before it).

Rows are matched to existing members by email, case-insensitively; the model is
validated (`clean_model_instances`), so an invalid email or a duplicate username
makes that row *invalid* with a reason instead of being imported. The admin lets
staff confirm the valid rows while the invalid ones are left out; any other failure
rolls the whole import back (`use_transactions`).

An import never changes a staff user or a superuser, whoever imports: a file is no
way around the rights rule of members.services. A row whose address is theirs, in
any case, is refused as invalid with the reason, and no column can set ``is_staff``,
``is_superuser``, groups, permissions or a password (those are not import fields;
``is_staff`` is export-only).

Exported text cells that a spreadsheet would run as a formula (starting with
``= + - @``, tab or CR) get a leading ``'`` (OWASP CSV injection); the same quote is
taken off again on import, so an export can be edited and imported back.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from import_export import fields, resources, widgets
from import_export.instance_loaders import BaseInstanceLoader

from members.importing import STAFF_ROW_REFUSED, escape_formula, unescape_formula
from members.models import Member
from members.services import member_is_privileged

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


class StrictBooleanWidget(widgets.BooleanWidget):
    """Accepts 1/0, true/false, yes/no, y/n, x (any case); refuses anything else
    instead of silently reading it as False."""

    TRUE = {"1", "true", "yes", "y", "x", "t", "on"}
    FALSE = {"0", "false", "no", "n", "f", "off"}

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> bool | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            if value in (0, 1):
                return bool(value)
            raise ValueError(f"{value!r} is not a yes/no value (use 1/0, yes/no or true/false)")
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise ValueError(f"{value!r} is not a yes/no value (use 1/0, yes/no or true/false)")

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if value is None:
            return ""
        return "yes" if value else "no"


class EmailInstanceLoader(BaseInstanceLoader):
    """Finds the member whose email matches the row's, ignoring case."""

    def get_instance(self, row: dict[str, Any]) -> Member | None:
        email = str(row.get("email") or "").strip()
        if not email:
            return None
        return self.resource.get_queryset().filter(email__iexact=email).order_by("pk").first()


# Optional columns whose blank cell means "leave as it is" rather than "empty".
KEEP_IF_BLANK = ("username", "birth_date", "is_verified", "is_active")
BOOLEAN_COLUMNS = ("is_verified", "is_active")


class MemberResource(FormulaEscapingMixin, resources.ModelResource):
    staff_emails: frozenset[str] = frozenset()  # casefolded; filled by before_import

    email = fields.Field(attribute="email", column_name="email")
    username = fields.Field(attribute="username", column_name="username")
    is_verified = fields.Field(
        attribute="is_verified", column_name="is_verified", widget=StrictBooleanWidget()
    )
    is_active = fields.Field(attribute="is_active", column_name="is_active", widget=StrictBooleanWidget())
    # Export only: never changed by an import.
    is_staff = fields.Field(
        attribute="is_staff", column_name="is_staff", widget=StrictBooleanWidget(), readonly=True
    )
    subscribed = fields.Field(column_name="subscribed", readonly=True)
    unsubscribed_at = fields.Field(
        attribute="unsubscribed_at",
        column_name="unsubscribed_at",
        widget=widgets.DateTimeWidget(),
        readonly=True,
    )
    date_joined = fields.Field(
        attribute="date_joined", column_name="date_joined", widget=widgets.DateTimeWidget(), readonly=True
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
        import_id_fields = ("email",)
        instance_loader_class = EmailInstanceLoader
        clean_model_instances = True
        use_transactions = True
        skip_unchanged = True
        report_skipped = True

    def get_queryset(self) -> QuerySet[Member]:
        return Member.objects.order_by("pk")

    def dehydrate_subscribed(self, member: Member) -> str:
        return "yes" if member.unsubscribed_at is None else "no"

    def before_import(self, dataset: Any, **kwargs: Any) -> None:
        # Compared in Python with casefold(): SQLite's iexact folds ASCII only.
        staff = Member.objects.filter(Q(is_staff=True) | Q(is_superuser=True))
        self.staff_emails = frozenset(email.casefold() for email in staff.values_list("email", flat=True))
        # "Email", " E-mail " and "first name" all name the expected columns.
        aliases = {"e_mail": "email", "e-mail": "email", "mail": "email"}
        headers = []
        for header in dataset.headers or []:
            name = str(header or "").strip().lower().replace(" ", "_")
            headers.append(aliases.get(name, name))
        dataset.headers = headers

    def before_import_row(self, row: dict[str, Any], **kwargs: Any) -> None:
        for key in list(row):
            value = row[key]
            if isinstance(value, str):
                value = unescape_formula(value.strip())
                row[key] = value
            if key in KEEP_IF_BLANK and (value is None or value == ""):
                del row[key]
        if row.get("email") is None:
            row["email"] = ""

    def after_init_instance(self, instance: Member, new: bool, row: dict[str, Any], **kwargs: Any) -> None:
        email = str(row.get("email") or "").strip()
        if (not new and member_is_privileged(member=instance)) or email.casefold() in self.staff_emails:
            # Raised here, before any column is read: the row is invalid, with the reason.
            raise ValidationError({"email": ValidationError(STAFF_ROW_REFUSED, code="staff")})
        if new:
            # Imported members sign in only after a password reset; their
            # username is their address unless the file gives one.
            instance.set_unusable_password()
            instance.username = str(row.get("email") or "").strip().lower()[:150]

    def get_import_fields(self) -> list[fields.Field]:
        # What an import reads, compares and previews: not the export-only columns.
        return [f for f in super().get_import_fields() if not f.readonly]
