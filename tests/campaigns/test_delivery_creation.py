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
