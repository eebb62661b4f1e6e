"""Pages of the burst admin beyond the change form: confirmations of state changes
(every change is a POST), the schedule and retry forms, pre-flight, preview, the
progress JSON polled by the burst page, and the delivery report export.

The views are thin: parse, call a `campaigns.services` function (or read through
`campaigns.selectors`), say what happened. Which state changes are offered follows
`campaigns.states`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from csp.decorators import csp
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.text import slugify
from django.views.decorators.clickjacking import xframe_options_sameorigin
from import_export.formats.base_formats import CSV, XLSX

from campaigns import selectors
from campaigns.admin.forms import RetryForm, ScheduleForm, zone_description
from campaigns.admin.report import live_payload
from campaigns.admin.resources import DeliveryResource
from campaigns.models import BurstStatus, EmailBurst
from campaigns.services import (
    TEST_SEND_MAX_ADDRESSES,
    burst_cancel,
    burst_pause,
    burst_resume,
    burst_retry,
    burst_schedule,
    burst_send,
    burst_send_test,
)
from campaigns.states import BurstAction, burst_actions_available
from campaigns.vocabulary import STATUS_LABELS
from common.errors import ServiceError
from config.security import PREVIEW_FRAME_POLICY
from members.models import Member

# --- which state changes are legal ------------------------------------------------------------


def is_legal(verb: str, status: str) -> bool:
    """Whether the admin offers `verb` (a BurstAction) for a burst in `status`."""
    return verb in burst_actions_available(status)


def skip_reason(verb: str, status: str) -> str:
    """A short reason for a bulk action's per-burst message."""
    if verb in (BurstAction.SEND, BurstAction.SCHEDULE) and status in (BurstStatus.SENDING, BurstStatus.SENT):
        return f"already {status}"
    if verb == BurstAction.CANCEL and status == BurstStatus.CANCELLED:
        return "already cancelled"
    if verb == BurstAction.CANCEL and status == BurstStatus.DRAFT:
        return "a draft (nothing to cancel)"
    return f"it is {status}"


def _change_url(burst: EmailBurst) -> str:
    return reverse("admin:campaigns_emailburst_change", args=[burst.pk])


def _page(
    model_admin: ModelAdmin, request: HttpRequest, template: str, burst: EmailBurst | None, **context: Any
) -> TemplateResponse:
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(
        request,
        template,
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "original": burst,
            "burst": burst,
            "change_url": _change_url(burst) if burst else "",
            **context,
        },
    )


def get_burst(request: HttpRequest, object_id: str) -> EmailBurst:
    try:
        pk = int(object_id)
    except (TypeError, ValueError):
        raise Http404("No such email burst") from None
    cache: dict[int, EmailBurst] = request.__dict__.setdefault("_emailer_bursts", {})
    if pk not in cache:
        cache[pk] = get_object_or_404(EmailBurst, pk=pk)
    return cache[pk]


# --- confirmed state changes ------------------------------------------------------------------


@dataclass(frozen=True)
class StateChange:
    verb: str
    title: str
    question: str
    button: str
    run: Callable[[EmailBurst], str]
    danger: bool = False


def _send(burst: EmailBurst) -> str:
    burst_send(burst_id=burst.pk)
    return f"Sending of “{burst}” started."


def _pause(burst: EmailBurst) -> str:
    burst_pause(burst_id=burst.pk, reason="Paused by staff")
    return f"“{burst}” paused: no new message leaves until you resume it."


def _resume(burst: EmailBurst) -> str:
    burst_resume(burst_id=burst.pk)
    return f"“{burst}” resumed."


def _cancel(burst: EmailBurst) -> str:
    burst_cancel(burst_id=burst.pk)
    return f"“{burst}” cancelled: its remaining deliveries are skipped."


STATE_CHANGES: dict[str, StateChange] = {
    BurstAction.SEND: StateChange(
        BurstAction.SEND,
        "Send now",
        "Start sending this burst now? Every recipient gets one message; this cannot be undone.",
        "Send now",
        _send,
    ),
    BurstAction.PAUSE: StateChange(
        BurstAction.PAUSE,
        "Pause sending",
        "Pause this burst? Messages already on their way finish; no new one starts until you resume.",
        "Pause",
        _pause,
    ),
    BurstAction.RESUME: StateChange(
        BurstAction.RESUME,
        "Resume sending",
        "Resume this burst? Only the recipients not yet done are mailed.",
        "Resume",
        _resume,
    ),
    BurstAction.CANCEL: StateChange(
        BurstAction.CANCEL,
        "Cancel burst",
        "Cancel this burst? Deliveries not yet sent become “skipped”; this cannot be undone.",
        "Cancel burst",
        _cancel,
        danger=True,
    ),
}


def state_change_view(
    model_admin: ModelAdmin, request: HttpRequest, object_id: str, verb: str
) -> HttpResponse:
    change = STATE_CHANGES[verb]
    burst = get_burst(request, object_id)
    if request.method == "POST":
        try:
            messages.success(request, change.run(burst))
        except ServiceError as exc:
            messages.error(request, exc.message)
        return HttpResponseRedirect(_change_url(burst))
    if not is_legal(verb, burst.status):
        messages.warning(request, f"“{burst}” cannot be {_past(verb)}: {skip_reason(verb, burst.status)}.")
        return HttpResponseRedirect(_change_url(burst))
    recipients = selectors.burst_recipient_count(burst_id=burst.pk)
    # Before a send: what would refuse it, and what is worth a look first.
    errors, warnings = selectors.burst_send_checks(burst=burst) if verb == BurstAction.SEND else ([], [])
    return _page(
        model_admin,
        request,
        "campaigns/admin/confirm.html",
        burst,
        title=change.title,
        question=change.question,
        button=change.button,
        danger=change.danger,
        recipients=recipients,
        errors=errors,
        warnings=warnings,
    )


def _past(verb: str) -> str:
    return {"send": "sent", "schedule": "scheduled", "pause": "paused", "resume": "resumed"}.get(
        verb, f"{verb}led" if verb == "cancel" else f"{verb}ed"
    )


# --- schedule ------------------------------------------------------------------------------------


def schedule_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    burst = get_burst(request, object_id)
    if request.method == "POST":
        form = ScheduleForm(request.POST)
        if form.is_valid():
            try:
                burst_schedule(burst_id=burst.pk, send_at=form.cleaned_data["send_at"])
            except ServiceError as exc:
                form.add_error("send_at" if exc.field == "send_at" else None, exc.message)
            else:
                when = timezone.localtime(form.cleaned_data["send_at"])
                messages.success(
                    request, f"“{burst}” scheduled for {when:%Y-%m-%d %H:%M} ({zone_description()})."
                )
                return HttpResponseRedirect(_change_url(burst))
    else:
        if not is_legal(BurstAction.SCHEDULE, burst.status):
            messages.warning(
                request, f"“{burst}” cannot be scheduled: {skip_reason(BurstAction.SCHEDULE, burst.status)}."
            )
            return HttpResponseRedirect(_change_url(burst))
        initial = {"send_at": timezone.localtime(burst.scheduled_at)} if burst.scheduled_at else {}
        form = ScheduleForm(initial=initial)
    return _page(
        model_admin,
        request,
        "campaigns/admin/schedule.html",
        burst,
        title="Schedule",
        form=form,
        zone=zone_description(),
        bursts=[burst],
    )


# --- retry ----------------------------------------------------------------------------------------


def retry_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    burst = get_burst(request, object_id)
    if request.method == "POST":
        form = RetryForm(request.POST)
        if form.is_valid():
            try:
                count = burst_retry(burst_id=burst.pk, statuses=form.cleaned_data["statuses"])
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                classes = ", ".join(str(STATUS_LABELS[s]).lower() for s in form.cleaned_data["statuses"])
                if count:
                    messages.success(
                        request, f"{count} deliver{'y' if count == 1 else 'ies'} ({classes}) queued again."
                    )
                else:
                    messages.info(request, f"No {classes} delivery to retry.")
            return HttpResponseRedirect(_change_url(burst))
    else:
        if not is_legal(BurstAction.RETRY, burst.status):
            messages.warning(
                request,
                f"“{burst}” has no delivery to retry: {skip_reason(BurstAction.RETRY, burst.status)}.",
            )
            return HttpResponseRedirect(_change_url(burst))
        form = RetryForm()
    stats = selectors.burst_stats(burst_id=burst.pk)
    counts = [
        {"key": key, "label": label, "count": stats.status_counts.get(key, 0)}
        for key, label in form.fields["statuses"].choices
    ]
    return _page(
        model_admin,
        request,
        "campaigns/admin/retry.html",
        burst,
        title="Retry failed deliveries",
        form=form,
        counts=counts,
        not_found=stats.status_counts.get("not_found", 0),
    )


# --- send a test ------------------------------------------------------------------------------------


def _typed_addresses(text: str) -> list[str]:
    """Addresses one per line, or separated by commas, semicolons or spaces."""
    return text.replace(",", " ").replace(";", " ").split()


def send_test_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """GET: the preview page, where the test form is. POST: send the test, rendered for
    the posted member (default: the asking user) to the typed addresses (without an
    `emails` field: to the asking user's own address)."""
    burst = get_burst(request, object_id)
    if request.method != "POST":
        return _preview_page(model_admin, request, burst, member_id=_member_id(request.GET.get("member", "")))
    typed = request.POST.get("emails")
    if typed is None:
        emails = [request.user.email] if request.user.email else []
    else:
        emails = _typed_addresses(typed)
    member_id = _member_id(request.POST.get("member", ""))
    try:
        report = burst_send_test(burst_id=burst.pk, emails=emails, member_id=member_id, actor=request.user)
    except ServiceError as exc:
        messages.error(request, f"The test was not sent: {exc.message}")
        return _preview_page(model_admin, request, burst, member_id=member_id, test_emails=typed)
    if report.sent_to:
        messages.success(
            request,
            f"A test of “{burst}”, rendered for {report.rendered_for}, was sent to "
            f"{', '.join(report.sent_to)}.",
        )
    if report.refused:
        refused = "; ".join(f"{address} ({reply})" for address, reply in report.refused.items())
        messages.warning(request, f"The mail server did not accept the test for: {refused}.")
    query = urlencode({"member": report.rendered_for.pk})
    preview_url = reverse("admin:campaigns_emailburst_preview_burst", args=[burst.pk])
    return HttpResponseRedirect(f"{preview_url}?{query}")


# --- pre-flight and preview ----------------------------------------------------------------------------


def preflight_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    burst = get_burst(request, object_id)
    result = selectors.burst_preflight(burst_id=burst.pk)
    total = result.to_send + result.skipped_total
    return _page(
        model_admin,
        request,
        "campaigns/admin/preflight.html",
        burst,
        title="Pre-flight",
        preflight=result,
        total=total,
        skipped=sorted(result.skipped.items(), key=lambda item: -item[1]),
        can_send=model_admin.has_send_permission(request) and is_legal(BurstAction.SEND, burst.status),
        ready=not result.template_error and not result.render_failures and result.to_send > 0,
    )


PREVIEW_CHOICES = 50


def _plain(value: str | None) -> str | None:
    """Template output is a SafeString even from the text engine, which escapes
    nothing: the subject and text part are plain text, to be escaped like any other."""
    return None if value is None else str.__str__(value)


@csp(PREVIEW_FRAME_POLICY)
@xframe_options_sameorigin
def _preview_frame(html: str | None) -> HttpResponse:
    """The rendered HTML part alone, for the sandboxed iframe of the preview page."""
    if html is None:
        return HttpResponse(status=404)
    return HttpResponse(html, content_type="text/html; charset=utf-8")


def _member_id(value: str) -> int | None:
    """A member id typed in a URL or posted by a form; None for anything else."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def preview_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    burst = get_burst(request, object_id)
    email = request.GET.get("email", "").strip()
    member_id = None if email else _member_id(request.GET.get("member", ""))
    if request.GET.get("part") == "html":
        _member, _choices, rendered, error = _preview(burst, email=email, member_id=member_id)
        return _preview_frame(None if error or rendered is None else rendered.html)
    return _preview_page(model_admin, request, burst, email=email, member_id=member_id)


def _preview(
    burst: EmailBurst, *, email: str, member_id: int | None
) -> tuple[Member | None, list[Member], selectors.Rendered | None, str]:
    """The member asked for (by address or id; default: the first recipient), the
    choices, the rendered parts, and an error to show."""
    choices = selectors.preview_members(burst=burst, limit=PREVIEW_CHOICES)
    member: Member | None = None
    error = ""
    if email:
        member = selectors.preview_member(email=email)
        if member is None:
            error = f"No member with the address {email}."
    elif member_id is not None:
        member = selectors.preview_member(member_id=member_id)
    if member is None and not error:
        member = choices[0] if choices else None
    rendered = None
    try:
        rendered = selectors.burst_preview(burst_id=burst.pk, member_id=member.pk if member else None)
    except ServiceError as exc:
        error = exc.message
    return member, choices, rendered, error


def _preview_page(
    model_admin: ModelAdmin,
    request: HttpRequest,
    burst: EmailBurst,
    *,
    email: str = "",
    member_id: int | None = None,
    test_emails: str | None = None,
) -> HttpResponse:
    """The preview, with the test form under it (its addresses: `test_emails` as typed,
    or the asking user's own; its member: the one previewed)."""
    member, choices, rendered, error = _preview(burst, email=email, member_id=member_id)
    frame_query = {"part": "html", **({"member": member.pk} if member else {})}
    preview_url = reverse("admin:campaigns_emailburst_preview_burst", args=[burst.pk])
    return _page(
        model_admin,
        request,
        "campaigns/admin/preview.html",
        burst,
        title="Preview & test",
        rendered=rendered,
        subject=_plain(rendered.subject) if rendered else "",
        text=_plain(rendered.text) if rendered else "",
        frame_url=f"{preview_url}?{urlencode(frame_query)}",
        member=member,
        choices=choices,
        email=email,
        error=error,
        preview_url=preview_url,
        send_test_url=reverse("admin:campaigns_emailburst_send_test_burst", args=[burst.pk]),
        test_emails=request.user.email if test_emails is None else test_emails,
        test_max=TEST_SEND_MAX_ADDRESSES,
    )


# --- progress JSON and report export ----------------------------------------------------------------------


def progress_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> JsonResponse:
    """What the burst page polls: its figures and its regions rendered anew (see
    `campaigns.admin.report.live_payload`)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    burst = get_burst(request, object_id)
    payload = live_payload(model_admin, request, burst)
    return JsonResponse(payload, headers={"Cache-Control": "no-store"})


EXPORT_FORMATS = {"csv": CSV, "xlsx": XLSX}


def report_export_view(
    model_admin: ModelAdmin, request: HttpRequest, object_id: str, fmt: str
) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    if fmt not in EXPORT_FORMATS:
        raise Http404("Unknown export format")
    burst = get_burst(request, object_id)
    file_format = EXPORT_FORMATS[fmt]()
    dataset = DeliveryResource().export(queryset=DeliveryResource.report_queryset(burst.pk))
    data = file_format.export_data(dataset)
    filename = f"burst-{burst.pk}-{slugify(burst.display_name)[:40] or 'report'}-deliveries.{file_format.get_extension()}"
    response = HttpResponse(data, content_type=file_format.get_content_type())
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- the compose form's live audience count ---------------------------------------------------------------


def _ids(request: HttpRequest, name: str) -> list[int]:
    return [int(v) for value in request.GET.getlist(name) for v in value.split(",") if v.strip().isdigit()]


def audience_count_view(model_admin: ModelAdmin, request: HttpRequest) -> JsonResponse:
    """How many members the audience the form shows would mail now: the burst form
    asks whenever its audience fields change."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    all_members = request.GET.get("all_members") in {"on", "true", "1"}
    count = selectors.audience_would_mail(
        all_members=all_members,
        recipient_ids=_ids(request, "recipients"),
        lists=_ids(request, "lists"),
        segments=_ids(request, "segments"),
        exclude_lists=_ids(request, "exclude_lists"),
        exclude_segments=_ids(request, "exclude_segments"),
    )
    return JsonResponse({"count": count, "text": audience_count_text(count)})


def audience_count_text(count: int) -> str:
    if count == 0:
        return "Would mail nobody yet: choose members, lists or segments."
    return f"Would mail {count:,} member{'s' if count != 1 else ''} now (unsubscribed, inactive and suppressed left out)."
