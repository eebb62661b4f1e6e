"""Watch a Playwright page for Content-Security-Policy violations.

Two witnesses, because each misses cases: the `securitypolicyviolation` event (from an
init script, so it is listening before any page script runs, in every frame whose
scripts run) and Chromium's console messages ("Refused to execute inline script
because it violates the following Content Security Policy directive...").
"""

from __future__ import annotations

from typing import Any

LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolations.push(
        `${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.documentURI} (${e.sourceFile}:${e.lineNumber})`
    );
});
"""


def watch_csp(page: Any) -> Any:
    """Start collecting violations on this page (before its first navigation)."""
    page.csp_console = []
    page.on(
        "console",
        lambda msg: (
            page.csp_console.append(f"{msg.location.get('url')}: {msg.text}")
            if "Content Security Policy" in msg.text
            else None
        ),
    )
    page.add_init_script(LISTENER)
    return page


def csp_violations(page: Any) -> list[str]:
    """Everything reported since the page was watched, in any frame of the current document."""
    found = list(page.csp_console)
    for frame in page.frames:
        try:
            found += frame.evaluate("window.__cspViolations || []")
        except Exception:  # a sandboxed frame runs no script, not even ours
            continue
    return found


def settle(page: Any, quiet_ms: int = 60_000) -> None:
    """Wait until the page has loaded and its requests have finished.

    Generous: on a loaded CI machine the live server answers slowly, and a page that
    polls (a sending burst's live report) is never idle for long, so an idle network is
    waited for but not required once the page has loaded."""
    page.wait_for_load_state("load", timeout=quiet_ms)
    try:
        page.wait_for_load_state("networkidle", timeout=10_000)
    except Exception as exc:  # playwright's TimeoutError: a polling page
        if "Timeout" not in type(exc).__name__:
            raise
