"""Mailing lists and segments over the API (issue 12 points 1-2): the paths of SPEC
section 10, staff only, 404 / 409 / 422 as for bursts, counts that cost the same
whatever the size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from members.models import ListMembership, MailingList
from tests.factories import BurstFactory, MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def board(as_staff):
    response = as_staff.post("/api/lists/", {"name": "Board", "description": "The board"})
    assert response.status_code == 201, response.content
    return response.json()


def test_lists_are_staff_only(anon, as_member):
    for api, status in ((anon, 401), (as_member, 403)):
        assert api.get("/api/lists/").status_code == status
        assert api.post("/api/lists/", {"name": "X"}).status_code == status
        assert api.get("/api/segments/").status_code == status
        assert api.post("/api/segments/", {"name": "X", "rules": {}}).status_code == status


def test_a_list_is_created_read_changed_and_deleted(as_staff, board):
    assert board["name"] == "Board"
    assert board["member_count"] == 0
    assert set(board) == {"id", "name", "description", "member_count", "created_at"}
    list_id = board["id"]
    assert as_staff.get(f"/api/lists/{list_id}/").json()["description"] == "The board"
    assert (
        as_staff.patch(f"/api/lists/{list_id}/", {"description": "Elected"}).json()["description"]
        == "Elected"
    )
    replaced = as_staff.put(f"/api/lists/{list_id}/", {"name": "The board"}).json()
    assert (replaced["name"], replaced["description"]) == ("The board", "")
    assert as_staff.get("/api/lists/").json()["count"] == 1
    assert as_staff.delete(f"/api/lists/{list_id}/").status_code == 204
    assert as_staff.get(f"/api/lists/{list_id}/").status_code == 404


def test_a_taken_name_is_409_in_any_case(as_staff, board):
    response = as_staff.post("/api/lists/", {"name": "BOARD"})
    assert response.status_code == 409
    other = as_staff.post("/api/lists/", {"name": "Volunteers"}).json()
    assert as_staff.patch(f"/api/lists/{other['id']}/", {"name": "board"}).status_code == 409


def test_bad_list_input_is_422_naming_the_field(as_staff):
    response = as_staff.post("/api/lists/", {"name": ""})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "name"
    assert as_staff.post("/api/lists/", {"name": "x" * 201}).status_code == 422
    assert as_staff.get("/api/lists/999/").status_code == 404


def test_members_are_added_idempotently_and_removed(as_staff, board):
    a, b, c = MemberFactory(), MemberFactory(), MemberFactory()
    list_id = board["id"]

    added = as_staff.post(f"/api/lists/{list_id}/members/", {"members": [a.pk, b.pk]}).json()
    assert (added["changed"], added["member_count"]) == (2, 2)
    again = as_staff.post(f"/api/lists/{list_id}/members/", {"members": [a.pk, b.pk, c.pk]}).json()
    assert (again["changed"], again["member_count"]) == (1, 3)
    page = as_staff.get(f"/api/lists/{list_id}/members/", params={"limit": 2}).json()
    assert page["count"] == 3
    assert [m["id"] for m in page["items"]] == [a.pk, b.pk]
    assert page["next"]
    removed = as_staff.post(f"/api/lists/{list_id}/members/remove/", {"members": [a.pk, c.pk]}).json()
    assert (removed["changed"], removed["member_count"]) == (2, 1)
    assert list(ListMembership.objects.values_list("member_id", flat=True)) == [b.pk]


def test_unknown_member_ids_are_a_422_listing_them(as_staff, board):
    member = MemberFactory()
    response = as_staff.post(f"/api/lists/{board['id']}/members/", {"members": [member.pk, 9998, 9999]})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["field"] == "members"
    assert "9998, 9999" in detail["msg"]
    assert ListMembership.objects.count() == 0


def test_the_member_count_follows_every_way_of_changing_memberships(as_staff, board):
    members = MemberFactory.create_batch(3)
    as_staff.post(f"/api/lists/{board['id']}/members/", {"members": [m.pk for m in members]})
    members[0].delete()
    assert MailingList.objects.get(pk=board["id"]).member_count == 2
    ListMembership.objects.filter(member=members[1]).delete()
    assert MailingList.objects.get(pk=board["id"]).member_count == 1


def test_a_list_a_scheduled_burst_addresses_cannot_be_deleted(as_staff, board):
    burst = BurstFactory(status="scheduled")
    burst.lists.set([board["id"]])
    response = as_staff.delete(f"/api/lists/{board['id']}/")
    assert response.status_code == 409
    assert "not finished" in response.json()["detail"]


def test_the_lists_page_costs_the_same_queries_at_any_size(as_staff):
    for n in range(3):
        as_staff.post("/api/lists/", {"name": f"List {n}"})
    with CaptureQueriesContext(connection) as few:
        as_staff.get("/api/lists/")
    for n in range(3, 30):
        as_staff.post("/api/lists/", {"name": f"List {n}"})
    with CaptureQueriesContext(connection) as many:
        as_staff.get("/api/lists/")
    assert len(many) == len(few)


SEGMENT = {
    "name": "Verified December birthdays",
    "rules": {
        "match": "all",
        "conditions": [
            {"field": "is_verified", "op": "is", "value": True},
            {"field": "birth_month", "op": "is", "value": 12},
        ],
    },
}


def test_a_segment_is_created_counted_and_lists_its_members(as_staff):
    import datetime as dt

    match = MemberFactory(is_verified=True, birth_date=dt.date(1990, 12, 1))
    MemberFactory(is_verified=True, birth_date=dt.date(1990, 11, 1))
    MemberFactory(is_verified=False, birth_date=dt.date(1990, 12, 1))

    response = as_staff.post("/api/segments/", SEGMENT)
    assert response.status_code == 201, response.content
    segment = response.json()
    assert segment["member_count"] == 1
    assert set(segment) == {"id", "name", "description", "rules", "member_count", "created_at", "updated_at"}
    page = as_staff.get(f"/api/segments/{segment['id']}/members/").json()
    assert (page["count"], [m["id"] for m in page["items"]]) == (1, [match.pk])
    listing = as_staff.get("/api/segments/").json()
    assert listing["items"][0]["member_count"] == 1
    patched = as_staff.patch(
        f"/api/segments/{segment['id']}/",
        {"rules": {"match": "any", "conditions": SEGMENT["rules"]["conditions"]}},
    ).json()
    assert patched["member_count"] == 3
    assert as_staff.delete(f"/api/segments/{segment['id']}/").status_code == 204


def test_a_bad_segment_rule_is_a_422_naming_the_condition(as_staff):
    rules = {
        "match": "all",
        "conditions": [
            {"field": "is_verified", "op": "is", "value": True},
            {"field": "shoe_size", "op": "is", "value": 42},
        ],
    }
    response = as_staff.post("/api/segments/", {"name": "Bad", "rules": rules})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["field"] == "rules"
    assert "condition 2: unknown field 'shoe_size'" in detail["msg"]
    response = as_staff.post(
        "/api/segments/",
        {"name": "Bad", "rules": {"conditions": [{"field": "list", "op": "in", "value": 77}]}},
    )
    assert response.status_code == 422
    assert "condition 1: list 77 does not exist" in response.json()["detail"][0]["msg"]


def test_the_segments_page_counts_all_its_segments_in_one_query(as_staff):
    as_staff.post("/api/segments/", {**SEGMENT, "name": "One"})
    with CaptureQueriesContext(connection) as few:
        as_staff.get("/api/segments/")
    for n in range(5):
        as_staff.post("/api/segments/", {**SEGMENT, "name": f"More {n}"})
    with CaptureQueriesContext(connection) as many:
        as_staff.get("/api/segments/")
    assert len(many) == len(few)


def test_lists_and_segments_are_in_the_openapi_schema(anon):
    paths = anon.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/lists/",
        "/api/lists/{id}/",
        "/api/lists/{id}/members/",
        "/api/lists/{id}/members/remove/",
        "/api/segments/",
        "/api/segments/{id}/",
        "/api/segments/{id}/members/",
    ):
        assert path in paths
