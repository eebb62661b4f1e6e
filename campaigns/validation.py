"""What a burst must hold before it can be saved or sent: checks without side
effects, shared by the services, the pre-flight (`campaigns.selectors`) and the
admin's compose form."""

from __future__ import annotations

from campaigns.templating import TemplateProblem, check_templates
from common.errors import InvalidInput


def _no_newlines(field_name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise InvalidInput(f"{field_name} must not contain line breaks", field=field_name)


def burst_validate(*, subject: str, body: str, html_body: str = "", from_name: str = "") -> None:
    """Refuse what can never be sent: header injection, broken templates."""
    if not subject.strip():
        raise InvalidInput("subject is required", field="subject")
    if len(subject) > 200:
        raise InvalidInput("subject must be at most 200 characters", field="subject")
    if not body.strip():
        raise InvalidInput("body is required", field="body")
    _no_newlines("subject", subject)
    _no_newlines("from_name", from_name)
    try:
        check_templates(subject=subject, body=body, html_body=html_body)
    except TemplateProblem as exc:
        raise InvalidInput(exc.message, field=exc.field) from None
