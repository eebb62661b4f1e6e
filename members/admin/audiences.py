"""Mailing lists and segments in the admin (SPEC section 10).

Saving and deleting go through `members.services`, like the API: a name taken in any
case is a form error, and a list or segment that a burst still to be sent addresses is
not deleted (the service's message says which burst).

A segment's rules are edited as rows of field / op / value by
`members/admin/segment_rules.js`, which writes them as JSON into the rules textarea (the
field that is posted, and what is edited without JavaScript). The page shows how many
members match and a few of them, rendered with the page and refreshed by the script from
the preview view (`segment/preview/`) as the rows change. The segment list counts every
segment of a page in one query.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from unfold.admin import ModelAdmin
from unfold.decorators import display
from unfold.views import ChangeList
from unfold.widgets import INPUT_CLASSES, SELECT_CLASSES, UnfoldAdminTextareaWidget

from campaigns.models import EmailBurst, burst_display_name
from common.errors import InvalidInput, ServiceError
from members import selectors, services
from members.models import MailingList, Member, Segment
from members.segments import FIELDS, NO_VALUE_OPS, rules_clean, rules_describe

SAMPLE_SIZE = 5
# Above this many lists (or bursts) the value of a `list` (`received`) condition is typed
# as a number, with the newest ones offered as suggestions, instead of chosen in a select.
CHOICE_LIMIT = 500
EMPTY_RULES: dict[str, Any] = {"match": "all", "conditions": []}
OP_LABELS = {
    "is": "is",
    "before": "before",
    "after": "after",
    "equals": "equals",
    "contains": "contains",
    "endswith": "ends with",
    "empty": "is empty",
    "not_empty": "is not empty",
    "in": "is",
    "not_in": "is not",
    "yes": "yes",
    "no": "no",
}
# unfold's "default" button (components/button.html) and its square icon button.
SECONDARY_BUTTON_CLASSES = (
    "font-medium inline-flex items-center gap-1 rounded-default justify-center whitespace-nowrap "
    "cursor-pointer px-3 py-2 border border-base-200 bg-white shadow-xs text-important "
    "dark:border-base-700 dark:bg-transparent hover:bg-base-100/80 dark:hover:bg-base-800/80"
)
ICON_BUTTON_CLASSES = (
    "bg-white border border-base-200 cursor-pointer flex items-center h-[38px] justify-center "
    "rounded-default select-none shadow-xs shrink-0 text-base-400 text-sm w-[38px] hover:text-base-700 "
    "dark:bg-base-900 dark:border-base-700 dark:text-base-500 dark:hover:text-base-200"
)
VALUE_HELP = {
    "bool": "true or false",
    "date": '"YYYY-MM-DD"',
    "month": "1 to 12",
    "text": "text (none with empty, not_empty)",
    "list": "a list id",
    "burst": "a burst id",
}
RULES_JSON_HELP = '{"match": "all" or "any", "conditions": [{"field": …, "op": …, "value": …}, …]}'


def _capitalised(message: str) -> str:
    return message[:1].upper() + message[1:]


def _rules_message(exc: InvalidInput) -> str:
    """The service's message without its "rules: " prefix (it is shown under the rules):
    "Condition 2: unknown op 'x' for email (use ...)"."""
    return _capitalised(exc.message.removeprefix("rules: "))


def _member_name(member: Member) -> str:
    return member.get_full_name() or member.username or member.email


def _may_see_members(request: HttpRequest) -> bool:
    return request.user.has_perm("members.view_member")


def members_url(mailing_list: MailingList) -> str:
    """The members list filtered by this list (the members admin's `mailing_list` filter)."""
    return f"{reverse('admin:members_member_changelist')}?mailing_list={mailing_list.pk}"


def matching_text(count: int) -> str:
    if count == 0:
        return "No member matches"
    if count == 1:
        return "1 member matches"
    return f"{count:,} members match"


# --- what the page needs to know (read-only; selectors the members app does not have yet) --------


def segment_preview(raw: Any, *, with_sample: bool) -> dict[str, Any]:
    """How many members the rules select and the first few of them, or why the rules are
    wrong: `{"count", "sample": [{"id", "name", "email", "url"}], "error"}`. `raw` is the
    rules' JSON text, or the rules themselves. The sample (names and addresses) only
    `with_sample`: for staff who may see members."""
    if isinstance(raw, str) and not raw.strip():
        raw = None  # an emptied textarea: no condition
    try:
        rules = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        return {"count": None, "sample": [], "error": f"The rules are not valid JSON: {exc}."}
    try:
        clean = rules_clean(EMPTY_RULES if rules in (None, "", {}) else rules)
    except InvalidInput as exc:
        return {"count": None, "sample": [], "error": _rules_message(exc)}
    members = selectors.segment_members(rules=clean)
    if not clean["conditions"] and clean["match"] == "all":
        count = selectors.member_count()  # everyone: the tally, not a scan
    else:
        count = members.count()
    sample = (
        list(members.only("id", "username", "email", "first_name", "last_name")[:SAMPLE_SIZE])
        if count and with_sample
        else []
    )
    return {
        "count": count,
        "sample": [
            {
                "id": m.pk,
                "name": _member_name(m),
                "email": m.email,
                "url": reverse("admin:members_member_change", args=[m.pk]),
            }
            for m in sample
        ],
        "error": "",
    }


def _choices(rows: list[tuple[int, str]]) -> tuple[list[dict[str, Any]], bool]:
    return [{"id": pk, "label": label} for pk, label in rows[:CHOICE_LIMIT]], len(rows) > CHOICE_LIMIT


def rules_editor_config(preview_url: str) -> dict[str, Any]:
    """Everything the rows editor offers: fields and their ops, the lists and the newest
    bursts, and unfold's classes so that what the script builds looks like the admin."""
    lists, lists_truncated = _choices(
        list(selectors.mailing_lists().values_list("id", "name")[: CHOICE_LIMIT + 1])
    )
    bursts, bursts_truncated = _choices(
        [
            (pk, f"{burst_display_name(name=name, subject=subject, burst_id=pk)} (#{pk})")
            for pk, name, subject in EmailBurst.objects.order_by("-id").values_list("id", "name", "subject")[
                : CHOICE_LIMIT + 1
            ]
        ]
    )
    return {
        "fields": [
            {
                "name": name,
                "label": _capitalised(spec.label),
                "kind": spec.kind,
                "ops": [{"value": op, "label": OP_LABELS.get(op, op)} for op in spec.ops],
            }
            for name, spec in FIELDS.items()
        ],
        "noValueOps": sorted(NO_VALUE_OPS),
        "lists": lists,
        "listsTruncated": lists_truncated,
        "bursts": bursts,
        "burstsTruncated": bursts_truncated,
        "previewUrl": preview_url,
        "classes": {
            "select": " ".join(SELECT_CLASSES),
            "input": " ".join(INPUT_CLASSES),
            "secondaryButton": SECONDARY_BUTTON_CLASSES,
            "iconButton": ICON_BUTTON_CLASSES,
        },
    }


# --- forms ---------------------------------------------------------------------------------------------


class AudienceForm(forms.ModelForm):
    """Name checks as the services make them, said on the form: a name taken in any case."""

    def clean_name(self) -> str:
        try:
            return services.audience_name_check(
                self._meta.model, self.cleaned_data["name"], exclude_pk=self.instance.pk
            )
        except ServiceError as exc:
            raise ValidationError(exc.message[:1].upper() + exc.message[1:] + ".") from None


class MailingListForm(AudienceForm):
    class Meta:
        model = MailingList
        fields = ("name", "description")
        widgets = {"description": UnfoldAdminTextareaWidget(attrs={"rows": 3})}


class RulesField(forms.JSONField):
    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class SegmentRulesWidget(UnfoldAdminTextareaWidget):
    """The rules' JSON textarea inside the rows editor (`segment_rules.js`). The admin
    sets `config` (`rules_editor_config`) before the page is rendered."""

    template = "members/admin/segment_rules_widget.html"

    class Media:
        css = {"all": ("members/admin/segment_rules.css",)}
        js = ("members/admin/segment_rules.js",)

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"rows": 12, "spellcheck": "false", "class": "font-mono", **(attrs or {})})
        self.config: dict[str, Any] = {}

    def render(self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None) -> SafeString:
        return render_to_string(
            self.template,
            {
                "textarea": super().render(name, value, attrs, renderer),
                "config": self.config,
                "json_help": RULES_JSON_HELP,
                "fields": [
                    (field, ", ".join(spec.ops), VALUE_HELP.get(spec.kind, ""))
                    for field, spec in FIELDS.items()
                ],
            },
        )


class SegmentForm(AudienceForm):
    rules = RulesField(required=False, widget=SegmentRulesWidget)

    class Meta:
        model = Segment
        fields = ("name", "description", "rules")
        widgets = {"description": UnfoldAdminTextareaWidget(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and not self.initial.get("rules"):
            self.initial["rules"] = EMPTY_RULES

    def clean_rules(self) -> dict[str, Any]:
        rules = self.cleaned_data.get("rules")
        try:
            return rules_clean(EMPTY_RULES if rules in (None, {}) else rules)
        except InvalidInput as exc:
            raise ValidationError(_rules_message(exc)) from None


# --- admin pages ---------------------------------------------------------------------------------------


def _copy_saved(saved: Model, obj: Model) -> None:
    """The admin goes on with `obj` (its messages, its log entry, the redirect)."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


class AudienceAdmin(ModelAdmin):
    """What lists and segments share: saving and deleting through the services."""

    search_fields = ("name",)
    search_help_text = "Search by name"
    list_per_page = 50
    warn_unsaved_form = True

    def delete_service(self, pk: int) -> None:
        """Delete through the app's service (which refuses what a burst still needs)."""
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        self.delete_service(obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        refused: dict[str, list[str]] = defaultdict(list)
        for obj in queryset.order_by("pk"):
            try:
                self.delete_service(obj.pk)
            except ServiceError as exc:
                refused[exc.message].append(str(obj))
        for reason, names in refused.items():
            messages.warning(request, f"Not deleted ({reason}): {', '.join(names)}.")

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as exc:  # the delete's transaction was rolled back
            self.message_user(request, f"Not deleted: {exc.message}.", messages.ERROR)
            opts = self.model._meta
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
            )


@admin.register(MailingList)
class MailingListAdmin(AudienceAdmin):
    form = MailingListForm
    list_display = ("name", "members_column", "description_column", "created_column")
    list_display_links = ("name",)
    readonly_fields = ("members_line",)
    ordering = ("name", "id")

    def delete_service(self, pk: int) -> None:
        services.mailing_list_delete(list_id=pk)

    def get_fields(self, request: HttpRequest, obj: MailingList | None = None) -> tuple[str, ...]:
        return ("name", "description", "members_line") if obj is not None else ("name", "description")

    @display(description="Members", ordering="member_count")
    def members_column(self, mailing_list: MailingList) -> str:
        # The counter the triggers keep: no COUNT query.
        return format_html('<a href="{}">{}</a>', members_url(mailing_list), f"{mailing_list.member_count:,}")

    @display(description="Created", ordering="created_at")
    def created_column(self, mailing_list: MailingList) -> str:
        return f"{timezone.localtime(mailing_list.created_at):%Y-%m-%d %H:%M}"

    @display(description="Description")
    def description_column(self, mailing_list: MailingList) -> str:
        text = " ".join(mailing_list.description.split())
        return text if len(text) <= 80 else text[:79] + "…"

    @display(description="Members")
    def members_line(self, mailing_list: MailingList) -> str:
        count = mailing_list.member_count
        return format_html(
            '{} — <a href="{}" class="text-primary-600 underline dark:text-primary-500">view them</a>',
            "1 member" if count == 1 else f"{count:,} members",
            members_url(mailing_list),
        )

    def save_model(self, request: HttpRequest, obj: MailingList, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            saved = services.mailing_list_update(
                list_id=obj.pk, name=data["name"], description=data.get("description") or ""
            )
        else:
            saved = services.mailing_list_create(name=data["name"], description=data.get("description") or "")
        _copy_saved(saved, obj)


class SegmentChangeList(ChangeList):
    """Counts the members of every segment of the page in one query, once."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        page = list(self.result_list)  # the queryset keeps these very objects for the template
        counts = selectors.segment_counts(page)
        for segment in page:
            segment.matching_count = counts.get(segment.pk)


@admin.register(Segment)
class SegmentAdmin(AudienceAdmin):
    form = SegmentForm
    list_display = ("name", "rules_column", "members_column", "updated_column")
    list_display_links = ("name",)
    readonly_fields = ("matching_members", "rules_in_words")
    ordering = ("name", "id")

    def delete_service(self, pk: int) -> None:
        services.segment_delete(segment_id=pk)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SegmentChangeList

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None) -> list:
        # Staff who may only look see the rules in words, not an editor they cannot use.
        rules = "rules" if self.has_change_permission(request, obj) or obj is None else "rules_in_words"
        return [
            (None, {"fields": ("name", "description")}),
            ("Audience", {"fields": (rules, "matching_members")}),
        ]

    @display(description="Rules")
    def rules_column(self, segment: Segment) -> str:
        return _capitalised(rules_describe(segment.rules))

    @display(description="Members")
    def members_column(self, segment: Segment) -> str:
        count = getattr(segment, "matching_count", None)
        return "—" if count is None else f"{count:,}"

    @display(description="Updated", ordering="updated_at")
    def updated_column(self, segment: Segment) -> str:
        return f"{timezone.localtime(segment.updated_at):%Y-%m-%d %H:%M}"

    @display(description="Rules")
    def rules_in_words(self, segment: Segment) -> str:
        return _capitalised(rules_describe(segment.rules or EMPTY_RULES))

    @display(description="Matching members")
    def matching_members(self, segment: Segment) -> SafeString:
        preview = getattr(segment, "preview", None) or segment_preview(
            segment.rules or EMPTY_RULES, with_sample=False
        )
        return render_to_string(
            "members/admin/segment_preview.html",
            {**preview, "count_text": "" if preview["error"] else matching_text(preview["count"])},
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Segment | None = None,
    ) -> HttpResponse:
        form = context["adminform"].form
        # The count and sample of the rules the page shows: those posted when a save
        # was refused, else the stored ones.
        form.instance.preview = segment_preview(
            form.data.get("rules", "") if form.is_bound else form.instance.rules or EMPTY_RULES,
            with_sample=_may_see_members(request),
        )
        if "rules" in form.fields:
            form.fields["rules"].widget.config = rules_editor_config(reverse("admin:members_segment_preview"))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Segment, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        values = {"name": data["name"], "description": data.get("description") or "", "rules": data["rules"]}
        if change:
            saved = services.segment_update(segment_id=obj.pk, **values)
        else:
            saved = services.segment_create(**values)
        _copy_saved(saved, obj)

    def get_urls(self) -> list[URLPattern]:
        # Before the model's own URLs, whose "<path:object_id>/" would take "preview/".
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="members_segment_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The live count and sample of the rows editor: the rules as JSON in `rules` (a
        POST with the page's CSRF token, or a GET parameter). A bad rule is a 422 whose
        `error` names the condition."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        preview = segment_preview(
            (request.POST if request.method == "POST" else request.GET).get("rules", ""),
            with_sample=_may_see_members(request),
        )
        return JsonResponse(preview, status=422 if preview["error"] else 200)
