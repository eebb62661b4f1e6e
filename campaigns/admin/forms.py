"""Forms of the burst admin: compose (validated by the engine's own checks),
schedule (a local date and time in TIME_ZONE), retry (error classes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone
from unfold.forms import PaginationInlineFormSet
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminTextInputWidget

from campaigns.models import DeliveryStatus, EmailAttachment, EmailBurst
from campaigns.services import (
    DEFAULT_RETRY_STATUSES,
    RETRYABLE_STATUSES,
    attachment_limits_check,
    send_at_check,
)
from campaigns.validation import burst_validate
from common.errors import InvalidInput, ServiceError

TEMPLATE_FIELDS = ("subject", "body", "html_body", "from_name")


class EmailBurstForm(forms.ModelForm):
    class Meta:
        model = EmailBurst
        fields = (
            "subject",
            "body",
            "html_body",
            "sender",
            "from_name",
            "reply_to",
            "all_members",
            "recipients",
        )
        labels = {
            "all_members": "All subscribed members",
            "html_body": "HTML body",
            "from_name": "Display name",
            "reply_to": "Reply-To",
            "body": "Text body",
        }
        help_texts = {
            "subject": "A Django template, e.g. “News for {{ member.first_name|default:'you' }}”.",
            "body": "Plain text, a Django template: {{ member.first_name }}, {{ member.full_name }}, "
            "{{ member.email }}, {{ unsubscribe_url }}.",
            "html_body": "Optional HTML version, a Django template (auto-escaped).",
            "all_members": "Send to every active, subscribed member at send time (staff included); "
            "the chosen recipients are then ignored.",
            "recipients": "Type a name or an email address to add members.",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not any(name in self.errors for name in TEMPLATE_FIELDS) and "subject" in data and "body" in data:
            try:
                # The engine's own checks: header injection, templates that do not
                # compile or use a tag outside the whitelist ({% load %}, {% include %} ...).
                burst_validate(**{name: data.get(name) or "" for name in TEMPLATE_FIELDS})
            except InvalidInput as exc:
                self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        if data.get("all_members") and data.get("recipients"):
            self.add_error(
                "recipients",
                "Choose members or “All subscribed members”, not both: clear one of them.",
            )
        return data


class AttachmentForm(forms.ModelForm):
    class Meta:
        model = EmailAttachment
        fields = ("file",)

    def clean_file(self) -> Any:
        upload = self.cleaned_data.get("file")
        if upload is not None and getattr(upload, "size", 0) > settings.ATTACHMENT_MAX_SIZE:
            limit_mb = settings.ATTACHMENT_MAX_SIZE / 1024 / 1024
            raise forms.ValidationError(f"An attachment may be at most {limit_mb:.1f} MB.")
        return upload


class AttachmentFormSet(PaginationInlineFormSet):
    """The burst page's attachments: within ATTACHMENT_MAX_COUNT files and
    ATTACHMENT_MAX_TOTAL bytes, said on the inline before anything is saved (the
    service checks again under the burst's row lock)."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        count = total = 0
        adding = False
        for form in self.forms:
            if self.can_delete and self._should_delete_form(form):
                continue
            upload = form.cleaned_data.get("file")
            if isinstance(upload, UploadedFile):  # a new or replaced file, not the stored one
                adding = True
                count, total = count + 1, total + upload.size
            elif form.instance.pk:
                count, total = count + 1, total + form.instance.size
        if not adding:
            return  # never refuse saving the rest of the page over files already there
        try:
            attachment_limits_check(count=count, total=total)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message[:1].upper() + exc.message[1:] + ".") from None


def zone_description() -> str:
    """E.g. "Europe/Paris (UTC+01:00)": the zone the form's times are read in."""
    now = timezone.localtime()
    offset = now.strftime("%z")
    return f"{settings.TIME_ZONE} (UTC{offset[:3]}:{offset[3:]})"


class ScheduleForm(forms.Form):
    send_at = forms.DateTimeField(
        label="Send at",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=UnfoldAdminTextInputWidget(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["send_at"].help_text = f"Date and time in {zone_description()}."
        self.fields["send_at"].widget.format = "%Y-%m-%dT%H:%M"

    def clean_send_at(self) -> datetime:
        # Django reads the naive local time in the current time zone (TIME_ZONE).
        send_at = self.cleaned_data["send_at"]
        try:
            if send_at <= timezone.now():
                raise forms.ValidationError("Choose a time in the future.")
            return send_at_check(send_at=send_at, field_name="The time")
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None


RETRY_CHOICES = [(s.value, s.label) for s in DeliveryStatus if s.value in RETRYABLE_STATUSES]


class RetryForm(forms.Form):
    statuses = forms.MultipleChoiceField(
        label="Retry deliveries that ended as",
        choices=RETRY_CHOICES,
        initial=list(DEFAULT_RETRY_STATUSES),
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="“Not found” deliveries are never retried: the address does not exist.",
    )
