"""The chunk journal (issue 15 point 3): each reply read is on disk before the next
message leaves; a dead chunk's journal is written to the database before anyone on
the host claims or takes back deliveries, so what it sent is not sent again.

Real aiosmtpd sink, real engine, huey inline; a "dead chunk" is a journal left on disk
with its lock free, which is exactly what a SIGKILL leaves (tests/campaigns/
test_workers.py kills real consumers)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from campaigns import services
from campaigns.engine import claiming
from campaigns.engine.classify import Outcome
from campaigns.engine.journal import Journal
from campaigns.engine.recording import Recorder
from campaigns.engine.recovery import journals_replay
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from tests.campaigns.bursts import assert_counters_exact, sending_burst, statuses
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)

SENT = Outcome(DeliveryStatus.SENT, relay_id="relay-1")
NOT_FOUND = Outcome(DeliveryStatus.NOT_FOUND, "550 5.1.1 No such user")


def journal_files() -> list[Path]:
    return sorted(Path(settings.EMAIL_JOURNAL_DIR).glob("*.journal"))


def dead_chunk(burst: EmailBurst, token: str, outcomes: dict[str, Outcome]) -> None:
    """A chunk that claimed the burst's deliveries, learnt `outcomes` (by email) and died
    before writing them: its journal stays on disk, its lock released."""
    assert claiming.claim(burst_id=burst.pk, token=token, limit=100)
    journal = Journal(settings.EMAIL_JOURNAL_DIR, burst_id=burst.pk, token=token)
    recorder = Recorder(burst_id=burst.pk, token=token, journal=journal)
    rows = dict(Delivery.objects.filter(burst=burst).values_list("email", "pk"))
    for email, outcome in outcomes.items():
        recorder.add(rows[email], 0, outcome)
    journal.close(keep=True)


def test_a_dead_chunks_replies_are_recorded_and_only_the_rest_is_sent(engine):
    members = MemberFactory.create_bulk(4, prefix="j")
    burst = sending_burst(members)
    dead_chunk(burst, "dead", {members[0].email: SENT, members[1].email: NOT_FOUND})

    services.chunk_process(burst_id=burst.pk)

    assert engine.received_count_by_address() == {members[2].email: 1, members[3].email: 1}
    assert statuses(burst) == {
        members[0].email: DeliveryStatus.SENT,
        members[1].email: DeliveryStatus.NOT_FOUND,
        members[2].email: DeliveryStatus.SENT,
        members[3].email: DeliveryStatus.SENT,
    }
    replayed = Delivery.objects.get(burst=burst, email=members[0].email)
    assert replayed.relay_message_id == "relay-1"
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert journal_files() == []
    assert_counters_exact(burst.pk)


def test_recovery_replays_a_journal_before_taking_back_expired_leases(engine):
    members = MemberFactory.create_bulk(3, prefix="j")
    burst = sending_burst(members)
    dead_chunk(burst, "dead", {members[0].email: SENT})
    Delivery.objects.filter(burst=burst).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    report = services.deliveries_recover()

    assert report["replayed"] == 1
    assert engine.received_count_by_address() == {members[1].email: 1, members[2].email: 1}
    assert EmailBurst.objects.get(pk=burst.pk).status == BurstStatus.SENT
    assert_counters_exact(burst.pk)


def test_a_live_chunks_journal_is_left_alone(engine):
    members = MemberFactory.create_bulk(2, prefix="j")
    burst = sending_burst(members)
    claiming.claim(burst_id=burst.pk, token="live", limit=2)
    journal = Journal(settings.EMAIL_JOURNAL_DIR, burst_id=burst.pk, token="live")
    recorder = Recorder(burst_id=burst.pk, token="live", journal=journal)
    recorder.add(Delivery.objects.filter(burst=burst).first().pk, 0, SENT)
    try:
        assert journals_replay() == 0
        assert journal_files() == [journal.path]
        assert not Delivery.objects.filter(burst=burst, status=DeliveryStatus.SENT).exists()
    finally:
        journal.close(keep=False)


def test_a_journal_already_in_the_database_is_not_counted_twice(engine):
    members = MemberFactory.create_bulk(2, prefix="j")
    burst = sending_burst(members)
    claiming.claim(burst_id=burst.pk, token="dead", limit=2)
    journal = Journal(settings.EMAIL_JOURNAL_DIR, burst_id=burst.pk, token="dead")
    recorder = Recorder(burst_id=burst.pk, token="dead", journal=journal)
    first = Delivery.objects.filter(burst=burst).order_by("pk").first()
    recorder.add(first.pk, 0, SENT)
    recorder.flush()
    # Killed between the commit and emptying the file: the journal repeats the row.
    journal.write(first.pk, 0, SENT)
    journal.close(keep=True)

    assert journals_replay() == 0

    assert EmailBurst.objects.get(pk=burst.pk).count_sent == 1
    assert_counters_exact(burst.pk)
    assert journal_files() == []


def test_a_torn_last_line_is_skipped_and_the_lines_before_it_count(engine):
    members = MemberFactory.create_bulk(2, prefix="j")
    burst = sending_burst(members)
    dead_chunk(burst, "dead", {members[0].email: SENT})
    [path] = journal_files()
    with open(path, "ab") as file:
        file.write(b'[12345,0,"sent","",fal')

    assert journals_replay() == 1

    assert statuses(burst)[members[0].email] == DeliveryStatus.SENT
    assert statuses(burst)[members[1].email] == DeliveryStatus.PENDING
    # The rest of the dead chunk is free for the next chunk at once, not after its lease.
    assert Delivery.objects.get(burst=burst, email=members[1].email).claim_token == ""


def test_every_reply_is_on_disk_before_the_next_message_and_a_finished_chunk_leaves_no_file(engine):
    members = MemberFactory.create_bulk(3, prefix="j")
    burst = sending_burst(members)
    claiming.claim(burst_id=burst.pk, token="t", limit=3)
    journal = Journal(settings.EMAIL_JOURNAL_DIR, burst_id=burst.pk, token="t")
    recorder = Recorder(burst_id=burst.pk, token="t", journal=journal)
    ids = list(Delivery.objects.filter(burst=burst).order_by("pk").values_list("pk", flat=True))
    for n, delivery_id in enumerate(ids, start=1):
        recorder.add(delivery_id, 0, SENT)
        assert journal.path.read_bytes().count(b"\n") == n
    recorder.flush()
    assert os.path.getsize(journal.path) == 0  # emptied once the database holds it
    journal.close(keep=False)

    services.chunk_process(burst_id=burst.pk)
    assert journal_files() == []
