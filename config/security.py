"""The Content-Security-Policies (sent by `config.middleware.CSPMiddleware`, django-csp's).

Only constants: config/settings.py imports this module.

Escaping is the defence against hostile member and staff content; the policy is the
second wall: should a string ever reach a page unescaped, no inline script or event
handler it carries runs, and no page can be framed, load a plugin or change its base URL.

- `CONTENT_SECURITY_POLICY`: every page (admin, API, /api/docs, unsubscribe pages).
  Scripts only from our own origin, never inline. `'unsafe-inline'` for styles only (it
  runs no code): unfold's templates and Alpine's transitions write `style` attributes.
- `ADMIN_SCRIPTS`: added for the admin's pages only. unfold 0.91 ships Alpine.js's
  standard build, which compiles every `x-data`, `x-on:*`, `x-show`... expression of
  unfold's templates with `new Function`: without `'unsafe-eval'` the admin stays hidden
  behind `x-cloak` and no dropdown, tab or sidebar works.
- `PREVIEW_FRAME_POLICY`: the rendered HTML of a burst preview, served alone and shown in
  a sandboxed iframe of the preview page: no script, no form, no plugin, nothing but the
  images and inline styles an email may carry.
- `NO_SCRIPT`: a `csp_replace` for pages with no JavaScript at all (unsubscribe pages).
"""

from __future__ import annotations

from csp.constants import NONE, SELF, UNSAFE_EVAL, UNSAFE_INLINE

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        # The preview page frames the preview's HTML from our own origin.
        "frame-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

PREVIEW_FRAME_POLICY = {
    "default-src": [NONE],
    "img-src": ["https:", "data:"],
    "style-src": [UNSAFE_INLINE],
    "object-src": [NONE],
    "base-uri": [NONE],
    "form-action": [NONE],
    # Only the preview page (same origin) may frame it.
    "frame-ancestors": [SELF],
    # Even opened on its own, the document gets a unique origin and no script.
    "sandbox": True,
}

NO_SCRIPT = {"script-src": [NONE], "connect-src": [NONE], "frame-src": [NONE]}

ADMIN_SCRIPTS = {"script-src": [UNSAFE_EVAL]}
