"""The member page's form: Django's user change form plus the member's subscription."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.functional import cached_property
from unfold.forms import UserChangeForm
from unfold.widgets import UnfoldBooleanSwitchWidget

SUBSCRIBED_HELP = "Bursts are sent to this member. Switch off to unsubscribe them."
UNSUBSCRIBED_HELP = (
    "Unsubscribed since {since}: no burst is sent to this member. Switch on to subscribe them again."
)


class MemberChangeForm(UserChangeForm):
    # Not the `unsubscribed_at` column itself: it is a record (when, set by the member's
    # link or by staff), changed only through the subscription services (MemberAdmin.save_model).
    # The value the page was rendered with is posted back too (show_hidden_initial), so a
    # member who unsubscribes while staff have the page open is not subscribed again
    # by a save that did not touch this switch.
    subscribed = forms.BooleanField(
        label="Subscribed",
        required=False,
        show_hidden_initial=True,
        widget=UnfoldBooleanSwitchWidget,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("subscribed")
        if field is None:
            return
        since = self.instance.unsubscribed_at
        self.initial["subscribed"] = since is None
        if since is not None:
            field.help_text = UNSUBSCRIBED_HELP.format(
                since=format_date(timezone.localtime(since), "Y-m-d H:i")
            )
        else:
            field.help_text = SUBSCRIBED_HELP

    @cached_property
    def changed_data(self) -> list[str]:
        changed = super().changed_data
        # Without the value the page showed, a stale page cannot be told from a moved
        # switch: no change (never subscribe anyone again by accident).
        if "subscribed" in changed and self["subscribed"].html_initial_name not in self.data:
            changed = [name for name in changed if name != "subscribed"]
        return changed
