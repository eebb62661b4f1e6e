"""A burst goes on after PostgreSQL or Redis was unreachable for a while, and nobody
is mailed twice (issue 15 point 3): real `run_huey` consumers reach the real services
through a proxy that cuts every connection and refuses new ones, then lets them
through again.

PostgreSQL and Redis only: the embedded run's SQLite and huey-on-SQLite are files,
not services that can go away."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from campaigns import services
from campaigns.models import Delivery, DeliveryStatus, EmailBurst
from tests.campaigns.bursts import assert_counters_exact, burst_done
from tests.factories import DraftBurstFactory, MemberFactory
from tests.stallproxy import StallProxy
from tests.workers import database_url, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOTAL = 1500


def via(url: str, proxy: StallProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    where = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{where}" if len(netloc) == 2 else where))


def a_burst_for_everyone() -> EmailBurst:
    MemberFactory.create_bulk(TOTAL)
    burst = DraftBurstFactory(all_members=True)
    services.burst_send(burst_id=burst.pk)
    return burst


def assert_everyone_mailed_once(sink, burst_id: int) -> None:
    counts = sink.received_count_by_address()
    assert len(counts) == TOTAL, "an address never reached the sink"
    assert {address: n for address, n in counts.items() if n > 1} == {}
    rows = Delivery.objects.filter(burst_id=burst_id)
    assert rows.count() == TOTAL
    assert not rows.exclude(status=DeliveryStatus.SENT).exists()
    assert_counters_exact(burst_id)


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_postgres_outage_mid_burst_mails_nobody_twice(require_postgres, sink, start_consumer, fault):
    burst = a_burst_for_everyone()
    target = connection.settings_dict
    with StallProxy(target["HOST"] or "127.0.0.1", int(target["PORT"] or 5432)).start() as proxy:
        start_consumer(
            sink=sink,
            workers=2,
            periodic=True,
            DATABASE_URL=via(database_url(), proxy),
            DATABASE_TIMEOUT="2",  # a stalled statement fails after 2 + 2 s
            EMAIL_CHUNK_SIZE="100",
            EMAIL_RATE_LIMIT="300",
        )
        wait_for(lambda: sink.message_count >= TOTAL * 0.3, timeout=120, interval=0.01, what="30 % sent")
        getattr(proxy, fault)()
        time.sleep(6)  # the workers find the database gone mid-chunk
        proxy.resume()
        wait_for(lambda: burst_done(burst.pk), timeout=180, what="the burst to be sent")
    assert_everyone_mailed_once(sink, burst.pk)


def test_a_redis_outage_mid_burst_mails_nobody_twice(require_redis, sink, start_consumer):
    burst = a_burst_for_everyone()
    target = urlsplit(settings.REDIS_URL)
    with StallProxy(target.hostname or "127.0.0.1", target.port or 6379).start() as proxy:
        # The rate limit books every message's slot in Redis: the outage hits mid-chunk.
        start_consumer(
            sink=sink,
            workers=2,
            periodic=True,
            REDIS_URL=via(settings.REDIS_URL, proxy),
            EMAIL_CHUNK_SIZE="100",
            EMAIL_RATE_LIMIT="300",
        )
        wait_for(lambda: sink.message_count >= TOTAL * 0.3, timeout=120, interval=0.01, what="30 % sent")
        proxy.cut()
        time.sleep(4)
        proxy.resume()
        wait_for(lambda: burst_done(burst.pk), timeout=180, what="the burst to be sent")
    assert_everyone_mailed_once(sink, burst.pk)
