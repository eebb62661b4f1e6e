"""The preference page (issue 12 point 6): the unsubscribe link's page shows the
organisation, the member's lists with a way to leave each, and "unsubscribe from
everything"; it needs no login, changes nothing on GET, and leaving a list is
honoured by later bursts that address it."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from campaigns import selectors
from campaigns.engine import tokens
from campaigns.models import EmailBurst
from members import services as member_services
from members.models import ListMembership, Member
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada() -> Member:
    return MemberFactory(username="ada", email="ada@example.test")


@pytest.fixture
def lists(ada):
    board = member_services.mailing_list_create(name="Board")
    helpers = member_services.mailing_list_create(name="Helpers")
    member_services.mailing_list_create(name="Secret list")  # ada is not on it
    for mailing_list in (board, helpers):
        member_services.list_members_add(list_id=mailing_list.pk, member_ids=[ada.pk])
    return board, helpers


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


def path_for(member: Member) -> str:
    return reverse("unsubscribe", args=[tokens.unsubscribe_token(member.pk)])


def csrf_of(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def test_the_page_shows_the_organisation_and_only_the_members_lists(browser, ada, lists, settings):
    settings.ORGANISATION_NAME = "Riverside Rowing Club"
    html = browser.get(path_for(ada)).content.decode()
    assert "Riverside Rowing Club" in html
    assert "Board" in html and "Helpers" in html
    assert "Secret list" not in html
    assert html.count("Leave this list") == 2
    assert "Unsubscribe from everything" in html
    assert ListMembership.objects.filter(member=ada).count() == 2  # GET changed nothing


def test_leaving_a_list_takes_the_member_off_it_and_nothing_else(browser, ada, lists):
    board, helpers = lists
    html = browser.get(path_for(ada)).content.decode()
    response = browser.post(
        path_for(ada), {"action": "leave", "list": board.pk, "csrfmiddlewaretoken": csrf_of(html)}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "You left “Board”" in page
    assert "Leave this list" in page and page.count("Leave this list") == 1
    assert list(ListMembership.objects.filter(member=ada).values_list("mailing_list_id", flat=True)) == [
        helpers.pk
    ]
    assert Member.objects.get(pk=ada.pk).unsubscribed_at is None


def test_leaving_needs_the_pages_csrf_token(browser, ada, lists):
    board, _ = lists
    response = browser.post(path_for(ada), {"action": "leave", "list": board.pk})
    assert response.status_code == 403
    assert ListMembership.objects.filter(member=ada).count() == 2


def test_a_list_the_member_is_not_on_cannot_be_touched(browser, ada, lists):
    other = MemberFactory()
    secret = member_services.mailing_list_create(name="Other")
    member_services.list_members_add(list_id=secret.pk, member_ids=[other.pk])
    html = browser.get(path_for(ada)).content.decode()
    browser.post(path_for(ada), {"action": "leave", "list": secret.pk, "csrfmiddlewaretoken": csrf_of(html)})
    assert ListMembership.objects.filter(mailing_list=secret).count() == 1


def test_one_click_still_unsubscribes_from_everything(browser, ada, lists):
    response = browser.post(
        path_for(ada), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert Member.objects.get(pk=ada.pk).unsubscribed_at is not None
    assert "Subscribe again" in response.content.decode()


def test_a_later_burst_to_the_list_leaves_out_who_left_it(browser, ada, lists, staff_user):
    board, _ = lists
    bob = MemberFactory()
    member_services.list_members_add(list_id=board.pk, member_ids=[bob.pk])
    html = browser.get(path_for(ada)).content.decode()
    browser.post(path_for(ada), {"action": "leave", "list": board.pk, "csrfmiddlewaretoken": csrf_of(html)})
    from campaigns import services

    burst = services.burst_create(subject="Board news", body="Hello", lists=[board.pk], created_by=staff_user)
    recipients = set(
        selectors.burst_recipients(EmailBurst.objects.get(pk=burst.pk)).values_list("pk", flat=True)
    )
    assert recipients == {bob.pk}
