"""Lists, deliveries and stats take a constant number of queries (issue 4 point 8)."""

from __future__ import annotations

import pytest

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from members.models import Member

pytestmark = pytest.mark.django_db

MAX_QUERIES = 5  # authentication, maybe an existence check, count, page


def add_members(n: int, *, staff_every: int = 3) -> list[Member]:
    start = Member.objects.count()
    return Member.objects.bulk_create(
        [
            Member(
                username=f"m{start + i}", email=f"m{start + i}@example.test", is_staff=(i % staff_every == 0)
            )
            for i in range(n)
        ]
    )


def add_bursts(n: int, recipients: list[Member]) -> list[EmailBurst]:
    statuses = [BurstStatus.DRAFT, BurstStatus.SENDING, BurstStatus.SENT, BurstStatus.SCHEDULED]
    bursts = EmailBurst.objects.bulk_create(
        [
            EmailBurst(
                subject=f"s{i}",
                body="b",
                status=statuses[i % 4],
                all_members=(i % 5 == 0),
                # a started burst's deliveries all exist
                deliveries_ready=statuses[i % 4] in (BurstStatus.SENDING, BurstStatus.SENT),
            )
            for i in range(n)
        ]
    )
    through = EmailBurst.recipients.through
    through.objects.bulk_create(
        [through(emailburst_id=b.pk, member_id=m.pk) for b in bursts for m in recipients[:3]]
    )
    Delivery.objects.bulk_create(
        [
            Delivery(burst=b, member=m, email=m.email, status=DeliveryStatus.SENT)
            for b in bursts
            if b.status != BurstStatus.DRAFT
            for m in recipients[:2]
        ]
    )
    return bursts


def add_deliveries(burst: EmailBurst, members: list[Member]) -> None:
    statuses = list(DeliveryStatus.values)
    Delivery.objects.bulk_create(
        [
            Delivery(burst=burst, member=m, email=m.email, status=statuses[i % len(statuses)])
            for i, m in enumerate(members)
        ]
    )


@pytest.mark.parametrize("rows", [10, 1000])
def test_member_lists(as_staff, django_assert_max_num_queries, rows):
    add_members(rows)
    for path in ("/api/members/", "/api/staff/", "/api/non-staff/"):
        for params in ({"limit": 500}, {"limit": 500, "search": "m1"}):
            with django_assert_max_num_queries(MAX_QUERIES):
                response = as_staff.get(path, params)
            assert response.status_code == 200
            assert len(response.json()["items"]) == min(500, response.json()["count"])


@pytest.mark.parametrize("rows", [10, 1000])
def test_burst_list(as_staff, django_assert_max_num_queries, rows):
    members = add_members(5, staff_every=100)
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
def test_deliveries_and_stats(as_staff, django_assert_max_num_queries, rows, make_burst):
    members = add_members(rows)
    burst = make_burst(status=BurstStatus.SENDING)
    add_deliveries(burst, members)
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
