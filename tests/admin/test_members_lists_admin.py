"""The members list and lists (issue 12 point 5): filter by list, "Add to list…",
"Remove from list…", "New burst to the selected members", and the member's lists
on their page."""

from __future__ import annotations

import pytest

from campaigns.models import BurstStatus, EmailBurst
from members import services
from members.models import ListMembership
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/members/member/"


@pytest.fixture
def board():
    return services.mailing_list_create(name="Board")


@pytest.fixture
def people():
    return MemberFactory.create_bulk(6, prefix="person")


def act(client, action, members, **extra):
    data = {"action": action, "_selected_action": [m.pk for m in members], "index": 0, **extra}
    return client.post(LIST, data, follow=True)


def test_the_members_list_filters_by_list(root_client, board, people):
    services.list_members_add(list_id=board.pk, member_ids=[people[1].pk, people[3].pk])
    page = root_client.get(LIST, {"mailing_list": board.pk}).content.decode()
    assert "person01@example.test" in page and "person03@example.test" in page
    assert "person02@example.test" not in page
    assert root_client.get(LIST, {"mailing_list": "x"}).status_code == 200


def test_add_to_list_asks_which_list_then_adds_the_selected(root_client, board, people):
    page = act(root_client, "add_to_list", people[:2]).content.decode()
    assert "Add 2 members to a list" in page
    assert "Board (0)" in page
    assert ListMembership.objects.count() == 0

    done = act(root_client, "add_to_list", people[:2], apply=1, mailing_list=board.pk).content.decode()
    assert "2 members added to “Board”." in done
    assert set(ListMembership.objects.values_list("member_id", flat=True)) == {people[0].pk, people[1].pk}
    again = act(root_client, "add_to_list", people[:3], apply=1, mailing_list=board.pk).content.decode()
    assert "1 member added to “Board”." in again


def test_add_to_list_with_select_across_adds_every_filtered_member(root_client, board, people):
    data = {"action": "add_to_list", "_selected_action": [people[0].pk], "select_across": 1, "index": 0}
    page = root_client.post(LIST, data).content.decode()
    assert "Add 7 members to a list" in page  # the six and the superuser signed in
    data.update(apply=1, mailing_list=board.pk)
    root_client.post(LIST, data, follow=True)
    assert ListMembership.objects.filter(mailing_list=board).count() == 7


def test_remove_from_list(root_client, board, people):
    services.list_members_add(list_id=board.pk, member_ids=[m.pk for m in people])
    done = act(root_client, "remove_from_list", people[:4], apply=1, mailing_list=board.pk).content.decode()
    assert "4 members removed from “Board”." in done
    assert ListMembership.objects.filter(mailing_list=board).count() == 2


def test_an_unknown_list_is_an_error_on_the_page(root_client, people, board):
    page = act(root_client, "add_to_list", people[:1], apply=1, mailing_list=9999).content.decode()
    assert "mailing list 9999 does not exist" in page
    assert ListMembership.objects.count() == 0


def test_without_lists_the_page_offers_to_create_one(root_client, people):
    page = act(root_client, "add_to_list", people[:1]).content.decode()
    assert "There is no mailing list yet." in page


def test_new_burst_to_the_selected_members_opens_a_draft_with_them_chosen(root_client, people):
    response = act(root_client, "new_burst_to_selected", people[1:4])
    burst = EmailBurst.objects.get()
    assert response.redirect_chain[-1][0] == f"/admin/campaigns/emailburst/{burst.pk}/change/"
    assert burst.status == BurstStatus.DRAFT
    assert set(burst.recipients.values_list("pk", flat=True)) == {m.pk for m in people[1:4]}
    assert "A new draft addressed to the 3 selected members" in response.content.decode()


def test_the_member_page_shows_the_members_lists(root_client, board, people):
    helpers = services.mailing_list_create(name="Helpers")
    services.list_members_add(list_id=board.pk, member_ids=[people[0].pk])
    services.list_members_add(list_id=helpers.pk, member_ids=[people[0].pk])
    page = root_client.get(f"{LIST}{people[0].pk}/change/").content.decode()
    assert "Mailing lists" in page
    assert ">Board</a>" in page and ">Helpers</a>" in page
    assert "On no list." in root_client.get(f"{LIST}{people[1].pk}/change/").content.decode()
