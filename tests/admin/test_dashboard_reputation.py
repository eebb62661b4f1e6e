"""The dashboard's bounce and complaint rates of the last 30 days against the
bulk-sender limits (SPEC 13): complaints under 0.3 %, a warning from 0.1 %; bounces
reviewed by ESPs above about 2 %, a warning from 1 %. Only events matched to one of our
deliveries count, over the messages sent in those days, in a constant number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.admin.dashboard import COMPLAINT_LIMIT, COMPLAINT_WARNING, _rate_figure
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, MailEvent
from tests.factories import BurstFactory, DeliveryFactory, MemberFactory

pytestmark = pytest.mark.django_db


def sent_deliveries(n: int) -> list[Delivery]:
    people = MemberFactory.create_bulk(n)
    burst = BurstFactory(status=BurstStatus.SENT, recipients=people)
    return DeliveryFactory.create_for(burst, people, status=DeliveryStatus.SENT)


def event(delivery: Delivery | None, kind: str, key: str) -> MailEvent:
    return MailEvent.objects.create(
        kind=kind, source="imap", delivery=delivery, email="x@example.test", dedup_key=key
    )


def test_the_rates_count_matched_events_over_the_messages_sent(root_client):
    deliveries = sent_deliveries(10)
    event(deliveries[0], "hard_bounce", "a")
    event(deliveries[0], "soft_bounce", "b")  # the same delivery: counted once
    event(None, "hard_bounce", "c")  # unmatched: not ours to count
    event(deliveries[1], "complaint", "d")
    old = event(deliveries[2], "complaint", "e")
    MailEvent.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=40))

    reputation = root_client.get("/admin/").context["reputation"]

    assert (reputation["bounces"]["count"], reputation["bounces"]["rate"]) == ("1", "10.0 %")
    assert (reputation["complaints"]["count"], reputation["complaints"]["rate"]) == ("1", "10.0 %")
    assert reputation["complaints"]["level"] == "over"


@pytest.mark.parametrize(
    ("complaints", "level"), [(0, "ok"), (0.9, "ok"), (1, "warning"), (2.9, "warning"), (3, "over")]
)
def test_complaints_are_judged_against_the_bulk_sender_limits(complaints, level):
    # per 1,000 messages: 1 is 0.1 %, 3 is 0.3 %
    figure = _rate_figure(
        int(complaints * 10), 10_000, limit=COMPLAINT_LIMIT, warning=COMPLAINT_WARNING, what="complains"
    )
    assert figure["level"] == level


def test_the_dashboard_reads_the_rates_in_a_constant_number_of_queries(root_client):
    counts = []
    for n in (1, 5):
        for i, delivery in enumerate(sent_deliveries(n)):
            event(delivery, "hard_bounce", f"{n}-{i}")
        with CaptureQueriesContext(connection) as queries:
            html = root_client.get("/admin/").content.decode()
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert 'id="dashboard-reputation"' in html and "under the 0.3 % limit" in html
