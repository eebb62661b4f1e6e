"""Forms of the burst admin: compose (validated by the engine's own checks),
schedule (a local date and time in TIME_ZONE), retry (error classes)."""

from __future__ import annotations

from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html
from unfold.contrib.forms.widgets import WysiwygWidget
from unfold.forms import PaginationInlineFormSet
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from campaigns.models import DeliveryStatus, EmailAttachment, EmailBurst
from campaigns.services import (
    DEFAULT_RETRY_STATUSES,
    RETRYABLE_STATUSES,
    attachment_limits_check,
    send_at_check,
)
from campaigns.validation import Check, burst_checks
from common.errors import InvalidInput, ServiceError

TEMPLATE_FIELDS = ("subject", "body", "html_body", "from_name")


# --- the HTML body's editor -----------------------------------------------------------------------

# What the rich-text editor (trix) can hold: anything else it drops when it loads the
# HTML (tables, styles, classes, images, comments...).
TRIX_ELEMENTS = frozenset(
    {"div", "p", "br", "strong", "b", "em", "i", "u", "del", "s", "strike", "a"}
    | {"h1", "h2", "h3", "h4", "ul", "ol", "li", "blockquote", "pre"}
)


class _TrixFit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fits = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TRIX_ELEMENTS or any(name != "href" or tag != "a" for name, _value in attrs):
            self.fits = False

    handle_startendtag = handle_starttag

    def handle_comment(self, data: str) -> None:
        self.fits = False

    def handle_decl(self, decl: str) -> None:
        self.fits = False


def trix_can_hold(html: str) -> bool:
    """Whether the rich-text editor can load `html` without dropping markup: if not,
    the HTML body opens as raw HTML (the page's script checks again in the browser)."""
    if "{%" in html:
        return False  # block tags around elements would be moved by the editor
    finder = _TrixFit()
    finder.feed(html)
    finder.close()
    return finder.fits


class HtmlBodyWidget(WysiwygWidget):
    """unfold's rich-text editor (trix) for the HTML body, with a "Raw HTML" mode.

    Both editors are on the page; the one in use carries the field's name, so only
    its value is posted (`campaigns/admin/html_body_editor.js` switches them). A body
    the rich-text editor would damage opens as raw HTML."""

    class Media:
        css = {"all": ("campaigns/admin/html_body_editor.css",)}
        js = ("campaigns/admin/html_body_editor.js",)

    def render(self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None) -> str:
        value = "" if value is None else str(value)
        raw = not trix_can_hold(value)
        field_id = (attrs or {}).get("id") or f"id_{name}"
        rich_id = f"wysiwyg-{name}"
        textarea = UnfoldAdminTextareaWidget(attrs={"rows": 16, "spellcheck": "false", "class": "font-mono"})
        return format_html(
            '<div class="emailer-html-editor" data-html-editor data-name="{name}" data-mode="{mode}">'
            '<div class="emailer-editor-tabs" role="group" aria-label="Editor">'
            '<button type="button" data-editor-mode="rich" aria-controls="{rich_id}">Rich text</button>'
            '<button type="button" data-editor-mode="raw" aria-controls="{field_id}">Raw HTML</button>'
            "</div>"
            '<p class="emailer-editor-note" data-editor-note role="status"></p>'
            '<div data-editor-pane="rich"{rich_hidden}>{toolbar}'
            '<input type="hidden" name="{rich_name}" id="{rich_id}" value="{rich_value}">'
            '<div class="max-w-4xl relative">'
            '<trix-editor input="{rich_id}" class="{classes}" aria-label="HTML body"></trix-editor>'
            "</div></div>"
            '<div data-editor-pane="raw"{raw_hidden}>{textarea}</div>'
            "</div>",
            name=name,
            mode="raw" if raw else "rich",
            rich_id=rich_id,
            field_id=field_id,
            rich_hidden=" hidden" if raw else "",
            raw_hidden="" if raw else " hidden",
            toolbar=render_to_string("unfold/forms/helpers/toolbar.html"),
            rich_name="" if raw else name,
            rich_value="" if raw else value,
            classes=self.attrs.get("class", ""),
            textarea=textarea.render(name if raw else "", value, {"id": field_id}, renderer),
        )


class EmailBurstForm(forms.ModelForm):
    class Meta:
        model = EmailBurst
        fields = (
            "name",
            "subject",
            "body",
            "html_body",
            "sender",
            "from_name",
            "reply_to",
            "all_members",
            "recipients",
            "lists",
            "segments",
            "exclude_lists",
            "exclude_segments",
        )
        labels = {
            "all_members": "All subscribed members",
            "html_body": "HTML body",
            "from_name": "Display name",
            "reply_to": "Reply-To",
            "body": "Text body",
            "exclude_lists": "Leave out lists",
            "exclude_segments": "Leave out segments",
        }
        help_texts = {
            "subject": "A Django template, e.g. “News for {{ member.first_name|default:'you' }}”.",
            "body": "Plain text, a Django template: {{ member.first_name }}, {{ member.full_name }}, "
            "{{ member.email }}, {{ unsubscribe_url }}. Leave it empty to have it made from the HTML body.",
            "html_body": "Optional HTML version, a Django template (auto-escaped). Edit it as rich text or "
            "as raw HTML; CSS of a style block is copied into the elements when the burst is sent.",
            "all_members": "Send to every active, subscribed member at send time (staff included); "
            "the chosen recipients are then ignored.",
            "recipients": "Type a name or an email address to add members.",
            "lists": "Members of these mailing lists (a member on several is mailed once).",
            "segments": "Members these segments select when the burst is sent.",
            "exclude_lists": "Members of these lists are left out, whatever else chooses them.",
            "exclude_segments": "Members these segments select are left out.",
        }
        widgets = {"html_body": HtmlBodyWidget}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not any(name in self.errors for name in TEMPLATE_FIELDS) and "subject" in data:
            # The engine's own checks: header injection, broken tags, templates that do
            # not compile or use a tag outside the whitelist, variables a burst does not
            # have, dangerous HTML. Each error on its field, with its line.
            values = {name: data.get(name) or "" for name in TEMPLATE_FIELDS}
            for check in burst_checks(**values):
                if check.is_error:
                    field = check.field if check.field in self.fields else None
                    self.add_error(field, field_error(check))
        if data.get("all_members"):
            for name in ("recipients", "lists", "segments", "exclude_lists", "exclude_segments"):
                if data.get(name):
                    self.add_error(
                        name,
                        "“All subscribed members” already mails everyone: clear this, or untick it.",
                    )
        return data


def field_error(check: Check) -> str:
    """A check as the admin shows it on its field: "Line 2: … — “snippet”"."""
    text = check.message[:1].upper() + check.message[1:]
    if check.line:
        text = f"Line {check.line}: {text}"
    if check.snippet:
        text += f" — “{check.snippet}”"
    return text


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
