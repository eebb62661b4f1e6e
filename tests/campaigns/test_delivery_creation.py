"""Delivery creation reads recipients batch by batch while others write."""

import threading

import pytest
from django.db import connection

from campaigns import selectors, services
from campaigns.models import Delivery, DeliveryStatus, EmailBurst
from members.models import Member
from tests.factories import DraftBurstFactory, MemberFactory


def write_from_another_connection() -> None:
    def work() -> None:
        Member.objects.filter(username="m00").update(first_name="Changed")
        connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


@pytest.mark.django_db(transaction=True)
def test_it_creates_every_delivery_while_another_worker_commits_between_batches(monkeypatch):
    MemberFactory.create_bulk(25, prefix="m")
    burst = DraftBurstFactory(subject="News", body="Hello", all_members=True)
    EmailBurst.objects.filter(pk=burst.pk).update(status="sending")
    monkeypatch.setattr(services, "FIRST_BATCH", 10)
    monkeypatch.setattr(services, "CREATE_BATCH", 10)
    real_range_end = selectors.recipient_range_end

    def let_another_worker_write_first(*args, **kwargs):
        write_from_another_connection()  # e.g. a chunk task recording statuses meanwhile
        return real_range_end(*args, **kwargs)

    monkeypatch.setattr(selectors, "recipient_range_end", let_another_worker_write_first)

    assert services.burst_create_deliveries(burst_id=burst.pk) == 25

    assert Delivery.objects.filter(burst=burst, status=DeliveryStatus.PENDING).count() == 25
    assert EmailBurst.objects.get(pk=burst.pk).deliveries_ready


@pytest.mark.django_db(transaction=True)
def test_the_first_messages_leave_before_every_delivery_exists(engine, monkeypatch):
    """Each batch's chunks are queued as it commits (huey runs them inline here), so
    the first recipients are mailed while later batches are still to be created."""
    MemberFactory.create_bulk(30, prefix="f")
    burst = DraftBurstFactory(subject="News", body="Hello", all_members=True)
    EmailBurst.objects.filter(pk=burst.pk).update(status="sending")
    monkeypatch.setattr(services, "FIRST_BATCH", 5)
    monkeypatch.setattr(services, "CREATE_BATCH", 10)
    seen = []
    real_range_end = selectors.recipient_range_end

    def look_before_each_batch(*args, **kwargs):
        row = EmailBurst.objects.get(pk=burst.pk)
        seen.append(
            (Delivery.objects.filter(burst=burst).count(), engine.message_count, row.deliveries_ready)
        )
        return real_range_end(*args, **kwargs)

    monkeypatch.setattr(selectors, "recipient_range_end", look_before_each_batch)

    services.burst_create_deliveries(burst_id=burst.pk)

    assert seen[0] == (0, 0, False)
    # before the second batch: five deliveries exist, and they were mailed already
    assert seen[1] == (5, 5, False)
    assert seen[-1][0] < 30 and not seen[-1][2]
    done = EmailBurst.objects.get(pk=burst.pk)
    assert done.deliveries_ready and done.status == "sent", "finished only once all exist"
    assert engine.message_count == 30


@pytest.mark.django_db(transaction=True)
def test_creating_deliveries_costs_the_same_queries_for_ten_or_nine_hundred_recipients():
    """Recipients never pass through Python one by one: the query count of a batch
    does not grow with its size."""

    def queries_for(n: int, prefix: str) -> int:
        members = MemberFactory.create_bulk(n, prefix=prefix)
        burst = DraftBurstFactory(recipients=members)
        EmailBurst.objects.filter(pk=burst.pk).update(status="sending")
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert services.burst_create_deliveries(burst_id=burst.pk) == n
        return len(ctx.captured_queries)

    assert queries_for(10, "ten") == queries_for(900, "many")


@pytest.mark.django_db
def test_deliveries_are_numbered_and_so_sent_in_member_order():
    members = MemberFactory.create_bulk(30, prefix="o")
    chosen = [members[i] for i in (29, 3, 17, 0, 11)]  # chosen out of order
    burst = DraftBurstFactory(subject="News", body="Hello", recipients=chosen)
    services.burst_create_deliveries(burst_id=burst.pk)

    by_delivery_id = list(
        Delivery.objects.filter(burst=burst).order_by("pk").values_list("member_id", flat=True)
    )
    assert by_delivery_id == sorted(member.pk for member in chosen)
