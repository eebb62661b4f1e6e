"""A burst's audience (issue 12 point 3): any union of chosen members, lists and
segments, minus excluded lists and segments, each member mailed once; resolved in
the database with a number of queries that does not grow with the audience."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import selectors, services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from common.errors import InvalidInput
from members import services as member_services
from tests.api.conftest import Api, access_token
from tests.factories import MemberFactory
from tests.workers import wait_for

RULES_VERIFIED = {"match": "all", "conditions": [{"field": "is_verified", "op": "is", "value": True}]}


def audience_emails(burst: EmailBurst) -> set[str]:
    return set(selectors.burst_recipients(burst).values_list("email", flat=True))


@pytest.fixture
def town(db):
    """Members on two lists and in a segment, overlapping."""
    people = {
        name: MemberFactory(
            username=name, email=f"{name}@example.test", is_verified=name in {"ann", "vic", "val"}
        )
        for name in ("ann", "bob", "cat", "dan", "vic", "val", "zed")
    }
    board = member_services.mailing_list_create(name="Board")
    helpers = member_services.mailing_list_create(name="Helpers")
    banned = member_services.mailing_list_create(name="Do not mail")
    member_services.list_members_add(list_id=board.pk, member_ids=[people[n].pk for n in ("ann", "bob")])
    member_services.list_members_add(
        list_id=helpers.pk, member_ids=[people[n].pk for n in ("ann", "cat", "dan")]
    )
    member_services.list_members_add(list_id=banned.pk, member_ids=[people["dan"].pk])
    verified = member_services.segment_create(name="Verified", rules=RULES_VERIFIED)
    return people, board, helpers, banned, verified


@pytest.mark.django_db
def test_the_audience_is_the_union_minus_the_exclusions(town, staff_user):
    people, board, helpers, banned, verified = town
    burst = services.burst_create(
        subject="Hi",
        body="Hello",
        recipient_ids=[people["zed"].pk],
        lists=[board.pk, helpers.pk],
        segments=[verified.pk],
        exclude_lists=[banned.pk],
        created_by=staff_user,
    )
    assert audience_emails(burst) == {f"{n}@example.test" for n in ("ann", "bob", "cat", "vic", "val", "zed")}
    not_val = member_services.segment_create(
        name="Val",
        rules={
            "match": "all",
            "conditions": [
                {"field": "first_name", "op": "equals", "value": "x"},
                {"field": "email", "op": "contains", "value": "val@"},
            ],
        },
    )
    member_services.segment_update(
        segment_id=not_val.pk,
        rules={"match": "all", "conditions": [{"field": "email", "op": "contains", "value": "val@"}]},
    )
    services.burst_update(burst_id=burst.pk, exclude_segments=[not_val.pk])
    burst = EmailBurst.objects.get(pk=burst.pk)
    assert audience_emails(burst) == {f"{n}@example.test" for n in ("ann", "bob", "cat", "vic", "zed")}


@pytest.mark.django_db
def test_resolving_an_audience_costs_the_same_queries_at_any_size(town, staff_user):
    people, board, helpers, banned, verified = town
    burst = services.burst_create(
        subject="Hi", body="Hello", lists=[board.pk], segments=[verified.pk], created_by=staff_user
    )

    def resolve() -> int:
        fresh = EmailBurst.objects.get(pk=burst.pk)
        with CaptureQueriesContext(connection) as queries:
            selectors.burst_skip_counts(burst=fresh)
        return len(queries)

    few = resolve()
    more = MemberFactory.create_bulk(300, prefix="many", is_verified=True)
    member_services.list_members_add(list_id=board.pk, member_ids=[m.pk for m in more[:150]])
    assert resolve() == few


@pytest.mark.django_db
def test_all_members_with_a_list_is_refused(town, staff_user):
    _, board, *_ = town
    with pytest.raises(InvalidInput) as refused:
        services.burst_create(
            subject="Hi", body="Hello", all_members=True, lists=[board.pk], created_by=staff_user
        )
    assert refused.value.field == "all_members"
    with pytest.raises(InvalidInput) as refused:
        services.burst_create(subject="Hi", body="Hello", lists=[board.pk, 999], created_by=staff_user)
    assert (refused.value.field, "999" in refused.value.message) == ("lists", True)


@pytest.mark.django_db
def test_the_api_takes_answers_and_counts_the_audience(town, staff_user):
    people, board, helpers, banned, verified = town
    as_staff = Api(access_token(staff_user))
    response = as_staff.post(
        "/api/email-burst/",
        {
            "subject": "Hi",
            "body": "Hello",
            "lists": [board.pk, helpers.pk],
            "exclude_lists": [banned.pk],
            "segments": [verified.pk],
        },
    )
    assert response.status_code == 201, response.content
    burst = response.json()
    assert (burst["lists"], burst["exclude_lists"], burst["segments"]) == (
        sorted([board.pk, helpers.pk]),
        [banned.pk],
        [verified.pk],
    )
    assert burst["recipient_count"] == 5  # ann, bob, cat, vic, val
    listed = as_staff.get("/api/email-burst/").json()["items"][0]
    assert listed["recipient_count"] == 5
    response = as_staff.patch(f"/api/email-burst/{burst['id']}/", {"all_members": True, "lists": [board.pk]})
    assert response.status_code == 422


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_consumer_mails_each_member_of_overlapping_lists_and_a_segment_once(
    smtp_server, start_consumer, staff_user
):
    ann = MemberFactory(username="ann", email="ann@example.test", is_verified=True)
    bob = MemberFactory(username="bob", email="bob@example.test")
    MemberFactory(username="cat", email="cat@example.test", is_verified=True)
    dan = MemberFactory(username="dan", email="dan@example.test")
    out = MemberFactory(username="out", email="out@example.test", is_verified=True)
    MemberFactory(username="nobody", email="nobody@example.test")
    gone = MemberFactory(username="gone", email="gone@example.test", is_verified=True)
    member_services.members_unsubscribe(members=type(gone).objects.filter(pk=gone.pk))
    board = member_services.mailing_list_create(name="Board")
    helpers = member_services.mailing_list_create(name="Helpers")
    excluded = member_services.mailing_list_create(name="Excluded")
    # ann is on both lists and in the segment; out is excluded.
    member_services.list_members_add(list_id=board.pk, member_ids=[ann.pk, bob.pk, out.pk])
    member_services.list_members_add(list_id=helpers.pk, member_ids=[ann.pk, dan.pk])
    member_services.list_members_add(list_id=excluded.pk, member_ids=[out.pk])
    verified = member_services.segment_create(name="Verified", rules=RULES_VERIFIED)
    burst = services.burst_create(
        subject="Hi {{ member.first_name }}",
        body="Hello",
        lists=[board.pk, helpers.pk],
        segments=[verified.pk],
        exclude_lists=[excluded.pk],
        created_by=staff_user,
    )
    services.burst_send(burst_id=burst.pk)
    start_consumer(sink=smtp_server, workers=2)
    wait_for(
        lambda: EmailBurst.objects.filter(pk=burst.pk, status=BurstStatus.SENT).exists(),
        timeout=60,
        what="the burst to be sent",
    )
    assert smtp_server.received_count_by_address() == {
        "ann@example.test": 1,
        "bob@example.test": 1,
        "cat@example.test": 1,
        "dan@example.test": 1,
    }
    rows = dict(Delivery.objects.filter(burst_id=burst.pk).values_list("email", "status"))
    assert rows == {
        "ann@example.test": DeliveryStatus.SENT,
        "bob@example.test": DeliveryStatus.SENT,
        "cat@example.test": DeliveryStatus.SENT,
        "dan@example.test": DeliveryStatus.SENT,
        "gone@example.test": DeliveryStatus.SKIPPED,
    }


@pytest.mark.django_db
def test_preflight_says_how_many_come_from_each_source_and_how_many_are_left_out(town, staff_user):
    people, board, helpers, banned, verified = town
    member_services.members_unsubscribe(members=type(people["bob"]).objects.filter(pk=people["bob"].pk))
    burst = services.burst_create(
        subject="Hi",
        body="Hello {{ unsubscribe_url }}",
        recipient_ids=[people["zed"].pk],
        lists=[board.pk, helpers.pk],
        segments=[verified.pk],
        exclude_lists=[banned.pk],
        created_by=staff_user,
    )
    result = selectors.burst_preflight(burst_id=burst.pk)
    assert result.sources == [
        ("Members chosen one by one", 1),
        ("On list “Board”", 2),
        ("On list “Helpers”", 3),
        ("In segment “Verified”", 3),
    ]
    assert result.excluded == [("Left out: on list “Do not mail”", 1)]
    assert result.to_send == 5  # ann, cat, vic, val, zed; bob unsubscribed
    assert list(result.skipped.values()) == [1]


@pytest.mark.django_db
def test_the_preflight_page_shows_the_sources(town, staff_user, client, superuser):
    people, board, helpers, banned, verified = town
    burst = services.burst_create(
        subject="Hi", body="Hello", lists=[board.pk], exclude_lists=[banned.pk], created_by=staff_user
    )
    client.force_login(superuser)
    html = client.get(f"/admin/campaigns/emailburst/{burst.pk}/preflight/").content.decode()
    assert "Where the audience comes from" in html
    assert "On list “Board”" in html and "Left out: on list “Do not mail”" in html
    assert html.count("Left out") == 1
