"""API lists answer `{"items", "count", "next"}`: `next` is a cursor link, so a deep
page is read by key and costs what the first page costs; `limit`/`offset` still
work."""

from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from campaigns.models import BurstStatus, DeliveryStatus, EmailBurst
from members.models import Member
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db


def follow(api, path: str, params: dict) -> tuple[list[dict], list[dict]]:
    """Every page from the first by `next` links: (all items, all page bodies)."""
    items, bodies = [], []
    response = api.get(path, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        bodies.append(body)
        items += body["items"]
        if not body["next"]:
            return items, bodies
        parts = urlsplit(body["next"])
        assert parts.path == path
        response = api.get(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()})


def test_members_by_cursor_are_every_member_once_in_order(as_staff):
    MemberFactory.create_bulk(23)
    items, bodies = follow(as_staff, "/api/members/", {"limit": 5})
    ids = [m["id"] for m in items]
    assert ids == sorted(Member.objects.values_list("id", flat=True))
    assert len(bodies) == 5  # 24 members (the staff user too) in pages of 5
    assert {b["count"] for b in bodies} == {24}
    assert bodies[-1]["next"] is None
    assert bodies[0]["next"].startswith("http://testserver/api/members/?")


def test_the_cursor_keeps_the_lists_filters(as_staff):
    MemberFactory.create_bulk(12, prefix="anna")
    MemberFactory.create_bulk(12, prefix="bert")
    items, bodies = follow(as_staff, "/api/non-staff/", {"limit": 5, "search": "anna"})
    assert len(items) == 12 and all(m["username"].startswith("anna") for m in items)
    assert {b["count"] for b in bodies} == {12}


def test_bursts_by_cursor_newest_first_with_equal_creation_times(as_staff):
    made = BurstFactory.create_bulk(7)
    same_time = timezone.now() - timedelta(days=1)
    EmailBurst.objects.filter(pk__in=[b.pk for b in made[:4]]).update(created_at=same_time)
    items, _ = follow(as_staff, "/api/email-burst/", {"limit": 2})
    expected = list(EmailBurst.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    assert [b["id"] for b in items] == expected


def test_deliveries_by_cursor_with_a_status_filter_and_counts_from_the_counters(as_staff):
    people = MemberFactory.create_bulk(11)
    burst = BurstFactory(status=BurstStatus.SENDING, recipients=people)
    DeliveryFactory.create_for(
        burst, people, status=lambda i: DeliveryStatus.SENT if i % 2 else DeliveryStatus.FAILED
    )
    path = f"/api/email-burst/{burst.pk}/deliveries/"
    items, bodies = follow(as_staff, path, {"limit": 2, "status": "sent"})
    assert len(items) == 5 and {d["status"] for d in items} == {"sent"}
    assert {b["count"] for b in bodies} == {5}
    everything, bodies = follow(as_staff, path, {"limit": 4})
    assert [d["member_id"] for d in everything] == [p.pk for p in people]
    assert {b["count"] for b in bodies} == {11}


def test_offset_still_works_and_gives_a_next_cursor(as_staff):
    MemberFactory.create_bulk(9)
    ids = list(Member.objects.order_by("id").values_list("id", flat=True))
    page = as_staff.get("/api/members/", {"limit": 3, "offset": 3}).json()
    assert [m["id"] for m in page["items"]] == ids[3:6]
    parts = urlsplit(page["next"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert "offset" not in query
    after = as_staff.get(parts.path, query).json()
    assert [m["id"] for m in after["items"]] == ids[6:9]


def test_a_bad_cursor_is_a_422_naming_it(as_staff):
    for cursor in ("nonsense", "W10", "WyJ4Il0", "x" * 401):
        response = as_staff.get("/api/members/", {"cursor": cursor})
        assert response.status_code == 422, cursor
        assert response.json()["detail"][0]["field"] == "cursor", response.json()


def test_a_deep_page_by_cursor_costs_the_queries_of_the_first(as_staff, django_assert_num_queries):
    MemberFactory.create_bulk(60)
    first = as_staff.get("/api/members/", {"limit": 10})
    _, bodies = follow(as_staff, "/api/members/", {"limit": 10})
    deep = urlsplit(bodies[-2]["next"])
    query = {k: v[0] for k, v in parse_qs(deep.query).items()}
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as on_first:
        as_staff.get("/api/members/", {"limit": 10})
    with CaptureQueriesContext(connection) as on_deep:
        last = as_staff.get(deep.path, query)
    assert first.status_code == last.status_code == 200
    assert len(on_deep) == len(on_first)
    # read by key: no OFFSET in the page's query
    assert not any("OFFSET" in q["sql"].upper() for q in on_deep.captured_queries)


def test_member_counts_come_from_the_tally_unless_searched(as_staff, django_assert_max_num_queries):
    MemberFactory.create_bulk(30)
    assert as_staff.get("/api/non-staff/", {"limit": 5}).json()["count"] == 30
    assert as_staff.get("/api/staff/", {"limit": 5}).json()["count"] == 1
    assert as_staff.get("/api/members/", {"limit": 5}).json()["count"] == 31
    assert as_staff.get("/api/members/", {"limit": 5, "search": "nobody-matches"}).json()["count"] == 0


@pytest.mark.parametrize(
    "values", ["[Infinity]", "[1e999]", "[NaN]", '["9999-12-31T23:59:59-05:00", 1]', '[{"a": 1}]']
)
def test_a_cursor_that_cannot_be_held_is_a_422_never_a_500(as_staff, values):
    cursor = base64.urlsafe_b64encode(values.encode()).decode().rstrip("=")
    for path in ("/api/members/", "/api/email-burst/"):
        response = as_staff.get(path, {"cursor": cursor})
        assert response.status_code == 422, (path, values, response.content)
