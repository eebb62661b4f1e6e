"""Upload an `.eml` bounce or complaint report in the admin (SPEC 13, intake 4): the
message is parsed and recorded like one read from the bounce mailbox, and the page
shows what was found and what it matched.

Mounted by config/urls.py at /admin/campaigns/mailevent/upload/ (URL name
`bounce_upload`) so the Mail events page can link to it. A message is keyed on the
SHA-256 of its bytes, as `manage.py ingest_bounce` keys it: the same file uploaded
twice (or also fed to the command) is recorded once.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from unfold.widgets import UnfoldAdminFileFieldWidget

from campaigns import services
from campaigns.bounces.parse import parse_message
from campaigns.models import MailEvent
from members.models import Suppression

logger = logging.getLogger(__name__)

MAX_UPLOAD = 25 * 1024 * 1024
PERMISSION = "campaigns.add_mailevent"


class BounceUploadForm(forms.Form):
    message = forms.FileField(
        label="Report (.eml)",
        help_text="A bounce (delivery status notification) or a complaint (ARF report) saved as an .eml file.",
        widget=UnfoldAdminFileFieldWidget,
    )

    def clean_message(self) -> bytes:
        upload = self.cleaned_data["message"]
        if upload.size > MAX_UPLOAD:
            raise forms.ValidationError(f"The file is bigger than {MAX_UPLOAD // (1024 * 1024)} MB.")
        raw = upload.read()
        if not raw.strip():
            raise forms.ValidationError("The file is empty.")
        return raw


def _match_text(event: MailEvent) -> str:
    if event.matched_by == "token":
        return "our delivery, by its token"
    if event.matched_by == "relay_id":
        return "our delivery, by the relay's message id"
    if event.matched_by == "address":
        return "the address only (no delivery, so nothing changes)"
    return "nothing"


def _rows(events: list[MailEvent]) -> list[dict[str, Any]]:
    suppressed = set(Suppression.objects.filter(event__in=events).values_list("event_id", flat=True))
    return [
        {
            "kind": event.get_kind_display(),
            "email": event.email or "(no address)",
            "matched": _match_text(event),
            "delivery_url": (
                reverse("admin:campaigns_delivery_change", args=[event.delivery_id])
                if event.delivery_id
                else ""
            ),
            "suppressed": event.pk in suppressed,
            "diagnostic": event.diagnostic,
        }
        for event in events
    ]


def _record(raw: bytes) -> tuple[str, list[MailEvent]]:
    parsed = parse_message(raw)
    key = "sha256:" + hashlib.sha256(raw).hexdigest()
    events = services.mail_event_record(parsed=parsed, source="upload", raw=raw, dedup_key=key)
    return parsed.kind, events


def _events_url() -> str:
    try:
        return reverse("admin:campaigns_mailevent_changelist")
    except NoReverseMatch:  # the Mail events page is not registered
        return ""


def bounce_upload_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    result: dict[str, Any] | None = None
    form = BounceUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            kind, events = _record(form.cleaned_data["message"])
        except Exception:  # never a traceback on the page; the log has it
            logger.exception("bounce upload failed")
            form.add_error(None, "The report could not be recorded. Nothing was changed.")
        else:
            result = {"kind": kind.replace("_", " "), "rows": _rows(events), "replay": not events}
            form = BounceUploadForm()
    context = {
        **admin.site.each_context(request),
        "title": "Upload a bounce or complaint",
        "form": form,
        "result": result,
        "max_upload": MAX_UPLOAD,
        "opts": MailEvent._meta,
        "events_url": _events_url(),
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, "campaigns/admin/bounce_upload.html", context)


# Staff only (admin_view sends others to the login page); the permission is checked inside.
bounce_upload = admin.site.admin_view(bounce_upload_view)
