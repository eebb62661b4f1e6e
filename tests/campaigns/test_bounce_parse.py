"""Reading bounces and complaints (campaigns.bounces.parse): a table test over real-shaped
samples (bounce_samples/*.eml, what each must give in expected.json), the rules that
decide a failure's kind, and messages that must not break the parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core import signing

from campaigns.bounces.parse import (
    MAX_BYTES,
    ParsedEvent,
    failure_kind,
    parse_message,
)
from campaigns.engine.tokens import delivery_id_from_token, delivery_token

SAMPLES = Path(__file__).parent / "bounce_samples"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def sample_key(settings):
    """The secret the samples' delivery tokens were signed with."""
    settings.SECRET_KEY = EXPECTED["secret_key"]


def parse_sample(name: str) -> ParsedEvent:
    return parse_message((SAMPLES / name).read_bytes())


def delivery_ids(event: ParsedEvent) -> list[int | str]:
    ids: list[int | str] = []
    for token in event.delivery_tokens:
        try:
            ids.append(delivery_id_from_token(token))
        except signing.BadSignature:
            ids.append("invalid")
    return ids


def test_there_are_at_least_25_samples_and_each_has_its_expectation():
    files = {p.name for p in SAMPLES.glob("*.eml")}
    assert len(files) >= 25
    assert files == set(EXPECTED["samples"])


@pytest.mark.parametrize("name", sorted(EXPECTED["samples"]))
def test_each_sample_gives_its_kind_recipients_and_correlation(name, sample_key):
    expected = EXPECTED["samples"][name]

    event = parse_sample(name)

    assert event.kind == expected["kind"]
    assert [[r.email, r.kind, r.status] for r in event.recipients] == expected["recipients"]
    if expected["token"] is None:
        assert event.delivery_tokens == ()
    else:
        assert expected["token"] in delivery_ids(event)
    assert set(expected["relay_ids"]) <= set(event.relay_ids)
    assert all("<" not in i and ">" not in i for i in event.relay_ids)
    if "subject" in expected:
        assert event.subject == expected["subject"]


def test_a_forged_bounce_carries_no_valid_token(sample_key):
    event = parse_sample("forged_bad_token.eml")

    assert event.kind == "hard_bounce" and len(event.delivery_tokens) == 1
    with pytest.raises(signing.BadSignature):
        delivery_id_from_token(event.delivery_tokens[0])


def test_a_queue_id_in_a_bounce_is_no_relay_id_as_anyone_could_guess_one(sample_key):
    # The relay's queue id is in X-Postfix-Queue-ID and in the returned Received header.
    raw = (SAMPLES / "postfix_dsn_rfc822.eml").read_bytes()
    assert b"X-Postfix-Queue-ID: 4Tq9Lm2Xy7zK3" in raw and b"with ESMTPS id 4Tq9Lm2Xy7zK3" in raw

    assert parse_message(raw).relay_ids == ()


def test_an_ses_message_id_gives_its_relay_id_whole_and_as_ses_answered_data(sample_key):
    event = parse_sample("ses_bounce_relay_id.eml")

    ses_id = "0100018e0f1d2c3b-5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d-000000"
    assert event.relay_ids == (f"{ses_id}@email.amazonses.com", ses_id)
    assert event.delivery_tokens == ()


def test_a_complaint_that_hides_the_address_is_kept_for_its_token_to_name(sample_key):
    event = parse_sample("arf_redacted_recipient.eml")

    assert event.kind == "complaint"
    assert [(r.email, r.kind) for r in event.recipients] == [("", "complaint")]
    assert delivery_ids(event) == [116]


def test_a_dsn_gives_the_diagnostic_and_the_time_of_the_report(sample_key):
    event = parse_sample("postfix_dsn_rfc822.eml")

    [recipient] = event.recipients
    assert recipient.diagnostic == (
        "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert event.occurred_at is not None and event.occurred_at.isoformat() == "2024-03-05T09:12:10+00:00"


def test_a_non_standard_bounce_gives_the_reply_next_to_the_address(sample_key):
    [exim] = parse_sample("exim_user_unknown.eml").recipients
    [exchange] = parse_sample("exchange_ndr_plain.eml").recipients
    [qmail] = parse_sample("qmail_no_mailbox.eml").recipients

    assert exim.diagnostic == "550 5.1.1 <nina@example.com>: User unknown"
    assert exchange.diagnostic.startswith("550 5.1.1 RESOLVER.ADR.RecipNotFound")
    assert "no mailbox here by that name" in qmail.diagnostic


def test_the_samples_tokens_name_the_deliveries_they_were_made_for(sample_key):
    assert delivery_ids(parse_sample("postfix_dsn_rfc822.eml")) == [101]
    assert parse_sample("postfix_dsn_rfc822.eml").delivery_tokens == (delivery_token(101),)


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "kind", "code"),
    [
        ("failed", "5.1.1", "550 5.1.1 User unknown", "hard_bounce", "5.1.1"),
        ("failed", "5.2.1", "550 5.2.1 Mailbox disabled", "hard_bounce", "5.2.1"),
        ("failed", "4.2.2", "452 4.2.2 Mailbox full", "soft_bounce", "4.2.2"),
        ("failed", "5.2.2", "552 5.2.2 Over quota", "soft_bounce", "5.2.2"),
        ("failed", "4.4.7", "Delivery time expired", "soft_bounce", "4.4.7"),
        ("delayed", "4.4.1", "Connection timed out", "delayed", "4.4.1"),
        ("failed", "5.7.1", "554 5.7.1 Message rejected as spam", "blocked", "5.7.1"),
        ("failed", "4.7.0", "421 4.7.0 Try again later", "blocked", "4.7.0"),
        ("failed", "5.0.0", "550 5.0.0 Blocked by policy", "blocked", "5.0.0"),
        ("failed", "5.0.0", "550 5.1.1 user unknown", "hard_bounce", "5.1.1"),
        ("failed", "5.4.4", "Host or domain name not found", "hard_bounce", "5.4.4"),
        ("failed", "", "550 Requested action not taken: mailbox unavailable", "hard_bounce", ""),
        ("failed", "", "554 delivery error: dd This user doesn't have an account", "hard_bounce", ""),
        ("failed", "", "553 sorry, that domain isn't in my list of allowed rcpthosts", "hard_bounce", ""),
        ("failed", "", "451 Try again later", "soft_bounce", ""),
        ("failed", "", "552 Requested mail action aborted: exceeded storage allocation", "soft_bounce", ""),
        ("failed", "", "554 Your IP is on a blacklist", "blocked", ""),
        ("failed", "", "Sorry, no mailbox here by that name. (#5.1.1)", "hard_bounce", "5.1.1"),
        ("failed", "", "no such user here", "hard_bounce", ""),
        ("failed", "", "", "soft_bounce", ""),
        ("failed", "2.0.0", "", "soft_bounce", ""),
    ],
)
def test_the_kind_of_a_failure_follows_the_status_then_the_reply(action, status, diagnostic, kind, code):
    assert failure_kind(action=action, status=status, diagnostic=diagnostic) == (kind, code)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe" * 1000,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n",
        b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;\nAction: failed\n",
        b"Subject: =?x-unknown?B?////?=\nContent-Type: text/plain; charset=x-no-such-charset\n\n\xff\xfe",
        b"From: MAILER-DAEMON@example.org\nDate: Mon, 99 Foo 99999 99:99:99 +9999\n\n550 5.1.1",
    ],
)
def test_junk_and_broken_messages_give_unparsed_and_never_raise(raw):
    event = parse_message(raw)

    assert isinstance(event, ParsedEvent)
    assert event.kind == "unparsed"
    assert event.recipients == ()


def test_a_huge_message_is_read_only_up_to_the_cap_and_the_report_still_counts(sample_key):
    dsn = (SAMPLES / "postfix_dsn_rfc822.eml").read_bytes()
    huge = dsn.replace(b"Hello Bob,", b"Hello Bob,\n" + b"x" * 99 + (b"\n" + b"y" * 99) * 50_000)
    assert len(huge) > 2 * MAX_BYTES

    event = parse_message(huge)

    assert event.kind == "hard_bounce"
    assert [r.email for r in event.recipients] == ["bob@example.net"]
    assert delivery_ids(event) == [101]


def test_a_message_given_as_text_is_read_like_bytes(sample_key):
    text = (SAMPLES / "qmail_no_mailbox.eml").read_text(encoding="utf-8")

    assert parse_message(text) == parse_sample("qmail_no_mailbox.eml")  # type: ignore[arg-type]
