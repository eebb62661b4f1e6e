"""django-csp's middleware, with the admin's one relaxation (config/security.py says why)."""

from __future__ import annotations

from typing import Any

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.http import HttpRequest, HttpResponseBase

from config.security import ADMIN_SCRIPTS


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
