"""The one family of errors services raise when they refuse something.

Services know nothing of HTTP: the API maps each type to a status in one place
(`common.api.error_status`), the admin shows the message. `field` names the
offending input when there is one.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal with a message meant for the person who asked."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ServiceError):
    """Well-formed but wrong input (an unknown id, a date in the past, a broken template).

    For a template, `line` (1-based, None when unknown) and `snippet` (the offending
    text, short) say where in the field the problem is."""

    def __init__(
        self, message: str, field: str | None = None, *, line: int | None = None, snippet: str = ""
    ) -> None:
        super().__init__(message, field)
        self.line = line
        self.snippet = snippet


class NotFound(ServiceError):
    """The object does not exist (any more)."""


class Forbidden(ServiceError):
    """The caller may not do this (a right they lack)."""


class Conflict(ServiceError):
    """The request clashes with what is stored (an address already taken)."""


class IllegalState(Conflict):
    """The action is not legal in the object's current state."""


class TooLarge(ServiceError):
    """Above a configured size limit."""


class Throttled(ServiceError):
    """Too many attempts; `wait` is how many seconds to wait before trying again."""

    def __init__(self, message: str, wait: int, field: str | None = None) -> None:
        super().__init__(message, field)
        self.wait = wait


class ServiceUnavailable(Exception):
    """A service this needs (the database, the task queue) does not answer: a 503, not a
    refusal (config/unavailable.py). Raised before anything is changed, so asking again
    later is safe."""

    def __init__(self, service: str) -> None:
        super().__init__(f"the {service} is not answering")
        self.service = service
