"""Bursts in the admin: the list, the burst page with its report, and the actions.

Every change goes through `campaigns.services` (the same functions as the API),
always by POST: the bulk actions of the list are POST forms, and the burst page's
buttons (unfold `actions_detail`, which are links) open a confirmation page that
POSTs. Sending, scheduling, pausing, resuming, cancelling and retrying need the
`campaigns.send_emailburst` permission: without it the buttons are hidden and the
URLs answer 403. Which buttons a burst shows follows `campaigns.states`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateTimeFilter
from unfold.decorators import action, display
from unfold.enums import ActionVariant
from unfold.views import ChangeList

from campaigns import selectors
from campaigns.admin import views
from campaigns.admin.changelist import CheckedChangeList
from campaigns.admin.forms import (
    AttachmentForm,
    AttachmentFormSet,
    EmailBurstForm,
    ScheduleForm,
    zone_description,
)
from campaigns.admin.report import report_context
from campaigns.models import BurstStatus, EmailAttachment, EmailBurst, burst_display_name
from campaigns.services import (
    AUDIENCE_FIELDS,
    RETRYABLE_STATUSES,
    SEND_PERMISSION,
    attachment_add,
    attachment_delete,
    burst_cancel,
    burst_change_allowed,
    burst_create,
    burst_delete,
    burst_duplicate,
    burst_schedule,
    burst_send,
    burst_update,
)
from campaigns.states import BurstAction
from campaigns.vocabulary import (
    BURST_STATUS_LABELS,
    BURST_STATUS_VARIANTS,
    FIGURE_HELP,
    FIGURE_LABELS,
    NOTHING,
    format_count,
    format_percent,
)
from common.errors import IllegalState, InvalidInput, NotFound, ServiceError

# Above this many chosen recipients the page shows a count instead of the
# autocomplete (which would render every chosen member).
RECIPIENT_WIDGET_LIMIT = 500

# The burst page's buttons that are offered only where their action is legal
# (pre-flight: where sending is).
BUTTON_ACTIONS: dict[str, str] = {
    "schedule_burst": BurstAction.SCHEDULE,
    "send_burst": BurstAction.SEND,
    "pause_burst": BurstAction.PAUSE,
    "resume_burst": BurstAction.RESUME,
    "cancel_burst": BurstAction.CANCEL,
    "retry_burst": BurstAction.RETRY,
    "preflight_burst": BurstAction.SEND,
}


def _may_change(request: HttpRequest, burst: EmailBurst | None) -> bool:
    """A draft or scheduled burst, and a scheduled one only with the send permission."""
    return burst is None or (burst.is_editable and burst_change_allowed(burst=burst, actor=request.user))


class AttachmentInline(TabularInline):
    model = EmailAttachment
    form = AttachmentForm
    formset = AttachmentFormSet
    extra = 0
    fields = ("file", "filename", "content_type", "size_display")
    readonly_fields = ("filename", "content_type", "size_display")
    verbose_name_plural = "attachments"

    @display(description="Size")
    def size_display(self, attachment: EmailAttachment) -> str:
        if not attachment.pk:
            return "—"
        size = attachment.size
        for unit in ("bytes", "KB", "MB"):
            if size < 1024 or unit == "MB":
                return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
            size /= 1024
        return ""

    def has_change_permission(self, request: HttpRequest, obj: EmailBurst | None = None) -> bool:
        return super().has_change_permission(request, obj) and _may_change(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: EmailBurst | None = None) -> bool:
        return super().has_add_permission(request, obj) and _may_change(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: EmailBurst | None = None) -> bool:
        return super().has_delete_permission(request, obj) and _may_change(request, obj)


@admin.register(EmailBurst)
class EmailBurstAdmin(ModelAdmin):
    form = EmailBurstForm
    inlines = [AttachmentInline]
    list_display = (
        "name_column",
        "status_badge",
        "recipients_column",
        "sent_column",
        "failed_column",
        "success_rate_column",
        "when_column",
        "created_at",
    )
    list_display_links = ("name_column",)
    list_filter = (("status", ChoicesDropdownFilter), "all_members", ("created_at", RangeDateTimeFilter))
    list_filter_submit = True
    search_fields = ("name", "subject")
    list_per_page = 50
    autocomplete_fields = ("recipients", "lists", "segments", "exclude_lists", "exclude_segments")
    readonly_fields = (
        "status_label",
        "scheduled_at",
        "started_at",
        "finished_at",
        "pause_reason",
        "created_by",
        "created_at",
        "recipients_summary",
        "audience_count",
        "audience_summary",
    )
    actions = ["send_now", "schedule_selected", "cancel_selected", "duplicate_as_draft"]
    # The preview page holds the test form: in plain sight, not in the dropdown.
    actions_detail = [
        "preview_burst",
        {
            "title": "Check",
            "icon": "fact_check",
            "items": ["preflight_burst", "send_test_burst"],
        },
        "schedule_burst",
        "send_burst",
        "pause_burst",
        "resume_burst",
        "cancel_burst",
        "retry_burst",
    ]
    change_form_outer_before_template = "campaigns/admin/burst_report.html"

    class Media:
        js = ("campaigns/admin/audience_count.js",)

    warn_unsaved_form = True

    # --- queryset, permissions ---------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailBurst]:
        return selectors.annotate_outcomes(super().get_queryset(request))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CheckedChangeList

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> EmailBurst | None:
        cache: dict[int, EmailBurst] = request.__dict__.setdefault("_emailer_bursts", {})
        if from_field is None and str(object_id).isdigit() and int(object_id) in cache:
            cached = cache[int(object_id)]
            if hasattr(cached, "recipient_count"):
                return cached
        burst = super().get_object(request, object_id, from_field)
        if burst is not None:
            cache[burst.pk] = burst
        return burst

    def has_send_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    def has_preview_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: EmailBurst | None = None) -> bool:
        # Once started, a burst is a record: its page is read-only. A scheduled one is
        # read-only too without the send permission: it is set to go, so changing it
        # is as good as sending it.
        return super().has_change_permission(request, obj) and _may_change(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: EmailBurst | None = None) -> bool:
        return super().has_delete_permission(request, obj) and _may_change(request, obj)

    # --- list columns --------------------------------------------------------------------------

    @display(description="Burst", ordering="name")
    def name_column(self, burst: EmailBurst) -> str:
        return burst.display_name

    @display(description="Would mail")
    def audience_count(self, burst: EmailBurst | None) -> str:
        """The number the audience would mail now: counted by the page's script as the
        page opens and whenever the audience fields change (the page itself counts nothing)."""
        return format_html(
            '<span id="audience-count" data-url="{}" class="font-semibold">{}</span>',
            reverse("admin:campaigns_emailburst_audience_count"),
            "Counting…",
        )

    @display(description="Status", ordering="status", label=BURST_STATUS_VARIANTS)
    def status_badge(self, burst: EmailBurst) -> tuple[str, str]:
        return burst.status, burst.get_status_display()

    @display(description="Status")
    def status_label(self, burst: EmailBurst) -> str:
        return render_to_string(
            "unfold/helpers/label.html",
            {
                "text": BURST_STATUS_LABELS.get(burst.status, burst.status),
                "variant": BURST_STATUS_VARIANTS.get(burst.status, "default"),
            },
        )

    @display(description="Recipients", ordering="recipient_count")
    def recipients_column(self, burst: EmailBurst) -> str:
        count = getattr(burst, "recipient_count", None)
        if burst.all_members and burst.status in (BurstStatus.DRAFT, BurstStatus.SCHEDULED):
            return f"{count:,} (all)"
        return f"{count:,}" if count is not None else "—"

    @display(description=FIGURE_LABELS["sent_count"], ordering="n_sent")
    def sent_column(self, burst: EmailBurst) -> str:
        return format_count(burst.n_sent) if burst.n_deliveries else NOTHING

    @display(description=FIGURE_LABELS["failed_count"], ordering="n_failed")
    def failed_column(self, burst: EmailBurst) -> str:
        if not burst.n_deliveries:
            return NOTHING
        if burst.n_failed:
            return format_html(
                '<span class="font-semibold text-red-700 dark:text-red-400" title="{}">{}</span>',
                FIGURE_HELP["failed_count"],
                format_count(burst.n_failed),
            )
        return format_count(0)

    @display(description=FIGURE_LABELS["success_rate"])
    def success_rate_column(self, burst: EmailBurst) -> str:
        return format_percent(selectors.annotated_success_rate(burst))

    @display(description="When")
    def when_column(self, burst: EmailBurst) -> str:
        if burst.status == BurstStatus.SCHEDULED and burst.scheduled_at:
            return f"due {timezone.localtime(burst.scheduled_at):%Y-%m-%d %H:%M}"
        if burst.finished_at:
            return f"{'finished' if burst.status == BurstStatus.SENT else 'ended'} {timezone.localtime(burst.finished_at):%Y-%m-%d %H:%M}"
        if burst.started_at:
            return f"started {timezone.localtime(burst.started_at):%Y-%m-%d %H:%M}"
        return "—"

    @display(description="Recipients")
    def recipients_summary(self, burst: EmailBurst) -> str:
        if burst.all_members:
            return "All subscribed members"
        count = self._chosen_count(burst)
        return f"{count:,} chosen member{'s' if count != 1 else ''}"

    # --- the burst page ------------------------------------------------------------------------

    def _chosen_count(self, burst: EmailBurst) -> int:
        if not hasattr(burst, "_chosen_count"):
            burst._chosen_count = selectors.burst_chosen_count(burst_id=burst.pk)
        return burst._chosen_count

    def _recipients_field(self, request: HttpRequest, obj: EmailBurst | None) -> str:
        if obj is None:
            return "recipients"
        if not _may_change(request, obj) or self._chosen_count(obj) > RECIPIENT_WIDGET_LIMIT:
            return "recipients_summary"
        return "recipients"

    def _audience_fields(self, request: HttpRequest, obj: EmailBurst | None) -> tuple:
        """The lists, segments and exclusions to edit with the live count, or, on a page
        that cannot change the burst, one line that names them (one query)."""
        if obj is not None and not _may_change(request, obj):
            return ("audience_summary",)
        return (("lists", "segments"), ("exclude_lists", "exclude_segments"), "audience_count")

    @display(description="Lists and segments")
    def audience_summary(self, burst: EmailBurst) -> str:
        if not hasattr(burst, "_audience_summary"):  # the page asks more than once
            burst._audience_summary = selectors.audience_summary(burst_id=burst.pk) or "—"
        return burst._audience_summary

    def get_fieldsets(self, request: HttpRequest, obj: EmailBurst | None = None) -> list:
        fieldsets: list = [
            ("Message", {"fields": ("name", "subject", "body", "html_body")}),
            ("Sender", {"fields": ("sender", "from_name", "reply_to")}),
            (
                "Recipients",
                {
                    "fields": (
                        "all_members",
                        self._recipients_field(request, obj),
                        *self._audience_fields(request, obj),
                    )
                },
            ),
        ]
        if obj is not None:
            status = ["status_label", "scheduled_at", "started_at", "finished_at"]
            if obj.pause_reason:
                status.append("pause_reason")
            fieldsets.append(("Status", {"fields": (*status, "created_by", "created_at")}))
        return fieldsets

    def get_form(
        self, request: HttpRequest, obj: EmailBurst | None = None, change: bool = False, **kwargs: Any
    ):
        if obj is not None and self._recipients_field(request, obj) != "recipients":
            kwargs["fields"] = [f for f in EmailBurstForm.Meta.fields if f != "recipients"]
        return super().get_form(request, obj, change, **kwargs)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        burst = self.get_object(request, object_id) if object_id.isdigit() else None
        if burst is not None and self.has_view_or_change_permission(request, burst):
            stats = selectors.burst_stats(burst_id=burst.pk)
            request.__dict__.setdefault("_emailer_stats", {})[burst.pk] = stats
            extra_context.update(report_context(request, burst, stats))
            extra_context["can_send"] = self.has_send_permission(request)
            extra_context["recipient_count"] = getattr(burst, "recipient_count", None)
            extra_context["zone"] = zone_description()
        return super().change_view(request, object_id, form_url, extra_context)

    def get_actions_detail(self, request: HttpRequest, object_id: int) -> list:
        allowed = super().get_actions_detail(request, object_id)
        burst = views.get_burst(request, str(object_id))
        stats = request.__dict__.get("_emailer_stats", {}).get(burst.pk)
        nothing_to_retry = stats is not None and not any(
            stats.status_counts.get(s) for s in RETRYABLE_STATUSES
        )
        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}_"
        shown = []
        for a in allowed:
            verb = BUTTON_ACTIONS.get(a.action_name.removeprefix(prefix))
            if verb is None or (
                views.is_legal(verb, burst.status) and not (verb == BurstAction.RETRY and nothing_to_retry)
            ):
                shown.append(a)
        return shown

    def save_model(self, request: HttpRequest, obj: EmailBurst, form: Form, change: bool) -> None:
        data = form.cleaned_data
        values = {
            name: data.get(name) or ""
            for name in ("subject", "body", "html_body", "sender", "from_name", "reply_to")
        }
        values["all_members"] = bool(data.get("all_members"))
        values["name"] = data.get("name") or ""
        for field in AUDIENCE_FIELDS:
            if field in data:
                values[field] = [item.pk for item in data[field]]
        recipient_ids = [m.pk for m in data["recipients"]] if "recipients" in data else None
        if change:
            if recipient_ids is not None:
                values["recipient_ids"] = recipient_ids
            saved = burst_update(burst_id=obj.pk, actor=request.user, **values)
        else:
            saved = burst_create(**values, recipient_ids=recipient_ids or [], created_by=request.user)
        for field in EmailBurst._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        obj._state.db = saved._state.db

    def save_related(self, request: HttpRequest, form: Form, formsets: list, change: bool) -> None:
        # Recipients were set by the service; only the attachments are left.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def save_formset(self, request: HttpRequest, form: Form, formset: Any, change: bool) -> None:
        if formset.model is not EmailAttachment:
            return super().save_formset(request, form, formset, change)
        burst = form.instance
        for inline_form in formset.deleted_forms:
            if inline_form.instance.pk:
                self._remove_attachment(request, inline_form.instance)
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms or not inline_form.has_changed():
                continue
            upload = inline_form.cleaned_data.get("file")
            if upload is None or not hasattr(upload, "size"):
                continue
            if inline_form.instance.pk:
                self._remove_attachment(request, inline_form.instance)  # a replaced file
            try:
                attachment_add(burst_id=burst.pk, uploaded_file=upload, actor=request.user)
            except ServiceError as exc:  # the state or the limits changed since the form was checked
                messages.error(request, f"{upload.name} was not attached: {exc.message}")
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def _remove_attachment(self, request: HttpRequest, attachment: EmailAttachment) -> None:
        try:
            attachment_delete(attachment_id=attachment.pk, actor=request.user)
        except ServiceError as exc:
            messages.error(request, f"{attachment.filename}: {exc.message}")

    def delete_model(self, request: HttpRequest, obj: EmailBurst) -> None:
        burst_delete(burst_id=obj.pk, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EmailBurst]) -> None:
        refused: dict[str, list[str]] = defaultdict(list)
        for pk, name, subject in queryset.values_list("pk", "name", "subject"):
            subject = burst_display_name(name=name, subject=subject, burst_id=pk)
            try:
                burst_delete(burst_id=pk, actor=request.user)
            except IllegalState:
                refused["already started"].append(subject)
            except ServiceError as exc:
                refused[exc.message].append(subject)
        for reason, subjects in refused.items():
            messages.warning(request, f"Not deleted ({reason}): {', '.join(subjects)}.")

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                return view(self, request, *args, **kwargs)

            return self.admin_site.admin_view(wrapper)

        return [
            path(
                "audience-count/",
                wrap(views.audience_count_view),
                name="campaigns_emailburst_audience_count",
            ),
            path(
                "<path:object_id>/progress/",
                wrap(views.progress_view),
                name="campaigns_emailburst_progress",
            ),
            path(
                "<path:object_id>/report/<str:fmt>/",
                wrap(views.report_export_view),
                name="campaigns_emailburst_report_export",
            ),
            *super().get_urls(),
        ]

    # --- bulk actions on the list ------------------------------------------------------------------

    def _bulk(
        self,
        request: HttpRequest,
        queryset: QuerySet[EmailBurst],
        verb: str,
        done_word: str,
        run: Callable[[EmailBurst], Any],
    ) -> None:
        done = 0
        skipped: dict[str, list[str]] = defaultdict(list)
        for burst in queryset.order_by("pk"):
            if not views.is_legal(verb, burst.status):
                skipped[views.skip_reason(verb, burst.status)].append(str(burst))
                continue
            try:
                run(burst)
            except IllegalState:
                burst.refresh_from_db(fields=["status"])
                skipped[views.skip_reason(verb, burst.status)].append(str(burst))
            except (InvalidInput, NotFound) as exc:
                skipped[exc.message].append(str(burst))
            else:
                done += 1
        parts = [f"{done} {done_word}"]
        for reason, subjects in skipped.items():
            parts.append(
                f"{len(subjects)} skipped: {reason} ({', '.join(f'“{s}”' for s in subjects[:5])}{'…' if len(subjects) > 5 else ''})"
            )
        level = messages.SUCCESS if done and not skipped else messages.WARNING if done else messages.ERROR
        self.message_user(request, ", ".join(parts) + ".", level)

    @action(description="Send now", permissions=["send"])
    def send_now(self, request: HttpRequest, queryset: QuerySet[EmailBurst]) -> None:
        self._bulk(request, queryset, BurstAction.SEND, "started", lambda b: burst_send(burst_id=b.pk))

    @action(description="Cancel", permissions=["send"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[EmailBurst]) -> None:
        self._bulk(request, queryset, BurstAction.CANCEL, "cancelled", lambda b: burst_cancel(burst_id=b.pk))

    @action(description="Duplicate as draft", permissions=["add"])
    def duplicate_as_draft(self, request: HttpRequest, queryset: QuerySet[EmailBurst]) -> None:
        copies = [
            burst_duplicate(burst_id=pk, created_by=request.user)
            for pk in queryset.order_by("pk").values_list("pk", flat=True)
        ]
        self.message_user(
            request,
            f"{len(copies)} duplicated as draft{'s' if len(copies) != 1 else ''}: "
            + ", ".join(f"“{c}”" for c in copies[:5])
            + ("…" if len(copies) > 5 else "")
            + ".",
            messages.SUCCESS,
        )

    @action(description="Schedule…", permissions=["send"])
    def schedule_selected(
        self, request: HttpRequest, queryset: QuerySet[EmailBurst]
    ) -> TemplateResponse | None:
        form = ScheduleForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            send_at = form.cleaned_data["send_at"]
            self._bulk(
                request,
                queryset,
                BurstAction.SCHEDULE,
                "scheduled",
                lambda b: burst_schedule(burst_id=b.pk, send_at=send_at),
            )
            return None
        bursts = list(queryset.order_by("pk"))
        return TemplateResponse(
            request,
            "campaigns/admin/schedule.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Schedule",
                "form": form,
                "zone": zone_description(),
                "bursts": bursts,
                "bulk": True,
                "action_name": "schedule_selected",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "changelist_url": reverse("admin:campaigns_emailburst_changelist"),
            },
        )

    # --- the burst page's buttons (GET shows a confirmation, POST acts) --------------------------------

    @action(description="Preview & test", url_path="preview", icon="visibility", permissions=["preview"])
    def preview_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.preview_view(self, request, object_id)

    @action(description="Pre-flight", url_path="preflight", icon="checklist", permissions=["preview"])
    def preflight_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.preflight_view(self, request, object_id)

    @action(
        description="Send a test…",
        url_path="send-test",
        icon="forward_to_inbox",
        permissions=["preview"],
    )
    def send_test_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the preview page with the test form; POST: send the test. Any staff member
        who may view the burst may test it."""
        return views.send_test_view(self, request, object_id)

    @action(description="Schedule…", url_path="schedule", icon="schedule", permissions=["send"])
    def schedule_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.schedule_view(self, request, object_id)

    @action(
        description="Send now",
        url_path="send",
        icon="send",
        permissions=["send"],
        variant=ActionVariant.PRIMARY,
    )
    def send_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.state_change_view(self, request, object_id, BurstAction.SEND)

    @action(
        description="Pause",
        url_path="pause",
        icon="pause",
        permissions=["send"],
        variant=ActionVariant.WARNING,
    )
    def pause_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.state_change_view(self, request, object_id, BurstAction.PAUSE)

    @action(
        description="Resume",
        url_path="resume",
        icon="play_arrow",
        permissions=["send"],
        variant=ActionVariant.PRIMARY,
    )
    def resume_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.state_change_view(self, request, object_id, BurstAction.RESUME)

    @action(
        description="Cancel",
        url_path="cancel",
        icon="cancel",
        permissions=["send"],
        variant=ActionVariant.DANGER,
    )
    def cancel_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.state_change_view(self, request, object_id, BurstAction.CANCEL)

    @action(description="Retry failed…", url_path="retry", icon="replay", permissions=["send"])
    def retry_burst(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.retry_view(self, request, object_id)
