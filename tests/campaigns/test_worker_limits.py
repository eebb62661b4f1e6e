"""A real consumer never spins on a template, and /api/health/ tells when a
consumer is busy on one chunk far longer than expected (issue 8 point 3).

They run on whatever the suite is configured with: SQLite + huey on SQLite, or
PostgreSQL + Redis.
"""

from __future__ import annotations

from collections import Counter

import factory
import pytest
from django.test import Client

from campaigns import services
from campaigns.models import Delivery, DeliveryStatus, EmailBurst
from members.models import Member
from tests.campaigns.bursts import burst_done
from tests.factories import MemberFactory
from tests.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIST_1000 = "'x'|ljust:'1000'|make_list"
# A billion iterations, but only for Mallory: neither member validation renders for
# (every field empty, every field filled) is called that, so the burst is accepted.
MALLORY_BOMB = (
    "Hello {{ member.first_name }}{% if member.first_name == 'Mallory' %}"
    f"{{% for a in {LIST_1000} %}}{{% for b in {LIST_1000} %}}{{% for c in {LIST_1000} %}}"
    "x{% endfor %}{% endfor %}{% endfor %}{% endif %}"
)


def members_named(prefix: str, first_names: list[str]) -> list[Member]:
    """Members `{prefix}00`, `{prefix}01`... with these first names, in order."""
    return MemberFactory.create_bulk(
        len(first_names), prefix=prefix, first_name=factory.Iterator(first_names)
    )


def statuses(burst: EmailBurst) -> Counter:
    return Counter(Delivery.objects.filter(burst=burst).values_list("status", flat=True))


LIMITS = {
    "loop-iterations": ({}, "more than 10,000 loop iterations (TEMPLATE_MAX_LOOP_ITERATIONS)"),
    # Without the iteration cap, only the clock stops the loops.
    "time-budget": (
        {"TEMPLATE_MAX_LOOP_ITERATIONS": "1000000000", "TEMPLATE_RENDER_TIMEOUT": "0.5"},
        "rendering took longer than 0.5 s (TEMPLATE_RENDER_TIMEOUT)",
    ),
}


@pytest.mark.parametrize("limit", list(LIMITS))
def test_a_template_that_explodes_for_some_members_never_holds_up_the_burst_behind_it(
    sink, start_consumer, settings, limit
):
    consumer_settings, error = LIMITS[limit]
    settings.EMAIL_CHUNK_SIZE = 3  # chunk tasks are enqueued here, claimed there
    bad_recipients = members_named("bad", ["Mallory", "Ada", "Mallory", "Mallory", "Grace", "Mallory"])
    normal_recipients = members_named("ok", [f"Name{i}" for i in range(9)])
    bad = services.burst_create(
        subject="Hi {{ member.first_name }}",
        body=MALLORY_BOMB,
        html_body=f"<p>{MALLORY_BOMB}</p>",
        recipient_ids=[m.pk for m in bad_recipients],
    )
    normal = services.burst_create(
        subject="News", body="Hello {{ member.first_name }}", recipient_ids=[m.pk for m in normal_recipients]
    )
    # The bad burst's two chunks are queued first, one for each worker thread, each
    # starting with a Mallory; the normal burst's three come after them.
    services.burst_send(burst_id=bad.pk)
    services.burst_send(burst_id=normal.pk)

    start_consumer(sink=sink, workers=2, EMAIL_CHUNK_SIZE="3", **consumer_settings)
    wait_for(lambda: burst_done(normal.pk), timeout=120, what="the normal burst to be sent")
    wait_for(lambda: burst_done(bad.pk), timeout=60, what="the bad burst to finish")

    assert statuses(normal) == {DeliveryStatus.SENT: 9}
    assert statuses(bad) == {DeliveryStatus.SENT: 2, DeliveryStatus.OTHER_ERROR: 4}
    for delivery in Delivery.objects.filter(burst=bad, status=DeliveryStatus.OTHER_ERROR):
        assert delivery.member.first_name == "Mallory"
        assert delivery.error_message == f"Could not render the message: body: {error}"
    received = sink.received_count_by_address()
    assert set(received.values()) == {1}
    assert set(received) == {m.email for m in normal_recipients} | {
        "bad01@example.test",
        "bad04@example.test",
    }


def health() -> dict:
    return Client().get("/api/health/").json()


def test_health_reports_a_consumer_busy_on_one_chunk_for_longer_than_expected(sink, start_consumer, settings):
    settings.WORKER_STUCK_AFTER = 1.0
    recipients = members_named("slow", [f"Name{i}" for i in range(18)])
    burst = services.burst_create(subject="News", body="Hello", recipient_ids=[m.pk for m in recipients])
    assert health()["workers"] == "ok" and health()["consumers"] == 0

    start_consumer(sink=sink, workers=1, EMAIL_CHUNK_SIZE="50", EMAIL_RATE_LIMIT="3")  # one 6 s chunk
    wait_for(lambda: health()["consumers"] == 1, timeout=30, what="the consumer's heartbeat")
    services.burst_send(burst_id=burst.pk)
    seen: dict = {}

    def stuck() -> bool:
        seen.clear()
        seen.update(health())
        return seen["workers"] == "stuck"

    wait_for(stuck, timeout=30, what="health to call the chunk stuck")
    assert seen["status"] == "degraded" and seen["database"] == "ok" and seen["queue"] == "ok"
    assert seen["busy_chunks"] == 1
    assert seen["oldest_chunk_seconds"] >= 1.0  # rounded to tenths
    assert Client().get("/api/health/").status_code == 200  # the web itself is fine

    wait_for(lambda: burst_done(burst.pk), timeout=60, what="the burst to be sent")
    wait_for(lambda: health()["busy_chunks"] == 0, timeout=10, what="the chunk to end")
    body = health()
    assert (body["status"], body["workers"], body["consumers"]) == ("ok", "ok", 1)
    assert body["oldest_chunk_seconds"] is None
