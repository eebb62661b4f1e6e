"""`selectors.burst_stats`: the counts and success rate agree with the delivery rows, in
one query.

Real aiosmtpd sink, real engine, huey in immediate mode (chunk tasks run inline
when the transaction commits); retries are driven by `drive`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from campaigns import selectors, services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from common.errors import NotFound, ServiceError
from tests.api.conftest import Api, access_token
from tests.campaigns.bursts import drive, sending_burst
from tests.factories import DraftBurstFactory, MemberFactory, counters_repair

pytestmark = pytest.mark.django_db(transaction=True)


def _burst_with_every_status() -> EmailBurst:
    plan = [
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
        DeliveryStatus.NOT_FOUND,
        DeliveryStatus.FAILED,
        DeliveryStatus.CONNECTION_ERROR,
        DeliveryStatus.OTHER_ERROR,
        DeliveryStatus.PENDING,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.SKIPPED,
    ]
    members = MemberFactory.create_bulk(len(plan), prefix="m")
    burst = sending_burst(members)
    for member, status in zip(members, plan, strict=True):
        Delivery.objects.filter(burst=burst, member=member).update(status=status)
    counters_repair()
    return burst


def test_burst_stats_matches_the_delivery_rows_in_one_query(engine, django_assert_num_queries):
    burst = _burst_with_every_status()

    with django_assert_num_queries(1):
        stats = selectors.burst_stats(burst_id=burst.pk)

    rows = Counter(Delivery.objects.filter(burst=burst).values_list("status", flat=True))
    assert stats.status_counts == {s: rows.get(s, 0) for s in DeliveryStatus.values}
    assert set(stats.status_counts) == set(DeliveryStatus.values)
    assert stats.total_recipients == 10 == sum(rows.values())
    assert stats.sent_count == 3
    assert stats.failed_count == 4
    assert stats.pending_count == 1
    assert stats.skipped_count == 2
    assert stats.success_rate == 37.5  # 3 / (10 - 2)
    assert stats.status == BurstStatus.SENDING
    assert stats.email_burst_id == burst.pk


def test_burst_stats_rounds_the_success_rate_to_two_places_and_is_zero_with_nothing_to_send(engine):
    members = MemberFactory.create_bulk(4, prefix="m")
    burst = sending_burst(members)
    Delivery.objects.filter(burst=burst, member__in=members[:1]).update(status=DeliveryStatus.SENT)
    Delivery.objects.filter(burst=burst, member__in=members[1:3]).update(status=DeliveryStatus.FAILED)
    Delivery.objects.filter(burst=burst, member__in=members[3:]).update(status=DeliveryStatus.SKIPPED)
    counters_repair()
    assert selectors.burst_stats(burst_id=burst.pk).success_rate == 33.33

    Delivery.objects.filter(burst=burst).update(status=DeliveryStatus.SKIPPED)
    counters_repair()
    stats = selectors.burst_stats(burst_id=burst.pk)
    assert stats.success_rate == 0
    assert isinstance(stats.success_rate, float)

    empty = DraftBurstFactory()
    stats = selectors.burst_stats(burst_id=empty.pk)
    assert (stats.total_recipients, stats.success_rate) == (0, 0)


def test_burst_stats_agrees_with_the_rows_while_a_burst_is_being_sent(engine):
    members = MemberFactory.create_bulk(5, prefix="m")
    engine.script("m01@example.test", "451 4.7.1 Greylisted")
    engine.script("m03@example.test", "550 5.1.1 Unknown")
    burst = DraftBurstFactory(recipients=members)

    services.burst_send(burst_id=burst.pk)

    stats = selectors.burst_stats(burst_id=burst.pk)
    assert (stats.sent_count, stats.pending_count, stats.failed_count) == (3, 1, 1)
    assert stats.success_rate == 60.0
    drive(burst.pk)
    stats = selectors.burst_stats(burst_id=burst.pk)
    assert (stats.sent_count, stats.pending_count, stats.failed_count, stats.status) == (
        4,
        0,
        1,
        BurstStatus.SENT,
    )


def test_burst_stats_of_an_unknown_burst_is_not_found(staff_user):
    with pytest.raises(ServiceError) as caught:
        selectors.burst_stats(burst_id=999_999)

    # NotFound itself, not some other refusal that an is-a check would let through:
    # the API picks the HTTP status by the error's type.
    assert type(caught.value) is NotFound
    assert caught.value.field == "id"
    response = Api(access_token(staff_user)).get("/api/email-burst/999999/stats/")
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


# --- retries waiting -------------------------------------------------------------------------------


def test_burst_stats_count_the_retries_waiting_and_the_first_retry_time_in_the_same_query(
    engine, settings, staff_user, django_assert_num_queries
):
    settings.EMAIL_RETRY_DELAY = 300
    members = MemberFactory.create_bulk(4, prefix="m")
    engine.script("m01@example.test", "452 4.2.2 Mailbox full")
    engine.script("m02@example.test", "451 4.7.1 Greylisted")
    burst = DraftBurstFactory(recipients=members)

    services.burst_send(burst_id=burst.pk)

    with django_assert_num_queries(1):
        stats = selectors.burst_stats(burst_id=burst.pk)
    waiting = Delivery.objects.filter(burst=burst, next_attempt_at__isnull=False)
    first = min(waiting.values_list("next_attempt_at", flat=True))
    assert (stats.sent_count, stats.pending_count, stats.retrying_count) == (2, 2, 2)
    assert stats.next_retry_at == first
    assert stats.retry_reply.startswith(("452 4.2.2", "451 4.7.1"))
    body = Api(access_token(staff_user)).get(f"/api/email-burst/{burst.pk}/stats/").json()
    assert body["retrying_count"] == 2
    assert abs(datetime.fromisoformat(body["next_retry_at"]) - first) < timedelta(milliseconds=1)
    assert "retry_reply" not in body  # the API says how many and when, as documented

    drive(burst.pk)

    stats = selectors.burst_stats(burst_id=burst.pk)
    assert (stats.retrying_count, stats.next_retry_at, stats.status) == (0, None, BurstStatus.SENT)
    body = Api(access_token(staff_user)).get(f"/api/email-burst/{burst.pk}/stats/").json()
    assert (body["retrying_count"], body["next_retry_at"]) == (0, None)


def test_the_stats_schema_documents_the_retry_figures(staff_user):
    schema = Api(access_token(staff_user)).get("/api/openapi.json").json()
    stats = schema["components"]["schemas"]["StatsOut"]["properties"]
    assert "retry" in stats["retrying_count"]["description"]
    assert "null when none" in stats["next_retry_at"]["description"]


# --- sending time (the rate's denominator) ---------------------------------------------------------


def test_a_chunk_adds_the_time_it_was_sending_to_the_burst(engine):
    burst = sending_burst(MemberFactory.create_bulk(3, prefix="m"))
    before = timezone.now()

    services.chunk_process(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.counts["sent"] == 3
    assert burst.busy_until is not None and burst.busy_until >= before
    assert 0 < burst.sending_seconds <= (burst.busy_until - before).total_seconds()


def test_time_another_chunk_already_counted_is_not_counted_again(engine):
    burst = sending_burst(MemberFactory.create_bulk(3, prefix="m"))
    # Another chunk, still running, is counted until an hour from now.
    later = timezone.now() + timedelta(hours=1)
    EmailBurst.objects.filter(pk=burst.pk).update(sending_seconds=7.5, busy_until=later)

    services.chunk_process(burst_id=burst.pk)

    burst.refresh_from_db()
    assert burst.counts["sent"] == 3
    assert (burst.sending_seconds, burst.busy_until) == (7.5, later)


def test_the_wait_since_the_last_chunk_is_not_sending_time(engine):
    burst = sending_burst(MemberFactory.create_bulk(3, prefix="m"))
    # The last chunk ended an hour ago (a wait for retries since).
    EmailBurst.objects.filter(pk=burst.pk).update(
        sending_seconds=2.0, busy_until=timezone.now() - timedelta(hours=1)
    )
    before = timezone.now()

    services.chunk_process(burst_id=burst.pk)

    burst.refresh_from_db()
    assert 2.0 < burst.sending_seconds <= 2.0 + (burst.busy_until - before).total_seconds()


def test_a_chunk_that_sends_nothing_adds_no_time(engine):
    burst = sending_burst(MemberFactory.create_bulk(2, prefix="m"))
    EmailBurst.objects.filter(pk=burst.pk).update(status=BurstStatus.PAUSED)

    services.chunk_process(burst_id=burst.pk)

    burst.refresh_from_db()
    assert (burst.sending_seconds, burst.busy_until, burst.counts["pending"]) == (0, None, 2)
