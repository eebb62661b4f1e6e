"""Audiences in a real browser (issues 11 and 12): the burst form's live count follows
the lists chosen in its autocomplete, pre-flight names the sources, and a member leaves
one list on the preference page. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from campaigns.engine import tokens
from campaigns.models import EmailBurst
from members import services as member_services
from tests.admin.browser import login, screenshot
from tests.factories import MemberFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def choose(page, field: str, text: str) -> None:
    """Pick `text` in the select2 autocomplete of `field`."""
    page.locator(f".field-{field} .select2-selection").first.click()
    page.locator(".select2-container--open .select2-search__field").fill(text)
    page.locator(".select2-results__option", has_text=text).first.click()


def count_text(page) -> str:
    return page.locator("#audience-count").inner_text()


def test_the_form_counts_the_audience_live_and_preflight_names_the_sources(page, live_server, superuser):
    people = MemberFactory.create_bulk(12, prefix="town")
    board = member_services.mailing_list_create(name="Board")
    helpers = member_services.mailing_list_create(name="Helpers")
    out = member_services.mailing_list_create(name="Away this summer")
    member_services.list_members_add(list_id=board.pk, member_ids=[p.pk for p in people[:5]])
    member_services.list_members_add(list_id=helpers.pk, member_ids=[p.pk for p in people[3:9]])
    member_services.list_members_add(list_id=out.pk, member_ids=[people[0].pk])
    login(page, "root", "root-pass-1234")

    page.goto("/admin/campaigns/emailburst/add/")
    page.wait_for_function("document.querySelector('#audience-count').textContent.includes('nobody')")
    page.fill("input[name=name]", "Summer letter")
    page.fill("input[name=subject]", "News for {{ member.first_name|default:'you' }}")
    page.fill("textarea[name=body]", "Hello! {{ unsubscribe_url }}")
    choose(page, "lists", "Board")
    page.wait_for_function("document.querySelector('#audience-count').textContent.includes('Would mail 5 ')")
    choose(page, "lists", "Helpers")
    page.wait_for_function("document.querySelector('#audience-count').textContent.includes('Would mail 9 ')")
    choose(page, "exclude_lists", "Away")
    page.wait_for_function("document.querySelector('#audience-count').textContent.includes('Would mail 8 ')")
    screenshot(page, "audience-burst-form")
    page.click("button[name=_continue]")
    page.wait_for_url("**/change/")
    burst = EmailBurst.objects.get(name="Summer letter")
    assert sorted(burst.lists.values_list("name", flat=True)) == ["Board", "Helpers"]

    page.goto(f"/admin/campaigns/emailburst/{burst.pk}/preflight/")
    sources = page.locator("#preflight-sources").inner_text()
    assert "On list “Board”" in sources and "On list “Helpers”" in sources
    assert "Left out: on list “Away this summer”" in sources
    assert sources.count("Left out") == 1
    assert page.locator('[data-preflight="to_send"]').inner_text().strip() == "8"
    screenshot(page, "audience-preflight")
    assert page.js_errors == []


def test_a_member_leaves_one_list_on_the_preference_page(page, live_server, settings):
    settings.ORGANISATION_NAME = "Riverside Rowing Club"
    ada = MemberFactory(username="ada", email="ada@example.test")
    board = member_services.mailing_list_create(name="Board")
    crew = member_services.mailing_list_create(name="Regatta crew")
    for mailing_list in (board, crew):
        member_services.list_members_add(list_id=mailing_list.pk, member_ids=[ada.pk])

    page.goto(f"/unsubscribe/{tokens.unsubscribe_token(ada.pk)}/")
    assert "Riverside Rowing Club" in page.content()
    screenshot(page, "preference-page")
    page.locator("li", has_text="Board").get_by_role("button", name="Leave this list").click()
    page.get_by_text("You left “Board”").wait_for()
    assert page.locator("li", has_text="Board").count() == 0
    screenshot(page, "preference-page-left")
    page.get_by_role("button", name="Unsubscribe from everything").click()
    page.get_by_role("button", name="Subscribe again").wait_for()
    screenshot(page, "preference-page-unsubscribed")
