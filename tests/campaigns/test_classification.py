"""How every SMTP outcome becomes a Delivery status (issue 3 point 3).

The table runs each scripted reply through a real aiosmtpd server and the real
engine: a burst is sent with `services.burst_send` (huey in immediate mode), then
retries are driven by calling `services.chunk_process` until nothing is pending
(delayed huey tasks never run in immediate mode; EMAIL_RETRY_DELAY=0 makes a retry
due at once). Each burst also mails a control member after the scripted one, on
the same connection, to show that one recipient's outcome never harms the next.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass

import pytest

from campaigns import services
from campaigns.engine import classify
from campaigns.models import BurstStatus, Delivery, DeliveryStatus
from devtools import smtp_sink
from tests.campaigns.bursts import drive
from tests.factories import DraftBurstFactory, MemberFactory

SENT = DeliveryStatus.SENT
NOT_FOUND = DeliveryStatus.NOT_FOUND
FAILED = DeliveryStatus.FAILED
CONNECTION_ERROR = DeliveryStatus.CONNECTION_ERROR
OTHER_ERROR = DeliveryStatus.OTHER_ERROR

CONTROL = "control@example.test"
MAX_ATTEMPTS = 3


@pytest.fixture
def engine(engine, settings):
    """The shared engine, trying each delivery MAX_ATTEMPTS times as the table counts."""
    settings.EMAIL_MAX_ATTEMPTS = MAX_ATTEMPTS
    return engine


async def _ehlo_with_pipelining(self, server, session, envelope, hostname, responses):
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


def use_smtp_mode(mode: str, server, monkeypatch) -> None:
    """Make `server` offer PIPELINING (RFC 2920) or not: the engine takes a different path
    for each (one write for MAIL, RCPT and DATA, or one command at a time)."""
    wanted = mode == "pipelining"
    if hasattr(server, "pipelining"):
        server.pipelining = wanted
    elif wanted:  # an older sink: aiosmtpd answers pipelined commands but does not say so
        monkeypatch.setattr(smtp_sink._Handler, "handle_EHLO", _ehlo_with_pipelining, raising=False)
    with smtplib.SMTP(server.host, server.port, timeout=5) as probe:
        probe.ehlo()
        assert probe.has_extn("pipelining") is wanted


@pytest.fixture(params=["sequential", "pipelining"])
def smtp_mode(request, engine, monkeypatch):
    use_smtp_mode(request.param, engine, monkeypatch)
    return request.param


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    script: tuple[str, ...]  # actions for the scripted address, one per attempt
    status: str
    attempts: int
    contains: tuple[str, ...] = ()  # substrings of error_message
    max_attempts: int = MAX_ATTEMPTS
    timeout: float = 2
    received: int | None = None  # messages the sink accepted for the address; default: 1 if sent

    def __str__(self) -> str:
        return self.id


def forever(action: str, times: int = MAX_ATTEMPTS + 2) -> tuple[str, ...]:
    return (action,) * times


CASES = [
    # accepted
    Case("250_accepted", ("rcpt:250 2.1.5 Recipient ok",), SENT, 1),
    # permanent refusals at RCPT: the enhanced code decides when there is one
    Case("550_5.1.1_unknown_user", ("550 5.1.1 <{address}>: User unknown",), NOT_FOUND, 1,
         ("550", "5.1.1", "User unknown")),
    Case("550_5.7.1_policy_is_failed", ("550 5.7.1 Relaying denied",), FAILED, 1,
         ("550", "5.7.1", "Relaying denied")),
    Case("550_without_enhanced_is_not_found", ("550 Mailbox unavailable",), NOT_FOUND, 1,
         ("550", "Mailbox unavailable")),
    Case("551_user_not_local", ("551 User not local; please try elsewhere",), NOT_FOUND, 1,
         ("551", "User not local")),
    Case("553_mailbox_name_not_allowed", ("553 Mailbox name not allowed",), NOT_FOUND, 1,
         ("553", "Mailbox name not allowed")),
    Case("553_5.7.1_is_failed", ("553 5.7.1 Recipient not permitted",), FAILED, 1,
         ("553", "5.7.1", "Recipient not permitted")),
    Case("553_5.1.3_bad_syntax_is_not_found", ("553 5.1.3 Bad recipient address syntax",), NOT_FOUND, 1,
         ("553", "5.1.3")),
    Case("554_without_enhanced_is_failed", ("554 Transaction failed",), FAILED, 1,
         ("554", "Transaction failed")),
    Case("554_5.7.1_spam_is_failed", ("554 5.7.1 Message rejected as spam",), FAILED, 1,
         ("554", "5.7.1", "rejected as spam")),
    Case("550_5.2.1_disabled_is_not_found", ("550 5.2.1 Mailbox disabled",), NOT_FOUND, 1,
         ("550", "5.2.1", "Mailbox disabled")),
    Case("554_5.2.1_is_not_found", ("554 5.2.1 Account inactive",), NOT_FOUND, 1, ("554", "5.2.1")),
    Case("550_5.1.10_null_mx_is_not_found", ("550 5.1.10 Recipient domain has null MX",), NOT_FOUND, 1,
         ("5.1.10",)),
    Case("551_5.1.6_moved_is_not_found", ("551 5.1.6 Mailbox has moved",), NOT_FOUND, 1, ("551", "5.1.6")),
    Case("550_5.2.2_full_not_552_is_failed", ("550 5.2.2 Mailbox full",), FAILED, 1, ("550", "5.2.2")),
    Case("500_syntax_error_is_failed", ("500 5.5.2 Syntax error",), FAILED, 1, ("500", "5.5.2")),
    # 552 at RCPT is temporary (RFC 5321 4.5.3.1.10), whatever its enhanced code
    Case("552_5.2.2_at_rcpt_then_250_is_sent", ("552 5.2.2 Mailbox full",), SENT, 2),
    Case("552_5.2.2_at_rcpt_forever_is_failed", forever("552 5.2.2 Mailbox full"), FAILED, MAX_ATTEMPTS,
         ("552", "5.2.2", "Mailbox full")),
    Case("552_5.3.4_at_rcpt_is_retried", ("552 5.3.4 Too many recipients",), SENT, 2),
    Case("552_without_enhanced_at_rcpt_is_retried", ("552 Requested action aborted",), SENT, 2),
    # 552 at DATA is permanent
    Case("552_5.3.4_at_data_is_failed_not_retried", ("data:552 5.3.4 Message too big",), FAILED, 1,
         ("552", "5.3.4", "Message too big"), received=0),
    Case("552_5.2.2_at_data_is_failed_not_retried", ("data:552 5.2.2 Quota exceeded",), FAILED, 1,
         ("552", "5.2.2", "Quota exceeded"), received=0),
    # transient replies are retried
    Case("452_4.2.2_then_250_is_sent", ("452 4.2.2 Mailbox full",), SENT, 2),
    Case("452_4.2.2_forever_is_failed", forever("452 4.2.2 Mailbox full"), FAILED, MAX_ATTEMPTS,
         ("452", "4.2.2", "Mailbox full")),
    Case("451_4.7.1_greylisted_then_250_is_sent_with_2_attempts",
         ("451 4.7.1 Greylisted, try again later",), SENT, 2),
    Case("451_without_enhanced_then_250_is_sent", ("451 Local error in processing",), SENT, 2),
    Case("450_4.2.1_twice_then_250_is_sent_with_3_attempts",
         ("450 4.2.1 Mailbox busy", "450 4.2.1 Mailbox busy"), SENT, 3),
    Case("421_4.4.2_at_rcpt_then_250_is_sent", ("421 4.4.2 Connection timed out, closing",), SENT, 2),
    Case("421_at_rcpt_forever_is_failed", forever("421 4.3.2 Service shutting down"), FAILED, MAX_ATTEMPTS,
         ("421", "4.3.2")),
    Case("4xx_forever_is_failed_after_max_attempts", forever("450 4.7.0 Try later", 6), FAILED, 4,
         ("450", "4.7.0", "Try later"), max_attempts=4),
    Case("4xx_with_max_attempts_1_is_failed_at_once", forever("451 4.3.0 Try later"), FAILED, 1,
         ("451", "4.3.0"), max_attempts=1),
    # transient replies at DATA
    Case("data_451_4.3.0_then_250_is_sent", ("data:451 4.3.0 Temporary failure",), SENT, 2),
    Case("data_421_then_250_is_sent", ("data:421 4.3.2 Shutting down",), SENT, 2),
    # permanent replies at DATA
    Case("data_554_5.7.1_is_failed", ("data:554 5.7.1 Rejected by content filter",), FAILED, 1,
         ("554", "5.7.1", "content filter"), received=0),
    Case("data_554_without_enhanced_is_failed", ("data:554 Transaction failed",), FAILED, 1,
         ("554", "Transaction failed"), received=0),
    Case("data_550_5.1.1_is_not_found", ("data:550 5.1.1 No such user",), NOT_FOUND, 1,
         ("550", "5.1.1"), received=0),
    # no answer: the connection is unusable
    Case("hang_at_rcpt_past_timeout_is_connection_error", forever("rcpt:hang 10", 3), CONNECTION_ERROR, 2,
         ("timed out",), max_attempts=2, timeout=0.5),
    Case("hang_at_rcpt_once_then_250_is_sent", ("rcpt:hang 10",), SENT, 2, max_attempts=2, timeout=0.5),
    Case("hang_at_data_past_timeout_is_connection_error", forever("data:hang 10", 3), CONNECTION_ERROR, 2,
         ("timed out",), max_attempts=2, timeout=0.5, received=0),
    Case("drop_at_rcpt_then_250_is_sent", ("rcpt:drop",), SENT, 2),
    Case("drop_at_rcpt_forever_is_connection_error", forever("rcpt:drop"), CONNECTION_ERROR, MAX_ATTEMPTS,
         ("Connection error",)),
    Case("drop_at_data_then_250_is_sent", ("data:drop",), SENT, 2),
    Case("drop_at_data_forever_is_connection_error", forever("data:drop"), CONNECTION_ERROR, MAX_ATTEMPTS,
         ("Connection error",), received=0),
]  # fmt: skip


# With a server that offers PIPELINING, the engine sends MAIL, RCPT and DATA in one
# write and reads the three replies after: these cases run that way too.
PIPELINED = {
    "250_accepted",
    "550_5.1.1_unknown_user",
    "550_5.7.1_policy_is_failed",
    "553_mailbox_name_not_allowed",
    "552_5.2.2_at_rcpt_then_250_is_sent",
    "552_5.3.4_at_data_is_failed_not_retried",
    "451_4.7.1_greylisted_then_250_is_sent_with_2_attempts",
    "421_4.4.2_at_rcpt_then_250_is_sent",
    "4xx_forever_is_failed_after_max_attempts",
    "data_451_4.3.0_then_250_is_sent",
    "data_421_then_250_is_sent",
    "data_554_5.7.1_is_failed",
    "hang_at_rcpt_past_timeout_is_connection_error",
    "hang_at_data_past_timeout_is_connection_error",
    "drop_at_rcpt_then_250_is_sent",
    "drop_at_data_forever_is_connection_error",
}
TABLE = [pytest.param(case, "sequential", id=f"sequential-{case.id}") for case in CASES] + [
    pytest.param(case, "pipelining", id=f"pipelining-{case.id}") for case in CASES if case.id in PIPELINED
]


def test_the_pipelined_subset_names_real_cases():
    assert PIPELINED <= {case.id for case in CASES}


# The table runs in the test's transaction (a flush per test would double its time);
# the on_commit callbacks that start the chunk tasks run as at a real commit.
@pytest.mark.django_db
@pytest.mark.parametrize(("case", "mode"), TABLE)
def test_each_scripted_reply_gives_its_status_and_attempt_count(
    case: Case, mode, engine, settings, monkeypatch, django_capture_on_commit_callbacks
):
    use_smtp_mode(mode, engine, monkeypatch)
    settings.EMAIL_MAX_ATTEMPTS = case.max_attempts
    settings.EMAIL_TIMEOUT = case.timeout
    address = f"{case.id.lower().replace('.', '-')}@example.test"
    scripted = MemberFactory(email=address)
    control = MemberFactory(email=CONTROL)
    engine.script(address, *case.script)
    burst = DraftBurstFactory(recipients=[scripted, control])

    with django_capture_on_commit_callbacks(execute=True) as started:
        services.burst_send(burst_id=burst.pk)
    assert started, "burst_send starts the chunk tasks on commit"
    drive(burst.pk)

    delivery = Delivery.objects.get(burst=burst, member=scripted)
    assert (delivery.status, delivery.attempts) == (case.status, case.attempts), delivery.error_message
    for text in case.contains:
        assert text in delivery.error_message
    if case.status == SENT:
        assert delivery.error_message == ""
        assert delivery.sent_at is not None
    else:
        assert delivery.sent_at is None
        assert delivery.error_message
    expected_received = case.received if case.received is not None else int(case.status == SENT)
    assert engine.received_count(address) == expected_received
    # attempts counts SMTP tries: exactly the RCPTs the server saw for the address
    assert engine.rcpt_attempts(address) == case.attempts

    # the control member, mailed after the scripted one, is never harmed
    ok = Delivery.objects.get(burst=burst, member=control)
    assert (ok.status, ok.attempts) == (SENT, 1)
    assert engine.received_count(CONTROL) == 1
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT
    assert burst.finished_at is not None


def test_the_table_has_at_least_25_scripted_replies():
    """Distinct SMTP replies, not rows: a reply that several rows script (once, then
    forever) counts once, and hangs and drops are not replies."""
    actions = [smtp_sink.parse_action(spec) for case in CASES for spec in case.script]
    replies = {action for action in actions if isinstance(action, smtp_sink.Reply)}
    assert len(replies) >= 25
    assert {reply.stage for reply in replies} == {"rcpt", "data"}
    # no two rows share an id: the scripted address is made from it
    assert len({case.id for case in CASES}) == len(CASES)


# --- error_message and attempts ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_error_message_has_code_enhanced_code_and_server_text_of_the_last_reply(engine):
    scripted = MemberFactory(email="busy@example.test")
    engine.script(
        "busy@example.test",
        "450 4.2.1 Mailbox busy, first",
        "452 4.2.2 Over quota",
        "550 5.1.1 Gone for good",
    )
    burst = DraftBurstFactory(recipients=[scripted])

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    delivery = Delivery.objects.get(burst=burst)
    assert delivery.status == NOT_FOUND
    assert delivery.attempts == 3
    assert "550" in delivery.error_message
    assert "5.1.1" in delivery.error_message
    assert "Gone for good" in delivery.error_message
    assert "4.2.2" not in delivery.error_message


@pytest.mark.django_db(transaction=True)
def test_a_pending_retry_keeps_the_transient_reply_and_counts_the_attempt(engine):
    scripted = MemberFactory(email="grey@example.test")
    engine.script("grey@example.test", "451 4.7.1 Greylisted, try again later")
    burst = DraftBurstFactory(recipients=[scripted])

    services.burst_send(burst_id=burst.pk)  # one round only: the retry is not driven

    delivery = Delivery.objects.get(burst=burst)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert "451" in delivery.error_message and "4.7.1" in delivery.error_message
    assert "Greylisted" in delivery.error_message
    assert delivery.next_attempt_at is not None
    assert delivery.claim_token == "" and delivery.lease_expires_at is None
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENDING


@pytest.mark.django_db(transaction=True)
def test_retries_back_off_exponentially_from_email_retry_delay(engine, settings):
    settings.EMAIL_RETRY_DELAY = 60
    settings.EMAIL_MAX_ATTEMPTS = 4
    scripted = MemberFactory(email="slow@example.test")
    engine.script("slow@example.test", *forever("451 4.3.0 Try later"))
    burst = DraftBurstFactory(recipients=[scripted])

    services.burst_send(burst_id=burst.pk)
    delays = []
    for _ in range(3):
        delivery = Delivery.objects.get(burst=burst)
        assert delivery.status == DeliveryStatus.PENDING
        delays.append((delivery.next_attempt_at - delivery.updated_at).total_seconds())
        # nothing is due before next_attempt_at
        assert services.chunk_process(burst_id=burst.pk).claimed == 0
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
        services.chunk_process(burst_id=burst.pk)

    assert [round(d) for d in delays] == [60, 120, 240]
    delivery = Delivery.objects.get(burst=burst)
    assert (delivery.status, delivery.attempts) == (FAILED, 4)


# --- other_error never stops the rest ------------------------------------------------------------------

RAISING_BODY = (
    "Hello {{ member.full_name }}.\n"
    # divisibleby calls int() on the value: a ValueError for Bob, whom the checks
    # the burst passes when saved (every field empty, every field filled) do not meet.
    "{% if member.first_name == 'Bob' %}{{ member.first_name|divisibleby:2 }}{% endif %}\n"
)


@pytest.mark.django_db(transaction=True)
def test_a_member_whose_data_breaks_the_template_is_other_error_and_the_rest_are_sent(engine):
    first = MemberFactory(email="first@example.test", first_name="", last_name="")
    broken = MemberFactory(email="broken@example.test", first_name="Bob")
    last = MemberFactory(email="last@example.test", first_name="", last_name="Last")
    burst = DraftBurstFactory(recipients=[first, broken, last], body=RAISING_BODY)

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    statuses = dict(Delivery.objects.filter(burst=burst).values_list("email", "status"))
    assert statuses == {
        "first@example.test": SENT,
        "broken@example.test": OTHER_ERROR,
        "last@example.test": SENT,
    }
    bad = Delivery.objects.get(burst=burst, member=broken)
    assert bad.error_message
    assert bad.attempts == 0, "no SMTP try was made"
    assert engine.rcpt_attempts("broken@example.test") == 0
    assert engine.received_count_by_address() == {"first@example.test": 1, "last@example.test": 1}
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT


@pytest.mark.django_db(transaction=True)
def test_a_non_ascii_local_part_is_other_error_and_the_rest_are_sent(engine):
    before = MemberFactory(email="before@example.test")
    accented = MemberFactory(email="jos\u00e9@example.test", username="jose")
    after = MemberFactory(email="after@example.test")
    burst = DraftBurstFactory(recipients=[before, accented, after])

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    bad = Delivery.objects.get(burst=burst, member=accented)
    assert bad.status == OTHER_ERROR
    assert bad.attempts == 0
    assert bad.error_message
    assert engine.received_count_by_address() == {"before@example.test": 1, "after@example.test": 1}
    burst.refresh_from_db()
    assert burst.status == BurstStatus.SENT


@pytest.mark.django_db(transaction=True)
def test_an_idn_domain_is_sent_in_its_ascii_form(engine):
    idn = MemberFactory(email="ada@b\u00fccher.example", username="ada-idn")
    burst = DraftBurstFactory(recipients=[idn])

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    delivery = Delivery.objects.get(burst=burst)
    assert delivery.status == SENT
    assert engine.received_count("ada@xn--bcher-kva.example") == 1


@pytest.mark.django_db(transaction=True)
def test_many_failures_of_every_kind_in_one_burst_each_get_their_own_status(engine, smtp_mode):
    """One connection carries them all: every refusal leaves the session usable."""
    plan = {
        "a-ok@example.test": ((), SENT, 1),
        "b-unknown@example.test": (("550 5.1.1 User unknown",), NOT_FOUND, 1),
        "c-ok@example.test": ((), SENT, 1),
        "d-policy@example.test": (("554 5.7.1 Blocked",), FAILED, 1),
        "e-ok@example.test": ((), SENT, 1),
        "f-grey@example.test": (("451 4.7.1 Greylisted",), SENT, 2),
        "g-big@example.test": (("data:552 5.3.4 Too big",), FAILED, 1),
        "h-ok@example.test": ((), SENT, 1),
        "i-421@example.test": (("421 4.4.2 Bye",), SENT, 2),
        "j-drop@example.test": (("data:drop",), SENT, 2),
        "k-ok@example.test": ((), SENT, 1),
    }
    members = []
    for address, (script, _, _) in plan.items():
        members.append(MemberFactory(email=address))
        if script:
            engine.script(address, *script)
    burst = DraftBurstFactory(recipients=members)

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    got = {d.email: (d.status, d.attempts) for d in Delivery.objects.filter(burst=burst)}
    assert got == {address: (status, attempts) for address, (_, status, attempts) in plan.items()}


# --- connection and sender stages ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("stage", "action"),
    [
        ("connect", "connect:421 4.3.2 Too busy, try later"),
        ("connect", "connect:554 5.3.2 No SMTP service here"),
        ("connect", "connect:drop"),
        ("connect", "connect:hang 10"),
        ("mail", "mail:451 4.3.0 Temporary sender problem"),
        ("mail", "mail:421 4.3.2 Closing"),
        ("mail", "mail:drop"),
        ("mail", "mail:hang 10"),
    ],
)
def test_a_failure_before_rcpt_once_is_retried_and_the_next_try_is_sent(
    engine, settings, smtp_mode, stage, action, django_capture_on_commit_callbacks
):
    settings.EMAIL_TIMEOUT = 0.5
    first = MemberFactory(email="first@example.test")
    control = MemberFactory(email=CONTROL)
    if stage == "connect":
        engine.script_connect(action)
    else:
        engine.script_sender(action)
    burst = DraftBurstFactory(recipients=[first, control])

    with django_capture_on_commit_callbacks(execute=True):
        services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    got = {d.email: (d.status, d.attempts) for d in Delivery.objects.filter(burst=burst)}
    assert got == {"first@example.test": (SENT, 2), CONTROL: (SENT, 1)}
    assert engine.received_count_by_address() == {"first@example.test": 1, CONTROL: 1}
    burst.refresh_from_db()
    assert (burst.status, burst.pause_reason) == (BurstStatus.SENT, "")


@pytest.mark.django_db(transaction=True)
def test_a_server_that_always_refuses_the_greeting_gives_connection_error_after_max_attempts(engine):
    only = MemberFactory(email="only@example.test")
    engine.script_connect(*forever("connect:554 5.3.2 No SMTP service here"))
    burst = DraftBurstFactory(recipients=[only])

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    delivery = Delivery.objects.get(burst=burst)
    assert (delivery.status, delivery.attempts) == (CONNECTION_ERROR, MAX_ATTEMPTS)
    assert "554" in delivery.error_message and "5.3.2" in delivery.error_message
    assert engine.rcpt_attempts("only@example.test") == 0


@pytest.mark.django_db(transaction=True)
def test_an_attachment_that_cannot_be_read_is_other_error_for_each_recipient(engine, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = str(tmp_path / "media")
    members = [MemberFactory(email="a@example.test"), MemberFactory(email="b@example.test")]
    burst = DraftBurstFactory(recipients=members)
    attachment = services.attachment_add(
        burst_id=burst.pk, uploaded_file=SimpleUploadedFile("agenda.pdf", b"%PDF-1.4\n", "application/pdf")
    )
    attachment.file.storage.delete(attachment.file.name)

    services.burst_send(burst_id=burst.pk)
    drive(burst.pk)

    rows = list(Delivery.objects.filter(burst=burst).values_list("status", "attempts", "error_message"))
    assert [(status, attempts) for status, attempts, _ in rows] == [(OTHER_ERROR, 0), (OTHER_ERROR, 0)]
    assert all("agenda.pdf" in error for _, _, error in rows)
    assert engine.message_count == 0
    assert engine.connection_count == 0


# --- classify, straight ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "stage", "status", "transient"),
    [
        (250, b"2.1.5 Ok", "rcpt", SENT, False),
        (251, b"User not local; will forward", "rcpt", SENT, False),
        (550, b"5.1.1 <x@example.test>: Recipient address rejected", "rcpt", NOT_FOUND, False),
        (550, "5.1.1 str instead of bytes", "rcpt", NOT_FOUND, False),
        (550, b"5.7.1 Relaying denied", "rcpt", FAILED, False),
        (550, b"Mailbox unavailable", "rcpt", NOT_FOUND, False),
        (550, b"", "rcpt", NOT_FOUND, False),
        (551, b"User not local", "rcpt", NOT_FOUND, False),
        (553, b"Mailbox name not allowed", "rcpt", NOT_FOUND, False),
        (553, b"5.7.1 Not permitted", "rcpt", FAILED, False),
        (554, b"Transaction failed", "rcpt", FAILED, False),
        (554, b"5.7.1 Spam", "data", FAILED, False),
        (554, b"5.1.1 Unknown", "data", NOT_FOUND, False),
        (550, b"5.2.1 Mailbox disabled", "rcpt", NOT_FOUND, False),
        (550, b"5.2.2 Mailbox full", "rcpt", FAILED, False),
        (550, b"5.2.10 Something", "rcpt", FAILED, False),
        (550, b"5.1.10 Null MX", "rcpt", NOT_FOUND, False),
        (552, b"5.2.2 Mailbox full", "rcpt", FAILED, True),
        (552, b"5.1.1 Odd but 552 at RCPT", "rcpt", FAILED, True),
        (552, b"Too many recipients", "rcpt", FAILED, True),
        (552, b"5.3.4 Too big", "data", FAILED, False),
        (552, b"5.2.2 Mailbox full", "data", FAILED, False),
        (552, b"Exceeded storage", "data", FAILED, False),
        (450, b"4.2.1 Busy", "rcpt", FAILED, True),
        (451, b"4.7.1 Greylisted", "rcpt", FAILED, True),
        (452, b"4.2.2 Over quota", "rcpt", FAILED, True),
        (421, b"4.4.2 Timeout", "rcpt", FAILED, True),
        (421, b"Service not available", "data", FAILED, True),
        (451, b"Local error", "data", FAILED, True),
        (500, b"Syntax error", "rcpt", FAILED, False),
        (530, b"5.7.0 Authentication required", "rcpt", FAILED, False),
        (599, b"", "data", FAILED, False),
        # the enhanced code must stand alone: "5.1.1text" is no enhanced code; the basic code decides
        (554, b"5.1.1text", "rcpt", FAILED, False),
        # "5.1" is no enhanced code either
        (554, b"5.1 incomplete", "rcpt", FAILED, False),
        # surrounding whitespace and several lines
        (550, b"   5.1.1   User\r\n unknown", "rcpt", NOT_FOUND, False),
        (550, b"5.1.1 first line\n5.1.1 second line", "rcpt", NOT_FOUND, False),
        # bytes that are not UTF-8
        (554, b"5.7.1 Rejet\xe9 \xff", "rcpt", FAILED, False),
    ],
)
def test_classify_maps_a_reply_to_a_status(code, message, stage, status, transient):
    outcome = classify.classify(code, message, stage=stage)
    assert outcome.status == status
    assert outcome.transient is transient
    if status == SENT:
        return
    assert str(code) in outcome.error
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    for word in text.split():
        assert word in outcome.error


def test_classify_asks_for_a_new_connection_after_421():
    assert classify.classify(421, b"4.3.2 Shutting down", stage="rcpt").reconnect is True
    assert classify.classify(451, b"4.3.0 Try later", stage="rcpt").reconnect is False
    assert classify.classify(550, b"5.1.1 Unknown", stage="rcpt").reconnect is False


def test_classify_names_the_stage_in_the_error():
    assert "RCPT" in classify.classify(550, b"5.1.1 Unknown", stage="rcpt").error
    assert "DATA" in classify.classify(554, b"5.7.1 Spam", stage="data").error


@pytest.mark.parametrize("code", [-1, 0, 199, 354, 600, 999])
def test_classify_never_reports_an_unexpected_code_as_sent(code):
    outcome = classify.classify(code, b"garbled", stage="rcpt")
    assert outcome.status not in (SENT, DeliveryStatus.PENDING)
    assert str(code) in outcome.error
