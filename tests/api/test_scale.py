"""Lists, deliveries and stats take a constant number of queries (issue 4 point 8)."""

from __future__ import annotations

import factory
import pytest

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from members.models import Member
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory, counters_repair

pytestmark = pytest.mark.django_db

MAX_QUERIES = 5  # authentication, maybe an existence check, count, page


STARTED = (BurstStatus.SENDING, BurstStatus.SENT)


def add_bursts(n: int, recipients: list[Member]) -> list[EmailBurst]:
    """`n` bursts, draft, sending, sent and scheduled in turn, every fifth for all members, the
    others for three recipients; a started one has its two deliveries."""
    bursts = BurstFactory.create_bulk(
        n,
        recipients=recipients[:3],
        status=factory.Iterator(
            [BurstStatus.DRAFT, BurstStatus.SENDING, BurstStatus.SENT, BurstStatus.SCHEDULED]
        ),
        all_members=factory.Iterator([True, False, False, False, False]),
        deliveries_ready=factory.LazyAttribute(lambda burst: burst.status in STARTED),
    )
    Delivery.objects.bulk_create(
        DeliveryFactory.build(burst=b, member=m, status=DeliveryStatus.SENT)
        for b in bursts
        if b.status != BurstStatus.DRAFT
        for m in recipients[:2]
    )
    counters_repair()
    return bursts


@pytest.mark.parametrize("rows", [10, 1000])
def test_member_lists(as_staff, django_assert_max_num_queries, rows):
    MemberFactory.create_bulk(rows, is_staff=factory.Iterator([True, False, False]))
    for path in ("/api/members/", "/api/staff/", "/api/non-staff/"):
        for params in ({"limit": 500}, {"limit": 500, "search": "m1"}):
            with django_assert_max_num_queries(MAX_QUERIES):
                response = as_staff.get(path, params)
            assert response.status_code == 200
            assert len(response.json()["items"]) == min(500, response.json()["count"])


@pytest.mark.parametrize("rows", [10, 1000])
def test_burst_list(as_staff, django_assert_max_num_queries, rows):
    members = MemberFactory.create_bulk(5)
    bursts = add_bursts(rows, members)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = as_staff.get("/api/email-burst/", {"limit": 500})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == rows and len(body["items"]) == min(rows, 500)
    by_id = {item["id"]: item for item in body["items"]}
    subscribed = Member.objects.filter(is_active=True, unsubscribed_at__isnull=True).count()
    for burst in bursts:
        if burst.pk not in by_id:
            continue
        expected = (
            2
            if burst.status != BurstStatus.DRAFT and burst.status != BurstStatus.SCHEDULED
            else subscribed
            if burst.all_members
            else 3
        )
        assert by_id[burst.pk]["recipient_count"] == expected, burst.status


@pytest.mark.parametrize("rows", [10, 1000])
def test_deliveries_and_stats(as_staff, django_assert_max_num_queries, rows):
    members = MemberFactory.create_bulk(rows)
    burst = BurstFactory(status=BurstStatus.SENDING)
    every_status = list(DeliveryStatus.values)
    DeliveryFactory.create_for(burst, members, status=lambda i: every_status[i % len(every_status)])
    with django_assert_max_num_queries(MAX_QUERIES):
        response = as_staff.get(f"/api/email-burst/{burst.pk}/deliveries/", {"limit": 500})
    assert response.status_code == 200 and response.json()["count"] == rows
    with django_assert_max_num_queries(MAX_QUERIES):
        response = as_staff.get(f"/api/email-burst/{burst.pk}/deliveries/", {"status": "sent", "limit": 500})
    assert response.status_code == 200
    with django_assert_max_num_queries(MAX_QUERIES):
        response = as_staff.get(f"/api/email-burst/{burst.pk}/stats/")
    assert response.json()["total_recipients"] == rows
    with django_assert_max_num_queries(MAX_QUERIES):
        response = as_staff.get(f"/api/email-burst/{burst.pk}/")
    assert response.json()["recipient_count"] == rows
