"""django-csp's middleware, with the admin's one relaxation (config/security.py says why),
and the 503 for a database or task queue that does not answer (config/unavailable.py)."""

from __future__ import annotations

from typing import Any

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from config.security import ADMIN_SCRIPTS
from config.unavailable import UNAVAILABLE_ERRORS, unavailable_response


class CSPMiddleware(BaseCSPMiddleware):
    """Adds `ADMIN_SCRIPTS` on the admin site's pages, except those that set a policy of
    their own (the preview frame)."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request=request, response=response, report_only=report_only)
        match: Any = getattr(request, "resolver_match", None)
        if match is not None and "admin" in match.namespaces and parts.config is None and not parts.update:
            parts.update = ADMIN_SCRIPTS
        return parts


class ServiceUnavailableMiddleware:
    """A view (or its template) that fails because PostgreSQL or Redis does not answer
    answers 503 with Retry-After instead of a 500: every page but the API's, which
    config.api maps itself."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, UNAVAILABLE_ERRORS):
            return unavailable_response(request, exception)
        return None
