"""The policy every intake goes through (`services.mail_event_record`, SPEC 13): one
event per reported recipient, matched by a valid delivery token or the relay's id;
hard bounces suppress, soft ones after 3 of the address's last 5 sent deliveries,
complaints unsubscribe and suppress, blocked and delayed are recorded only; a replay,
a forged token or a match by address alone changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest

from campaigns import services
from campaigns.engine import tokens
from campaigns.models import Delivery, DeliveryStatus, EmailBurst, MailEvent
from members.models import Member, Suppression
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db


# The shape of campaigns.bounces.parse's dataclasses (the service reads only these fields).
@dataclass(frozen=True)
class Recipient:
    email: str
    kind: str
    status: str = ""
    diagnostic: str = ""


@dataclass(frozen=True)
class Parsed:
    kind: str
    recipients: tuple[Recipient, ...]
    delivery_tokens: tuple[str, ...] = ()
    relay_ids: tuple[str, ...] = ()
    occurred_at: datetime | None = None
    subject: str = ""


def token_of(delivery: Delivery) -> str:
    if not hasattr(tokens, "delivery_token"):
        pytest.skip("the delivery token (campaigns.engine.tokens.delivery_token) is not there yet")
    return tokens.delivery_token(delivery.pk)


def sent_delivery(**fields) -> Delivery:
    return DeliveryFactory(status=DeliveryStatus.SENT, **fields)


def report(delivery: Delivery, kind: str, *, key: str = "k1", status: str = "", email: str | None = None):
    parsed = Parsed(
        kind=kind,
        recipients=(Recipient(email=email or delivery.email.lower(), kind=kind, status=status),),
        delivery_tokens=(token_of(delivery),),
    )
    return services.mail_event_record(parsed=parsed, source="command", raw=b"raw report", dedup_key=key)


def test_a_hard_bounce_with_a_valid_token_suppresses_the_address_and_marks_the_delivery():
    delivery = sent_delivery()
    [event] = report(delivery, "hard_bounce", status="5.1.1")

    assert (event.delivery_id, event.member_id, event.matched_by) == (
        delivery.pk,
        delivery.member_id,
        "token",
    )
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.event_id) == (
        delivery.email.lower(),
        "hard_bounce",
        event.pk,
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT  # what SMTP said stays
    assert delivery.bounced_at is not None
    assert EmailBurst.objects.get(pk=delivery.burst_id).count_bounced == 1


def test_a_replayed_report_records_nothing_new():
    delivery = sent_delivery()
    report(delivery, "hard_bounce")

    assert report(delivery, "hard_bounce") == []
    assert MailEvent.objects.count() == 1
    assert EmailBurst.objects.get(pk=delivery.burst_id).count_bounced == 1


def test_a_second_bounce_of_one_delivery_counts_it_once():
    delivery = sent_delivery()
    report(delivery, "hard_bounce", key="a")
    report(delivery, "hard_bounce", key="b")

    assert MailEvent.objects.count() == 2
    assert EmailBurst.objects.get(pk=delivery.burst_id).count_bounced == 1


def test_a_complaint_unsubscribes_the_member_and_suppresses_the_address():
    delivery = sent_delivery()
    report(delivery, "complaint")

    assert Member.objects.get(pk=delivery.member_id).unsubscribed_at is not None
    assert Suppression.objects.get().reason == "complaint"
    delivery.refresh_from_db()
    assert delivery.complained_at is not None
    assert EmailBurst.objects.get(pk=delivery.burst_id).count_complained == 1


@pytest.mark.parametrize("kind", ["blocked", "delayed"])
def test_blocked_and_delayed_are_recorded_only(kind):
    delivery = sent_delivery()
    [event] = report(delivery, kind)

    assert event.delivery_id == delivery.pk
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert (delivery.bounced_at, delivery.complained_at) == (None, None)
    assert Member.objects.get(pk=delivery.member_id).unsubscribed_at is None


def test_a_forged_token_matches_nobody_and_suppresses_no_one():
    delivery = sent_delivery()
    forged = token_of(delivery)[:-1] + ("a" if not token_of(delivery).endswith("a") else "b")
    parsed = Parsed(
        kind="hard_bounce",
        recipients=(Recipient(email=delivery.email, kind="hard_bounce"),),
        delivery_tokens=(forged,),
    )
    [event] = services.mail_event_record(parsed=parsed, source="imap", raw="x", dedup_key="forged")

    assert event.delivery_id is None
    assert event.matched_by == "address"  # the address is a member's: kept, unmatched
    assert not Suppression.objects.exists()


def test_a_match_by_address_alone_never_suppresses_or_unsubscribes():
    delivery = sent_delivery()
    parsed = Parsed(kind="complaint", recipients=(Recipient(email=delivery.email.upper(), kind="complaint"),))
    [event] = services.mail_event_record(parsed=parsed, source="upload", raw="x", dedup_key="addr")

    assert (event.delivery_id, event.member_id, event.matched_by) == (None, None, "address")
    assert not Suppression.objects.exists()
    assert Member.objects.get(pk=delivery.member_id).unsubscribed_at is None


def test_a_token_for_another_address_does_not_match_a_report_about_several_recipients():
    delivery, other = sent_delivery(), sent_delivery()
    parsed = Parsed(
        kind="hard_bounce",
        recipients=(
            Recipient(email=other.email, kind="hard_bounce"),
            Recipient(email="stranger@example.org", kind="hard_bounce"),
        ),
        delivery_tokens=(token_of(delivery),),
    )
    events = services.mail_event_record(parsed=parsed, source="imap", raw="x", dedup_key="two")

    assert [e.delivery_id for e in events] == [None, None]
    assert not Suppression.objects.exists()


def test_the_relay_id_matches_a_webhook_event():
    delivery = sent_delivery()
    Delivery.objects.filter(pk=delivery.pk).update(relay_message_id="0100018c-abc")
    parsed = Parsed(
        kind="hard_bounce",
        recipients=(Recipient(email=delivery.email, kind="hard_bounce"),),
        relay_ids=("0100018c-abc",),
    )
    [event] = services.mail_event_record(
        parsed=parsed, source="webhook:postmark", raw="{}", dedup_key="evt-1"
    )

    assert (event.delivery_id, event.matched_by) == (delivery.pk, "relay_id")
    assert Suppression.objects.get().email == delivery.email.lower()


def test_soft_bounces_suppress_after_three_of_the_last_five_sent_deliveries():
    first = sent_delivery()
    member = first.member
    deliveries = [first] + [sent_delivery(member=member) for _ in range(4)]

    report(deliveries[0], "soft_bounce", key="s0")
    report(deliveries[1], "soft_bounce", key="s1")
    assert not Suppression.objects.exists()
    report(deliveries[2], "soft_bounce", key="s2")

    assert Suppression.objects.get().reason == "hard_bounce"


def test_soft_bounces_older_than_the_last_five_sent_deliveries_do_not_count():
    first = sent_delivery()
    member = first.member
    old = [first] + [sent_delivery(member=member) for _ in range(1)]
    for i, delivery in enumerate(old):
        report(delivery, "soft_bounce", key=f"old{i}")
    recent = [sent_delivery(member=member) for _ in range(4)]
    report(recent[-1], "soft_bounce", key="new")

    assert not Suppression.objects.exists()


def test_a_report_nobody_could_read_is_kept_as_unparsed():
    parsed = Parsed(kind="unparsed", recipients=())
    [event] = services.mail_event_record(parsed=parsed, source="imap", raw=b"\x00junk\xff", dedup_key="junk")

    assert (event.kind, event.email, event.delivery_id) == ("unparsed", "", None)
    assert "\x00" not in event.raw


def test_the_raw_report_is_cut_with_a_marker():
    parsed = Parsed(kind="unparsed", recipients=())
    [event] = services.mail_event_record(parsed=parsed, source="imap", raw="x" * 100_000, dedup_key="big")

    assert event.raw.startswith("x" * 1000)
    assert event.raw.endswith("the rest of the message was not kept]")
    assert len(event.raw) < 70_000


def test_recount_bursts_repairs_the_bounce_and_complaint_counters():
    delivery = sent_delivery()
    report(delivery, "hard_bounce")
    EmailBurst.objects.filter(pk=delivery.burst_id).update(count_bounced=7)

    assert services.bursts_recount(burst_ids=[delivery.burst_id]) == [
        f"burst {delivery.burst_id}: count_bounced 7 -> 1"
    ]


def test_a_complaint_with_the_address_hidden_is_matched_by_its_token():
    delivery = sent_delivery()
    parsed = Parsed(
        kind="complaint",
        recipients=(Recipient(email="", kind="complaint"),),
        delivery_tokens=(token_of(delivery),),
    )
    [event] = services.mail_event_record(parsed=parsed, source="imap", raw="x", dedup_key="redacted")

    assert (event.delivery_id, event.email, event.matched_by) == (delivery.pk, delivery.email, "token")
    assert Suppression.objects.get().reason == "complaint"
    assert Member.objects.get(pk=delivery.member_id).unsubscribed_at is not None


def test_an_address_nobody_has_is_not_matched_at_all():
    parsed = Parsed(
        kind="hard_bounce", recipients=(Recipient(email="nobody@example.org", kind="hard_bounce"),)
    )
    [event] = services.mail_event_record(parsed=parsed, source="command", raw="x", dedup_key="nobody")

    assert (event.delivery_id, event.matched_by) == (None, "")


def test_the_diagnostic_names_the_status_code_once():
    delivery = sent_delivery()
    parsed = Parsed(
        kind="hard_bounce",
        recipients=(
            Recipient(
                email=delivery.email, kind="hard_bounce", status="5.1.1", diagnostic="550 5.1.1 User unknown"
            ),
        ),
        delivery_tokens=(token_of(delivery),),
    )
    [event] = services.mail_event_record(parsed=parsed, source="imap", raw="x", dedup_key="diag")
    assert event.diagnostic == "550 5.1.1 User unknown"
    other = Parsed(
        kind="soft_bounce",
        recipients=(
            Recipient(email=delivery.email, kind="soft_bounce", status="4.2.2", diagnostic="Mailbox full"),
        ),
    )
    [event] = services.mail_event_record(parsed=other, source="imap", raw="x", dedup_key="diag2")
    assert event.diagnostic == "4.2.2 Mailbox full"
