"""A burst's figures and the dashboard's daily outcomes come from counters that the
code writing statuses keeps in the same transaction. They always equal a recount:
after sending, retries, a pause, a resume, a cancel, a deleted member and a burst
that starts while another finishes. `recount_bursts` repairs them if ever needed.

Real aiosmtpd sink, real engine, huey in immediate mode; on PostgreSQL too in CI.
The real-consumer cases (two consumers side by side, a SIGKILL mid-burst) are in
test_workers.py.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from campaigns import selectors, services
from campaigns.models import BurstStatus, DailyOutcome, Delivery, DeliveryStatus, EmailBurst
from tests.campaigns.bursts import assert_counters_exact, drive, sending_burst, statuses
from tests.factories import DraftBurstFactory, MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_counters_follow_sending_retries_and_a_retry_of_failed_deliveries(engine, settings):
    settings.EMAIL_MAX_ATTEMPTS = 2
    members = MemberFactory.create_bulk(6, prefix="c")
    engine.script("c00@example.test", "451 4.7.1 Greylisted")  # then accepted on its retry
    engine.script("c01@example.test", "550 5.1.1 User unknown")
    engine.script("c02@example.test", "554 5.7.1 Blocked")
    members[3].unsubscribed_at = timezone.now()
    members[3].save()
    burst = DraftBurstFactory(recipients=members)

    services.burst_send(burst_id=burst.pk)
    assert_counters_exact()
    assert EmailBurst.objects.get(pk=burst.pk).counts[DeliveryStatus.PENDING] == 1  # the greylisted one
    drive(burst.pk)
    assert_counters_exact()
    done = EmailBurst.objects.get(pk=burst.pk)
    assert done.status == BurstStatus.SENT
    assert done.counts == {
        "pending": 0,
        "sent": 3,
        "not_found": 1,
        "connection_error": 0,
        "failed": 1,
        "other_error": 0,
        "skipped": 1,
    }

    # a retry takes the failed one off its status and off the day it failed on
    engine.script("c02@example.test", "250 OK")
    assert services.burst_retry(burst_id=burst.pk, statuses=[DeliveryStatus.FAILED]) == 1
    assert_counters_exact()
    drive(burst.pk)
    assert_counters_exact()
    assert EmailBurst.objects.get(pk=burst.pk).counts[DeliveryStatus.SENT] == 4


def test_counters_follow_pause_resume_and_cancel(engine, settings):
    settings.EMAIL_CHUNK_SIZE = 2
    first = sending_burst(MemberFactory.create_bulk(6, prefix="p"))
    second = sending_burst(MemberFactory.create_bulk(5, prefix="q"))
    for burst in (first, second):
        services.chunk_process(burst_id=burst.pk)  # two of each sent
    assert_counters_exact()

    services.burst_pause(burst_id=first.pk)
    services.burst_cancel(burst_id=second.pk)
    assert_counters_exact()
    assert DeliveryStatus.SKIPPED in statuses(second).values()

    services.burst_resume(burst_id=first.pk)
    drive(first.pk)
    assert_counters_exact()
    assert EmailBurst.objects.get(pk=first.pk).counts[DeliveryStatus.SENT] == 6
    cancelled = EmailBurst.objects.get(pk=second.pk).counts
    assert (cancelled["sent"], cancelled["skipped"], cancelled["pending"]) == (2, 3, 0)


def test_a_deleted_members_waiting_delivery_is_counted_skipped(engine):
    members = MemberFactory.create_bulk(3, prefix="d")
    burst = sending_burst(members)
    members[1].delete()
    assert_counters_exact()
    services.chunk_process(burst_id=burst.pk)
    assert_counters_exact()
    assert EmailBurst.objects.get(pk=burst.pk).counts[DeliveryStatus.SKIPPED] == 1


def test_a_chunk_whose_message_cannot_be_built_counts_every_delivery_it_held(engine):
    burst = sending_burst(MemberFactory.create_bulk(3, prefix="e"))
    # Saved before today's checks: a template that no longer compiles.
    EmailBurst.objects.filter(pk=burst.pk).update(body="{% if %}")
    services.chunk_process(burst_id=burst.pk)
    assert_counters_exact()
    assert EmailBurst.objects.get(pk=burst.pk).counts[DeliveryStatus.OTHER_ERROR] == 3


def test_stats_and_the_finish_read_the_counters_not_the_deliveries(engine, django_assert_num_queries):
    burst = sending_burst(MemberFactory.create_bulk(4, prefix="s"))
    drive(burst.pk)
    with django_assert_num_queries(1):
        stats = selectors.burst_stats(burst_id=burst.pk)
    assert (stats.total_recipients, stats.sent_count, stats.success_rate) == (4, 4, 100.0)
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT


@pytest.mark.services
def test_concurrent_chunks_of_one_burst_count_exactly_on_postgresql(engine, settings, require_postgres):
    settings.EMAIL_CHUNK_SIZE = 10
    burst = sending_burst(MemberFactory.create_bulk(80, prefix="k"))
    errors = []

    def worker() -> None:
        try:
            while Delivery.objects.filter(
                burst_id=burst.pk, status=DeliveryStatus.PENDING, claim_token=""
            ).exists():
                services.chunk_process(burst_id=burst.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert_counters_exact()
    assert EmailBurst.objects.get(pk=burst.pk).counts[DeliveryStatus.SENT] == 80
    assert engine.received_count_by_address() == {f"k{i:02d}@example.test": 1 for i in range(80)}


# --- recount_bursts ----------------------------------------------------------------------------------


def test_recount_bursts_repairs_wrong_counters_and_says_what_it_changed(engine):
    burst = sending_burst(MemberFactory.create_bulk(3, prefix="r"))
    drive(burst.pk)
    EmailBurst.objects.filter(pk=burst.pk).update(count_sent=7, count_failed=2)
    DailyOutcome.objects.update(count=99)
    DailyOutcome.objects.create(day=timezone.localdate() - timedelta(days=400), status="sent", count=5)

    out = StringIO()
    call_command("recount_bursts", stdout=out)

    lines = out.getvalue().splitlines()
    assert f"burst {burst.pk}: sent 7 -> 3" in lines
    assert f"burst {burst.pk}: failed 2 -> 0" in lines
    assert any(line.endswith("sent: 99 -> 3") for line in lines)
    assert any(line.endswith("sent: 5 -> 0") for line in lines)
    assert "Repaired" in lines[-1]
    assert_counters_exact()

    again = StringIO()
    call_command("recount_bursts", stdout=again)
    assert again.getvalue().strip() == "Every counter equals its recount; nothing changed."


def test_recount_bursts_can_recount_one_burst(engine):
    one = sending_burst(MemberFactory.create_bulk(2, prefix="o"))
    other = sending_burst(MemberFactory.create_bulk(2, prefix="t"))
    EmailBurst.objects.update(count_pending=9)
    out = StringIO()
    call_command("recount_bursts", "--burst", str(one.pk), stdout=out)
    assert f"burst {one.pk}: pending 9 -> 2" in out.getvalue()
    assert EmailBurst.objects.get(pk=other.pk).count_pending == 9


def test_the_recovery_finishes_a_burst_whose_pending_counter_was_edited_by_hand(engine):
    burst = sending_burst(MemberFactory.create_bulk(2, prefix="h"))
    drive(burst.pk)
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.SENDING, count_pending=5)
    assert services.burst_finish_if_done(burst_id=burst.pk) is False  # the counter says pending

    assert services.deliveries_recover()["finished"] == 1
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert_counters_exact()
