"""Members in the admin: search, filters, badges, CSV/XLSX import (the pages of
members.admin.import_views) and export, bulk subscription actions, and each member's page.

A member's page is about the member: a "Profile" tab (names, address, verification and
the subscription switch) and the delivery timeline under it, every try of each delivery
included. Sign-in and rights are on a second tab: "Account" for superusers (password,
active, staff, superuser, groups, permissions, dates), "Sign-in" for other staff, who
are never shown rights fields.

Rights (members.services): a non-superuser is never offered is_staff,
is_superuser, groups or permissions, nor the password of a staff user or a
superuser, whose username, email and is_active they see read-only; they cannot
change a superuser at all (view only), delete a staff user or a superuser (here or
with "Delete selected"), or open a staff account's password page (403). Everyone's
own password page is the site's password change form, which asks for the current
password. A non-staff member's password may be set by staff with the change
permission."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.translation import ngettext
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import BooleanRadioFilter
from unfold.contrib.import_export.forms import ExportForm
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserCreationForm

from campaigns.services import burst_draft_for_members
from common.errors import Forbidden, ServiceError
from members import selectors, services
from members.admin.filters import JoinedDateRangeFilter, MailingListFilter, SubscribedFilter
from members.admin.forms import MemberChangeForm
from members.admin.import_views import MemberImportMixin
from members.admin.timeline import timeline_context
from members.models import Member
from members.resources import MemberResource

# Locked fields a non-superuser is not even shown; the other locked ones are read-only.
NOT_OFFERED = frozenset({"password", *services.RIGHTS_FIELDS})

Fields = tuple[str | tuple[str, ...], ...]
PROFILE_FIELDS: Fields = (
    "username",
    "email",
    ("first_name", "middle_name", "last_name"),
    "birth_date",
    "is_verified",
    "subscribed",
    "lists_display",
)
# What a superuser sees on the second tab.
ACCOUNT_FIELDS: Fields = (
    "password",
    "is_active",
    ("is_staff", "is_superuser"),
    "groups",
    "user_permissions",
    ("last_login", "date_joined"),
)
# What other staff see there: the sign-in fields the rights rules let them see.
SIGN_IN_FIELDS: Fields = ("password", "is_active", ("last_login", "date_joined"))


def tab(title: str, fields: Fields) -> tuple[str, dict[str, Any]]:
    return (title, {"classes": ["tab"], "fields": fields})


def without(fields: Fields, hidden: frozenset[str]) -> Fields:
    """``fields`` less the ``hidden`` ones, rows (tuples) included; emptied rows dropped."""
    kept: list[str | tuple[str, ...]] = []
    for item in fields:
        if isinstance(item, str):
            if item not in hidden:
                kept.append(item)
        elif row := tuple(name for name in item if name not in hidden):
            kept.append(row)
    return tuple(kept)


class ExportModelAdmin(ExportMixin, admin.ModelAdmin):
    """django-import-export's export only: the import is members.admin.import_views'."""


@admin.register(Member)
class MemberAdmin(MemberImportMixin, BaseUserAdmin, ModelAdmin, ExportModelAdmin):
    form = MemberChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    resource_classes = [MemberResource]
    export_form_class = ExportForm
    formats = [CSV, XLSX]
    export_formats = [CSV, XLSX]

    list_display = (
        "display_member",
        "username",
        "subscription_badge",
        "verified_badge",
        "account_badge",
        "date_joined",
    )
    list_display_links = ("display_member",)
    list_filter = (
        ("is_staff", BooleanRadioFilter),
        ("is_verified", BooleanRadioFilter),
        ("is_active", BooleanRadioFilter),
        SubscribedFilter,
        MailingListFilter,
        ("date_joined", JoinedDateRangeFilter),
    )
    list_filter_submit = True
    search_fields = ("email", "username", "first_name", "last_name")
    search_help_text = "Search by name, username or email"
    ordering = ("id",)
    list_per_page = 50
    actions = [
        "mark_verified",
        "unsubscribe",
        "resubscribe",
        "add_to_list",
        "remove_from_list",
        "new_burst_to_selected",
    ]
    change_form_outer_before_template = "members/admin/delivery_summary.html"
    change_form_outer_after_template = "members/admin/delivery_timeline.html"
    # A superuser's view; get_fieldsets gives other staff theirs.
    fieldsets = (tab("Profile", PROFILE_FIELDS), tab("Account", ACCOUNT_FIELDS))
    # Records, not input: set by logins, sign-up and the subscription actions (and an
    # edited date could be one the database cannot hold in another time zone).
    readonly_fields = ("last_login", "date_joined", "unsubscribed_at", "lists_display")
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )

    # --- columns ---------------------------------------------------------------------

    @display(description="Member", header=True, ordering="last_name")
    def display_member(self, member: Member) -> list[str]:
        name = member.get_full_name()
        initials = "".join(p[0] for p in (member.first_name, member.last_name) if p) or member.email[:1]
        return [name or member.email, member.email if name else "", initials.upper()]

    @display(description="Subscription", label={"Subscribed": "success", "Unsubscribed": "warning"})
    def subscription_badge(self, member: Member) -> str:
        return "Subscribed" if member.unsubscribed_at is None else "Unsubscribed"

    @display(description="Verified", label={"Verified": "success", "Unverified": "default"})
    def verified_badge(self, member: Member) -> str:
        return "Verified" if member.is_verified else "Unverified"

    @display(
        description="Account",
        label={"Inactive": "danger", "Superuser": "primary", "Staff": "info", "Member": "default"},
    )
    def account_badge(self, member: Member) -> str:
        if not member.is_active:
            return "Inactive"
        if member.is_superuser:
            return "Superuser"
        if member.is_staff:
            return "Staff"
        return "Member"

    # --- bulk actions ------------------------------------------------------------------

    @action(description="Mark selected members as verified", permissions=["change"])
    def mark_verified(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        count = services.members_mark_verified(members=queryset)
        self.message_user(
            request,
            ngettext("%d member marked verified.", "%d members marked verified.", count) % count,
            messages.SUCCESS,
        )

    @action(description="Unsubscribe selected members", permissions=["change"])
    def unsubscribe(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        count = services.members_unsubscribe(members=queryset)
        self.message_user(
            request,
            ngettext("%d member unsubscribed.", "%d members unsubscribed.", count) % count,
            messages.SUCCESS,
        )

    @action(description="Resubscribe selected members", permissions=["change"])
    def resubscribe(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        count = services.members_resubscribe(members=queryset)
        self.message_user(
            request,
            ngettext("%d member resubscribed.", "%d members resubscribed.", count) % count,
            messages.SUCCESS,
        )

    @action(description="Add to list…", permissions=["change"])
    def add_to_list(self, request: HttpRequest, queryset: QuerySet[Member]) -> TemplateResponse | None:
        return self._list_action(request, queryset, adding=True)

    @action(description="Remove from list…", permissions=["change"])
    def remove_from_list(self, request: HttpRequest, queryset: QuerySet[Member]) -> TemplateResponse | None:
        return self._list_action(request, queryset, adding=False)

    def _list_action(
        self, request: HttpRequest, queryset: QuerySet[Member], *, adding: bool
    ) -> TemplateResponse | None:
        """Choose the list on a page of its own, then add (or remove) every selected
        member in one statement, "select all" across pages included."""
        chosen, error = request.POST.get("mailing_list", ""), ""
        if "apply" in request.POST:
            try:
                list_id = int(chosen)
                if adding:
                    count = services.list_members_add(list_id=list_id, members=queryset)
                else:
                    count = services.list_members_remove(list_id=list_id, members=queryset)
            except (ValueError, ServiceError) as exc:
                error = getattr(exc, "message", "") or "Choose a list."
            else:
                name = selectors.mailing_lists().filter(pk=list_id).values_list("name", flat=True).first()
                done = "added to" if adding else "removed from"
                self.message_user(
                    request,
                    ngettext("%(n)d member %(done)s “%(name)s”.", "%(n)d members %(done)s “%(name)s”.", count)
                    % {"n": count, "done": done, "name": name},
                    messages.SUCCESS,
                )
                return None
        select_across = request.POST.get("select_across") == "1"
        selected = [] if select_across else request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        n = queryset.count() if select_across else len(selected)
        verb = "Add" if adding else "Remove"
        return TemplateResponse(
            request,
            "members/admin/list_action.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"{verb} {n:,} member{'s' if n != 1 else ''} {'to' if adding else 'from'} a list",
                "question": (
                    "Members already on the list stay as they are."
                    if adding
                    else "Members not on the list are left alone. Nobody is deleted."
                ),
                "button": "Add to the list" if adding else "Remove from the list",
                "lists": list(selectors.mailing_lists()[:500]),
                "chosen": chosen,
                "error": error,
                "action_name": "add_to_list" if adding else "remove_from_list",
                "select_across": select_across,
                "selected": selected,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "changelist_url": reverse("admin:members_member_changelist") + _preserved_filters(request),
                "add_list_url": reverse("admin:members_mailinglist_add"),
            },
        )

    @action(description="New burst to the selected members", permissions=["view"])
    def new_burst_to_selected(self, request: HttpRequest, queryset: QuerySet[Member]) -> HttpResponse:
        if not request.user.has_perm("campaigns.add_emailburst"):
            self.message_user(request, "You may not create bursts.", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        burst = burst_draft_for_members(members=queryset, created_by=request.user)
        self.message_user(
            request,
            f"A new draft addressed to the {burst.recipients.count():,} selected members: "
            "write its subject and body, then send or schedule it.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:campaigns_emailburst_change", args=[burst.pk]))

    # --- member page ---------------------------------------------------------------------

    @display(description="Mailing lists")
    def lists_display(self, member: Member) -> str:
        lists = selectors.member_lists(member_id=member.pk) if member.pk else []
        if not lists:
            return "On no list."
        return format_html_join(
            ", ",
            '<a class="text-primary-600 dark:text-primary-500" href="{}">{}</a>',
            ((reverse("admin:members_mailinglist_change", args=[m.pk]), m.name) for m in lists),
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), **self.delivery_timeline(request, object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    def delivery_timeline(self, request: HttpRequest, object_id: str) -> dict[str, Any]:
        try:
            member_id = int(object_id)
        except (TypeError, ValueError):
            return {}
        return timeline_context(member_id)

    # --- rights -----------------------------------------------------------------------------

    def locked_fields(self, request: HttpRequest, obj: Member | None) -> frozenset[str]:
        return services.member_locked_fields(actor=request.user, member=obj)  # type: ignore[arg-type]

    def get_fieldsets(self, request: HttpRequest, obj: Member | None = None) -> Any:
        if obj is None:
            return super().get_fieldsets(request, obj)  # the add form: username, email, password
        second = ("Account", ACCOUNT_FIELDS) if request.user.is_superuser else ("Sign-in", SIGN_IN_FIELDS)
        # The rights rules decide again: a locked field not offered is left out wherever it is.
        hidden = self.locked_fields(request, obj) & NOT_OFFERED
        return tuple(
            tab(title, kept)
            for title, fields in (("Profile", PROFILE_FIELDS), second)
            if (kept := without(fields, hidden))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Member | None = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return readonly
        return readonly + tuple(sorted(self.locked_fields(request, obj) - NOT_OFFERED))

    def has_change_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or services.member_change_allowed(actor=request.user, member=obj))

    def has_delete_permission(self, request: HttpRequest, obj: Member | None = None) -> bool:
        # Also what "Delete selected" asks of each selected member.
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or services.member_delete_allowed(actor=request.user, member=obj))

    def save_model(self, request: HttpRequest, obj: Member, form: ModelForm, change: bool) -> None:
        # The forms offer nothing locked; this holds even if a form ever did. The admin's
        # change view runs in a transaction: the row stays locked until the save.
        stored = Member.objects.select_for_update().get(pk=obj.pk) if change else None
        try:
            services.member_change_check(actor=request.user, member=stored, changes=form.changed_data)
        except Forbidden as exc:
            raise PermissionDenied(exc.message) from None
        if stored is not None:
            # Saving writes every column: keep the stored values of what this user may not
            # change, so a superuser's change committed since this request read the member
            # is not undone.
            for name in self.locked_fields(request, stored) - {"groups", "user_permissions"}:
                setattr(obj, name, getattr(stored, name))
            # A record, moved only by the subscription services below (or the member's link
            # meanwhile): never written back as this request first read it.
            obj.unsubscribed_at = stored.unsubscribed_at
        super().save_model(request, obj, form, change)
        if change and "subscribed" in form.changed_data:
            self.save_subscription(obj, subscribed=form.cleaned_data["subscribed"])

    def save_subscription(self, member: Member, *, subscribed: bool) -> None:
        members = Member.objects.filter(pk=member.pk)
        if subscribed:
            services.members_resubscribe(members=members)
        else:
            services.members_unsubscribe(members=members)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        member = self.get_object(request, unquote(id))
        if member is not None and member.pk == request.user.pk:
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:password_change"))
        if member is not None and "password" in self.locked_fields(request, member):
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


def _preserved_filters(request: HttpRequest) -> str:
    """The changelist's filters, so the list page comes back as it was."""
    query = request.GET.urlencode()
    return f"?{query}" if query else ""
