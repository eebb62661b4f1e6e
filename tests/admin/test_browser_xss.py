"""In chromium, no hostile string runs anywhere in the admin or on the unsubscribe
page: not with the Content-Security-Policy, and not without it either, because
escaping is the real defence (the policy is the second wall)."""

from __future__ import annotations

import csv
import re
from urllib.parse import urlsplit

import pytest

from campaigns.engine.tokens import unsubscribe_url
from tests.admin.browser import login, screenshot
from tests.admin.csp_watch import csp_violations, settle, watch_csp
from tests.admin.xss_world import FIRST_NAME, LAST_NAME, admin_pages, hostile_world, img

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def assert_nothing_ran(page, name: str) -> None:
    assert page.evaluate("() => window.__xss") is None, name
    # Escaped, a payload is text: no element of the page carries its marker.
    assert page.locator("[data-xss]").count() == 0, name


@pytest.mark.parametrize("policy", ["with the policy", "escaping alone"])
def test_no_payload_runs_in_the_admin(page, superuser, live_server, settings, tmp_path, policy):
    if policy == "escaping alone":
        settings.CONTENT_SECURITY_POLICY = None
    world = hostile_world(author=superuser)
    watch_csp(page)
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        if dialog.type == "beforeunload":  # unfold's "unsaved changes" warning
            dialog.accept()
            return
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    login(page, "root", "root-pass-1234")

    for name, url in admin_pages(world).items():
        response = page.goto(url)
        assert response.status == 200, (name, response.status)
        assert ("content-security-policy" in response.headers) == (policy == "with the policy"), name
        settle(page)
        assert_nothing_ran(page, name)
        if name == "delete":
            # unfold's (and Django's) delete page loads the admin's date widgets without
            # the JavaScript catalog they call: an error of theirs, with or without a policy.
            page.js_errors[:] = [
                e for e in page.js_errors if not re.fullmatch(r"gettext\w* is not defined", e)
            ]
        assert page.js_errors == [], name

    # The preview's HTML is the email itself, markup included, but inert: sandboxed,
    # under a policy without script, and nothing breaks out into the admin page.
    page.goto(admin_pages(world)["preview"])
    frame = page.frame_locator("#preview-html")
    assert frame.locator("p").first.inner_text().startswith("Hi <img data-xss")
    assert frame.locator("img[data-xss]").count() == 1
    assert frame.locator("[data-ran]").count() == 0
    assert page.locator("#preview-html").get_attribute("onload") is None
    assert_nothing_ran(page, "preview")
    screenshot(page, "xss-preview")

    # An import whose rows carry payloads: the preview (new rows, invalid rows) shows them as text.
    csv_path = tmp_path / "members.csv"
    with csv_path.open("w", newline="") as out:
        rows = [("email", "first_name", "last_name"), ("new@example.test", FIRST_NAME, LAST_NAME)]
        csv.writer(out).writerows([*rows, (f"{img(30)}@example.test", "Bad", "Row")])
    page.goto("/admin/members/member/import/")
    page.set_input_files("input[name=import_file]", str(csv_path))
    with page.expect_navigation():
        page.click("form[enctype='multipart/form-data'] button[type=submit]")
    page.locator("#import-invalid-rows").wait_for()
    assert "data-xss" in page.locator("#import-invalid-rows").inner_text()
    assert_nothing_ran(page, "import preview")

    # Choosing the hostile member in the autocomplete of the burst page (select2).
    page.goto(admin_pages(world)["draft"])
    page.locator(".field-recipients .select2-selection").click()
    page.locator(".field-recipients .select2-search__field").fill("victim")
    page.locator(".select2-results__option", has_text="data-xss").first.wait_for()
    assert_nothing_ran(page, "recipients autocomplete")

    # The unsubscribe page, as the member opens it from the email.
    page.goto(urlsplit(unsubscribe_url(world.victim.pk)).path)
    assert "data-xss" in page.locator("main").inner_text()
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert_nothing_ran(page, "unsubscribed")

    assert dialogs == []
    assert page.js_errors == []
    if policy == "with the policy":
        # Only the email's own markup, inside the preview frame, is blocked; a violation
        # anywhere else would be a payload that escaping let through.
        assert [v for v in csp_violations(page) if "part=html" not in v] == []
