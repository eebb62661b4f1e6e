"""The admin login, throttled like the API's: one rule for guessing passwords, whichever door.

Both logins count failures through `members.services` (the same cache keys), so 10
failures a minute for one username or from one address lock that username or
address out of both for the rest of the minute. A throttled attempt is refused
before the password is checked: the right password does not get in either.

django-axes was the alternative; it keeps its own counters (database or cache) that
the API login would then have to share through axes' internals, for the same rule.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from unfold.forms import AuthenticationForm

from common.api import client_ip
from common.errors import Throttled
from members.services import login_failure_record, login_success_record, login_throttle_check

THROTTLED_MESSAGE = "Too many failed login attempts. Try again in a minute."
# Codes of AuthenticationForm's refusals that count as a failed attempt (a wrong
# password, an unknown or inactive user, a member who is not staff).
FAILURE_CODES = frozenset({"invalid_login", "inactive"})


class ThrottledAdminLoginForm(AuthenticationForm):
    """unfold's login form (its styled inputs), counting failures."""

    error_messages = {**AuthenticationForm.error_messages, "throttled": THROTTLED_MESSAGE}

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request is not None else "unknown"
        try:
            login_throttle_check(username=username, ip=ip)
        except Throttled:
            raise ValidationError(self.error_messages["throttled"], code="throttled") from None
        try:
            cleaned = super().clean()
        except ValidationError as exc:
            if exc.code in FAILURE_CODES:
                login_failure_record(username=username, ip=ip)
            raise
        if self.get_user() is not None:
            login_success_record(username=username)
        return cleaned
