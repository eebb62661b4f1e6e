"""In a real browser, under the admin's Content-Security-Policy: a segment is built as
rows of field / op / value, the number of matching members follows every change (with a
bad condition named as it is made), and the saved segment is in the list with its rules
in words and its count."""

from __future__ import annotations

import re

import pytest

from members import services
from members.models import Segment
from tests.admin.browser import login, screenshot
from tests.admin.csp_watch import csp_violations, watch_csp
from tests.factories import MemberFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def preview_count(page) -> str:
    return page.locator("[data-preview-count]").inner_text()


def wait_for_count(page, text: str) -> None:
    page.locator("[data-preview-count]", has_text=re.compile(rf"^{re.escape(text)}$")).wait_for()


def test_a_segment_is_built_as_rows_with_a_live_count_and_saved(page, live_server, superuser):
    watch_csp(page)
    verified = MemberFactory.create_bulk(6, prefix="ver", is_verified=True)
    MemberFactory.create_bulk(4, prefix="unv", is_verified=False)
    board = services.mailing_list_create(name="Board")
    services.list_members_add(list_id=board.pk, member_ids=[m.pk for m in verified[:2]])
    everyone = 11  # the members and the superuser

    login(page, "root", "root-pass-1234")
    page.goto("/admin/members/segment/add/")
    rows = page.locator("[data-rules-pane=rows]")
    rows.wait_for()
    assert page.locator("[data-rules-pane=json]").is_hidden()  # the script took over the textarea
    assert preview_count(page) == f"{everyone} members match"  # rendered with the page
    page.fill("input[name=name]", "Verified board")

    # Row 1: verified is yes (the first field, as added).
    page.click("[data-rules-add]")
    wait_for_count(page, "6 members match")

    # Row 2: on list is Board.
    page.click("[data-rules-add]")
    second = page.locator("[data-rules-row]").nth(1)
    second.locator("select[aria-label=Field]").select_option("list")
    second.locator("select[aria-label=List]").select_option(label="Board")
    wait_for_count(page, "2 members match")
    sample = page.locator("[data-preview-list] a")
    assert sample.count() == 2
    assert sample.first.get_attribute("href") == f"/admin/members/member/{verified[0].pk}/change/"

    # Row 3, left without its text: the condition is named, then typed and gone again.
    page.click("[data-rules-add]")
    third = page.locator("[data-rules-row]").nth(2)
    third.locator("select[aria-label=Field]").select_option("email")
    error = page.locator("[data-preview-error]")
    error.filter(has_text="Condition 3").wait_for()
    assert "email equals needs some text" in error.inner_text()
    screenshot(page, "segments-00-a-bad-condition-named")
    third.locator("select[aria-label=Condition]").select_option("endswith")
    third.locator("input[aria-label=Value]").fill("@example.test")
    wait_for_count(page, "2 members match")
    assert error.is_hidden()
    screenshot(page, "segments-01-rows-and-live-count")

    page.click("button[name=_save]")
    page.wait_for_url("**/admin/members/segment/")
    segment = Segment.objects.get(name="Verified board")
    assert segment.rules == {
        "match": "all",
        "conditions": [
            {"field": "is_verified", "op": "is", "value": True},
            {"field": "list", "op": "in", "value": board.pk},
            {"field": "email", "op": "endswith", "value": "@example.test"},
        ],
    }
    row = page.locator("#result_list tbody tr", has_text="Verified board")
    assert "Verified is True and on list in" in row.inner_text()
    assert row.locator("td.field-members_column").inner_text().strip() == "2"
    screenshot(page, "segments-02-list")

    # Opened again: the same rows, built from the stored rules.
    page.click("#result_list a:text('Verified board')")
    page.locator("[data-rules-row]").nth(2).wait_for()
    assert page.locator("[data-rules-row]").count() == 3
    assert preview_count(page) == "2 members match"
    screenshot(page, "segments-03-change-page")
    page.click("[data-rules-mode=json]")
    assert '"op": "endswith"' in page.locator("textarea[name=rules]").input_value()
    screenshot(page, "segments-04-as-json")

    # The list's pages, for the record.
    page.goto("/admin/members/mailinglist/")
    assert page.locator("#result_list td.field-members_column").inner_text().strip() == "2"
    screenshot(page, "lists-01-list")
    page.goto(f"/admin/members/mailinglist/{board.pk}/change/")
    link = page.locator("a", has_text="view them")
    assert link.get_attribute("href") == f"/admin/members/member/?mailing_list={board.pk}"
    screenshot(page, "lists-02-change-page")

    assert page.js_errors == []
    assert csp_violations(page) == []


def test_without_the_script_the_rules_are_typed_as_json(page, live_server, superuser):
    # unfold itself needs JavaScript (Alpine shows the page), so "without JavaScript"
    # here is without the rows editor's script: the textarea is the editor.
    page.route("**/segment_rules.js", lambda route: route.abort())
    login(page, "root", "root-pass-1234")
    page.goto("/admin/members/segment/add/")
    textarea = page.locator("textarea[name=rules]")
    assert textarea.is_visible()
    assert page.locator("[data-rules-pane=rows]").is_hidden()
    assert page.locator("[data-rules-modes]").is_hidden()
    page.fill("input[name=name]", "Staff")
    textarea.fill('{"match": "any", "conditions": [{"field": "is_staff", "op": "is", "value": true}]}')
    screenshot(page, "segments-05-without-the-script")
    page.click("button[name=_save]")
    page.wait_for_url("**/admin/members/segment/")
    assert Segment.objects.get(name="Staff").rules == {
        "match": "any",
        "conditions": [{"field": "is_staff", "op": "is", "value": True}],
    }
