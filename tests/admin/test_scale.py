"""Constant query counts whatever the size of the tables (10 rows, then 10,000),
and pages that never render every row."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import BurstStatus, DeliveryStatus
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db

BIG = 10_000


def queries(fetch: Callable[[], object]) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = fetch()
    assert response.status_code == 200
    return len(ctx.captured_queries), response


def count(fetch: Callable[[], object]) -> int:
    fetch()  # warm up: per-process caches (content types, permissions) are not the page's cost
    return queries(fetch)[0]


def test_members_list(root_client, django_assert_max_num_queries):
    MemberFactory.create_bulk(10)
    small = count(lambda: root_client.get("/admin/members/member/", {"q": "example"}))
    MemberFactory.create_bulk(BIG - 10, prefix="big")
    with django_assert_max_num_queries(small):
        big, response = queries(lambda: root_client.get("/admin/members/member/", {"q": "example"}))
    assert big == small <= 6
    assert len(response.context["cl"].result_list) == 50


def test_bursts_list(root_client, django_assert_max_num_queries):
    people = MemberFactory.create_bulk(20)
    for i in range(10):
        burst = BurstFactory(subject=f"B{i}", status=BurstStatus.SENT, recipients=people)
        DeliveryFactory.create_for(burst, people, status=DeliveryStatus.SENT)
    small = count(lambda: root_client.get("/admin/campaigns/emailburst/"))
    BurstFactory.create_bulk(BIG - 10)
    with django_assert_max_num_queries(small):
        big, response = queries(lambda: root_client.get("/admin/campaigns/emailburst/"))
    assert big == small <= 6
    assert response.context["cl"].result_count == BIG


def test_sent_burst_page(root_client, django_assert_max_num_queries):
    few = MemberFactory.create_bulk(10)
    small_burst = BurstFactory(subject="Small", status=BurstStatus.SENT, recipients=few)
    DeliveryFactory.create_for(
        small_burst, few, status=lambda i: DeliveryStatus.FAILED if i % 5 == 0 else DeliveryStatus.SENT
    )
    small = count(lambda: root_client.get(f"/admin/campaigns/emailburst/{small_burst.pk}/change/"))

    many = MemberFactory.create_bulk(BIG, prefix="many")
    big_burst = BurstFactory(subject="Big", status=BurstStatus.SENT, recipients=many)
    DeliveryFactory.create_for(
        big_burst, many, status=lambda i: DeliveryStatus.FAILED if i % 5 == 0 else DeliveryStatus.SENT
    )
    with django_assert_max_num_queries(small):
        big, response = queries(
            lambda: root_client.get(f"/admin/campaigns/emailburst/{big_burst.pk}/change/")
        )
    assert big == small <= 10
    assert len(response.content) < 250_000  # one page of deliveries, a count of recipients
    assert response.context["stats"].total_recipients == BIG
    assert len(response.context["deliveries"].object_list) == 25
    # Other pages and filters cost the same.
    for params in ({"dpage": 200}, {"dstatus": "failed", "dpage": 3}):
        with django_assert_max_num_queries(small):
            root_client.get(f"/admin/campaigns/emailburst/{big_burst.pk}/change/", params)


def test_draft_burst_page_with_many_chosen_recipients(root_client, django_assert_max_num_queries):
    few = MemberFactory.create_bulk(10)
    small_burst = BurstFactory(subject="Small", recipients=few)
    small = count(lambda: root_client.get(f"/admin/campaigns/emailburst/{small_burst.pk}/change/"))
    many = MemberFactory.create_bulk(BIG, prefix="many")
    big_burst = BurstFactory(subject="Big", recipients=many)
    with django_assert_max_num_queries(small):
        big, response = queries(
            lambda: root_client.get(f"/admin/campaigns/emailburst/{big_burst.pk}/change/")
        )
    # 10, plus one for each of the four audience fields' current values (lists,
    # segments and their exclusions), whatever their size.
    assert big <= small <= 14
    html = response.content.decode()
    assert "10,000 chosen members" in html
    assert len(response.content) < 250_000


def test_dashboard(root_client, django_assert_max_num_queries):
    people = MemberFactory.create_bulk(10)
    burst = BurstFactory(subject="Small", status=BurstStatus.SENT, recipients=people)
    DeliveryFactory.create_for(burst, people, status=DeliveryStatus.SENT)
    small = count(lambda: root_client.get("/admin/"))
    many = MemberFactory.create_bulk(BIG, prefix="many")
    for i in range(3):
        burst = BurstFactory(subject=f"Big {i}", status=BurstStatus.SENT)
        DeliveryFactory.create_for(burst, many[i * 3000 : (i + 1) * 3000], status=DeliveryStatus.SENT)
    BurstFactory.create_bulk(BIG)
    with django_assert_max_num_queries(small):
        big, response = queries(lambda: root_client.get("/admin/"))
    assert big == small <= 8
    assert response.context["member_totals"]["members"] == BIG + 11


def test_delivery_changelist(root_client, django_assert_max_num_queries):
    many = MemberFactory.create_bulk(BIG, prefix="many")
    burst = BurstFactory(subject="Big", status=BurstStatus.SENT)
    DeliveryFactory.create_for(burst, many, status=DeliveryStatus.SENT)
    with django_assert_max_num_queries(8):
        response = root_client.get("/admin/campaigns/delivery/", {"burst__id__exact": burst.pk})
    assert len(response.context["cl"].result_list) == 50
