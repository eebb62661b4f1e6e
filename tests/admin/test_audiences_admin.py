"""The admin's mailing list and segment pages (SPEC section 10): lists counted by their
counter, segments counted all in one query, saving and deleting through the services
(their refusals shown, not a 500), a bad rule named on the form, and the live preview's
JSON with its rights."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from campaigns.models import BurstStatus
from members import services
from members.models import MailingList, Segment
from tests.factories import BurstFactory, MemberFactory, StaffFactory

pytestmark = pytest.mark.django_db

LISTS = "/admin/members/mailinglist/"
SEGMENTS = "/admin/members/segment/"
PREVIEW = "/admin/members/segment/preview/"
VERIFIED = {"match": "all", "conditions": [{"field": "is_verified", "op": "is", "value": True}]}


def queries_of(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def segment_post(name: str, rules: Any, description: str = "") -> dict[str, str]:
    return {
        "name": name,
        "description": description,
        "rules": rules if isinstance(rules, str) else json.dumps(rules),
        "_save": "Save",
    }


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- mailing lists ---------------------------------------------------------------------------------


def test_the_list_page_shows_each_lists_counter_in_the_same_number_of_queries_for_2_and_20_lists(
    root_client,
):
    members = MemberFactory.create_bulk(3, prefix="lm")
    lists = [services.mailing_list_create(name=f"List {i:02d}") for i in range(2)]
    services.list_members_add(list_id=lists[0].pk, member_ids=[m.pk for m in members])
    few = queries_of(root_client, LISTS)
    for i in range(2, 20):
        services.mailing_list_create(name=f"List {i:02d}", description="x" * 200)
    many = queries_of(root_client, LISTS)

    assert many == few
    response = root_client.get(LISTS)
    first = response.context["cl"].result_list[0]
    assert first.name == "List 00" and first.member_count == 3
    assert f'href="/admin/members/member/?mailing_list={lists[0].pk}">3</a>' in response.content.decode()
    assert "x" * 79 + "…" in response.content.decode()  # long descriptions cut


def test_the_list_page_searches_by_name(root_client):
    services.mailing_list_create(name="Board")
    services.mailing_list_create(name="Volunteers")
    response = root_client.get(LISTS, {"q": "boa"})
    assert [str(x) for x in response.context["cl"].result_list] == ["Board"]


def test_a_list_is_created_edited_and_deleted_through_the_admin(root_client):
    response = root_client.post(
        f"{LISTS}add/", {"name": "  The   board ", "description": "Who runs it", "_save": "Save"}
    )
    assert response.status_code == 302
    board = MailingList.objects.get()
    assert (board.name, board.description) == ("The board", "Who runs it")

    response = root_client.post(
        f"{LISTS}{board.pk}/change/", {"name": "Board", "description": "", "_save": "Save"}, follow=True
    )
    board.refresh_from_db()
    assert (board.name, board.description) == ("Board", "")
    assert any("was changed successfully" in m for m in messages_of(response))

    response = root_client.post(f"{LISTS}{board.pk}/delete/", {"post": "yes"}, follow=True)
    assert not MailingList.objects.exists()
    assert any("was deleted successfully" in m for m in messages_of(response))


def test_a_list_name_taken_in_another_case_is_a_form_error(root_client):
    services.mailing_list_create(name="Board")
    response = root_client.post(f"{LISTS}add/", {"name": "BOARD", "description": "", "_save": "Save"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == [
        "A mailing list named “Board” already exists."
    ]
    assert MailingList.objects.count() == 1


def test_a_lists_page_says_how_many_members_it_has_and_links_to_them(root_client):
    board = services.mailing_list_create(name="Board")
    services.list_members_add(list_id=board.pk, member_ids=[m.pk for m in MemberFactory.create_bulk(3)])
    response = root_client.get(f"{LISTS}{board.pk}/change/")
    assert response.status_code == 200
    assert (
        f'3 members — <a href="/admin/members/member/?mailing_list={board.pk}"' in response.content.decode()
    )
    assert "memberships" not in response.content.decode()  # no inline of the members


def test_deleting_a_list_a_scheduled_burst_uses_shows_why_and_keeps_it(root_client):
    board = services.mailing_list_create(name="Board")
    burst = BurstFactory(name="Spring news", status=BurstStatus.SCHEDULED)
    burst.lists.add(board)

    response = root_client.post(f"{LISTS}{board.pk}/delete/", {"post": "yes"}, follow=True)

    assert MailingList.objects.filter(pk=board.pk).exists()
    assert response.redirect_chain[-1][0] == f"{LISTS}{board.pk}/change/"
    assert messages_of(response) == [
        "Not deleted: this list is the audience of a burst that is not finished: “Spring news” (scheduled)."
    ]


def test_deleting_lists_in_bulk_keeps_those_in_use_and_says_why(root_client):
    board = services.mailing_list_create(name="Board")
    spare = services.mailing_list_create(name="Spare")
    burst = BurstFactory(name="Gala", status=BurstStatus.SENDING)
    burst.exclude_lists.add(board)

    response = root_client.post(
        LISTS,
        {"action": "delete_selected", "_selected_action": [board.pk, spare.pk], "post": "yes"},
        follow=True,
    )

    assert list(MailingList.objects.values_list("name", flat=True)) == ["Board"]
    assert (
        "Not deleted (this list is the audience of a burst that is not finished: “Gala” (sending)): Board."
        in messages_of(response)
    )


def test_staff_without_the_list_permission_are_refused_and_non_staff_are_sent_to_log_in(member):
    board = services.mailing_list_create(name="Board")
    outsider = StaffFactory(permissions__apps=["campaigns"])
    for url in (LISTS, f"{LISTS}{board.pk}/change/"):
        assert client_for(outsider).get(url).status_code == 403
        response = client_for(member).get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- segments: the list ---------------------------------------------------------------------------------


def test_the_segment_page_counts_every_segment_in_the_same_number_of_queries_for_2_and_20(root_client):
    MemberFactory.create_bulk(4, prefix="sv", is_verified=True)
    MemberFactory.create_bulk(3, prefix="su", is_verified=False)
    board = services.mailing_list_create(name="Board")
    services.segment_create(name="Segment 00", rules=VERIFIED)
    services.segment_create(
        name="Segment 01",
        rules={"match": "any", "conditions": [{"field": "list", "op": "not_in", "value": board.pk}]},
    )
    few = queries_of(root_client, SEGMENTS)
    for i in range(2, 20):
        rules = {
            "match": "all",
            "conditions": [{"field": "email", "op": "contains", "value": f"s{'uv'[i % 2]}"}],
        }
        services.segment_create(name=f"Segment {i:02d}", rules=rules)
    many = queries_of(root_client, SEGMENTS)

    assert many == few
    response = root_client.get(SEGMENTS)
    page = response.content.decode()
    assert "Verified is True" in page  # the rules in words
    counts = {s.name: s.matching_count for s in response.context["cl"].result_list}
    assert counts["Segment 00"] == 4
    assert counts["Segment 01"] == 8  # nobody is on the list: the superuser too
    assert counts["Segment 02"] == 3 and counts["Segment 03"] == 4


# --- segments: the form ---------------------------------------------------------------------------------


def test_a_segment_is_created_edited_and_deleted_through_the_admin(root_client):
    response = root_client.post(f"{SEGMENTS}add/", segment_post("Verified", VERIFIED, "The checked ones"))
    assert response.status_code == 302
    segment = Segment.objects.get()
    assert (segment.name, segment.description, segment.rules) == ("Verified", "The checked ones", VERIFIED)

    staff_rules = {"match": "any", "conditions": [{"field": "is_staff", "op": "is", "value": False}]}
    response = root_client.post(f"{SEGMENTS}{segment.pk}/change/", segment_post("Not staff", staff_rules))
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.rules) == ("Not staff", staff_rules)

    root_client.post(f"{SEGMENTS}{segment.pk}/delete/", {"post": "yes"})
    assert not Segment.objects.exists()


def test_a_segment_saved_without_conditions_matches_everyone(root_client):
    response = root_client.post(f"{SEGMENTS}add/", segment_post("Everyone", ""))
    assert response.status_code == 302
    assert Segment.objects.get().rules == {"match": "all", "conditions": []}


@pytest.mark.parametrize(
    ("rules", "error"),
    [
        (
            {
                "match": "all",
                "conditions": [VERIFIED["conditions"][0], {"field": "email", "op": "like", "value": "x"}],
            },
            "Condition 2: unknown op 'like' for email (use equals, contains, endswith, empty, not_empty)",
        ),
        (
            {"conditions": [{"field": "shoe_size", "op": "is", "value": 42}]},
            "Condition 1: unknown field 'shoe_size'",
        ),
        (
            {"conditions": [{"field": "birth_month", "op": "is", "value": "May"}]},
            "Condition 1: birth_month is needs a month number from 1 to 12, not 'May'",
        ),
        (
            {"conditions": [VERIFIED["conditions"][0], {"field": "list", "op": "in", "value": 999}]},
            "Condition 2: list 999 does not exist",
        ),
        (
            {"conditions": [{"field": "received", "op": "yes", "value": 999}]},
            "Condition 1: burst 999 does not exist",
        ),
        ('{"match": "all", "conditions": [', "Enter a valid JSON."),
    ],
)
def test_a_bad_rule_is_shown_on_the_form_naming_the_condition(root_client, rules, error):
    response = root_client.post(f"{SEGMENTS}add/", segment_post("Bad", rules))
    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["rules"]
    assert message.startswith(error)
    assert error.replace("'", "&#x27;") in response.content.decode()
    assert not Segment.objects.exists()


def test_a_refused_segment_keeps_what_was_typed_and_the_preview_says_why(root_client):
    typed = {"match": "all", "conditions": [{"field": "email", "op": "equals", "value": ""}]}
    response = root_client.post(f"{SEGMENTS}add/", segment_post("Typed", typed))
    page = response.content.decode()
    assert json.loads(response.context["adminform"].form["rules"].value()) == typed
    assert page.count("Condition 1: email equals needs some text") == 2  # under the field and in the preview


def test_a_segment_name_taken_in_another_case_is_a_form_error(root_client):
    services.segment_create(name="Verified", rules=VERIFIED)
    response = root_client.post(f"{SEGMENTS}add/", segment_post("verified", VERIFIED))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == ["A segment named “Verified” already exists."]


def test_the_segment_page_shows_its_count_and_first_members_when_it_loads(root_client):
    verified = MemberFactory.create_bulk(
        7, prefix="pv", is_verified=True, first_name="Vera", last_name="Fied"
    )
    MemberFactory.create_bulk(2, prefix="pu", is_verified=False)
    segment = services.segment_create(name="Verified", rules=VERIFIED)

    response = root_client.get(f"{SEGMENTS}{segment.pk}/change/")
    page = response.content.decode()
    assert "7 members match" in page
    for member in verified[:5]:
        assert f'<a href="/admin/members/member/{member.pk}/change/"' in page
    assert f"/admin/members/member/{verified[5].pk}/change/" not in page
    assert 'id="segment-rules-config"' in page and "members/admin/segment_rules.js" in page
    assert '<textarea name="rules"' in page  # the editor without JavaScript


def test_the_editor_offers_the_lists_and_bursts(root_client):
    board = services.mailing_list_create(name="Board")
    burst = BurstFactory(name="Spring news", status=BurstStatus.SENT)
    response = root_client.get(f"{SEGMENTS}add/")
    config = response.context["adminform"].form.fields["rules"].widget.config
    assert config["lists"] == [{"id": board.pk, "label": "Board"}]
    assert config["bursts"] == [{"id": burst.pk, "label": f"Spring news (#{burst.pk})"}]
    assert not config["listsTruncated"] and not config["burstsTruncated"]
    assert {f["name"]: [o["value"] for o in f["ops"]] for f in config["fields"]}["received"] == ["yes", "no"]


def test_staff_who_may_only_view_see_the_rules_in_words_and_the_count():
    segment = services.segment_create(name="Verified", rules=VERIFIED)
    viewer = StaffFactory(permissions__apps=["members"])
    viewer.user_permissions.remove(*viewer.user_permissions.filter(codename__in=["change_segment"]))
    response = client_for(viewer).get(f"{SEGMENTS}{segment.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert '<textarea name="rules"' not in page
    assert "Verified is True" in page and "No member matches" in page


def test_deleting_a_segment_a_paused_burst_uses_shows_why_and_keeps_it(root_client):
    segment = services.segment_create(name="Verified", rules=VERIFIED)
    burst = BurstFactory(name="Autumn", status=BurstStatus.PAUSED)
    burst.segments.add(segment)
    response = root_client.post(f"{SEGMENTS}{segment.pk}/delete/", {"post": "yes"}, follow=True)
    assert Segment.objects.filter(pk=segment.pk).exists()
    assert messages_of(response) == [
        "Not deleted: this segment is the audience of a burst that is not finished: “Autumn” (paused)."
    ]


# --- segments: the live preview ---------------------------------------------------------------------------------


def test_the_preview_answers_the_count_and_the_first_five_members(root_client):
    verified = MemberFactory.create_bulk(
        6, prefix="jv", is_verified=True, first_name="Ada", last_name="Byron"
    )
    MemberFactory.create_bulk(2, prefix="ju", is_verified=False)

    answer = root_client.post(PREVIEW, {"rules": json.dumps(VERIFIED)}).json()

    assert answer["count"] == 6 and answer["error"] == ""
    assert answer["sample"] == [
        {"id": m.pk, "name": "Ada Byron", "email": m.email, "url": f"/admin/members/member/{m.pk}/change/"}
        for m in verified[:5]
    ]


def test_the_preview_takes_the_rules_as_a_get_parameter_too(root_client):
    board = services.mailing_list_create(name="Board")
    on_board = MemberFactory.create_bulk(2, prefix="gb")
    services.list_members_add(list_id=board.pk, member_ids=[m.pk for m in on_board])
    rules = {"conditions": [{"field": "list", "op": "in", "value": board.pk}]}
    answer = root_client.get(PREVIEW, {"rules": json.dumps(rules)}).json()
    assert answer["count"] == 2 and [s["id"] for s in answer["sample"]] == [m.pk for m in on_board]


def test_the_preview_of_no_rules_is_everyone(root_client):
    MemberFactory.create_bulk(3)
    answer = root_client.post(PREVIEW, {"rules": ""}).json()
    assert answer["count"] == 4 and len(answer["sample"]) == 4  # with the superuser


@pytest.mark.parametrize(
    ("rules", "error"),
    [
        (
            '{"match": "all", "conditions": [{"field": "email", "op": "like"}]}',
            "Condition 1: unknown op 'like'",
        ),
        ('{"match": "some"}', "Match must be 'all' or 'any', not 'some'"),
        ('{"match": ', "The rules are not valid JSON"),
    ],
)
def test_a_bad_rule_in_the_preview_is_a_422_naming_it(root_client, rules, error):
    response = root_client.post(PREVIEW, {"rules": rules})
    assert response.status_code == 422
    answer = response.json()
    assert answer["count"] is None and answer["sample"] == []
    assert answer["error"].startswith(error)


def test_the_preview_needs_the_pages_csrf_token(superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert client.post(PREVIEW, {"rules": "{}"}).status_code == 403
    assert client.get(PREVIEW, {"rules": "{}"}).status_code == 200


def test_the_preview_is_for_staff_who_may_view_segments(member):
    viewer = StaffFactory(permissions__apps=["members"])
    viewer.user_permissions.remove(
        *viewer.user_permissions.filter(codename__in=["add_segment", "change_segment", "delete_segment"])
    )
    assert client_for(viewer).get(PREVIEW, {"rules": "{}"}).status_code == 200

    outsider = StaffFactory(permissions__apps=["campaigns"])
    assert client_for(outsider).get(PREVIEW, {"rules": "{}"}).status_code == 403
    assert client_for(outsider).get(SEGMENTS).status_code == 403

    response = client_for(member).get(PREVIEW, {"rules": "{}"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert Client().get(PREVIEW).status_code == 302


def test_staff_who_may_not_see_members_get_the_count_without_names():
    MemberFactory.create_bulk(3, prefix="nv", is_verified=True)
    segment = services.segment_create(name="Verified", rules=VERIFIED)
    counter = StaffFactory(permissions__apps=["members"])
    counter.user_permissions.remove(*counter.user_permissions.filter(codename="view_member"))
    client = client_for(counter)

    answer = client.get(PREVIEW, {"rules": json.dumps(VERIFIED)}).json()
    page = client.get(f"{SEGMENTS}{segment.pk}/change/").content.decode()

    assert answer == {"count": 3, "sample": [], "error": ""}
    assert "3 members match" in page and "nv00@example.test" not in page


def test_the_sidebar_lists_mailing_lists_and_segments_to_staff_who_may_see_them(root_client):
    page = root_client.get("/admin/").content.decode()
    assert 'href="/admin/members/mailinglist/"' in page and 'href="/admin/members/segment/"' in page
    outsider_page = client_for(StaffFactory(permissions__apps=["campaigns"])).get("/admin/").content.decode()
    assert 'href="/admin/members/segment/"' not in outsider_page
