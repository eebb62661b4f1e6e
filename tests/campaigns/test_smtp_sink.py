"""The SMTP sink and the scripted test server, over real sockets with smtplib as client."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings

from devtools.smtp_sink import (
    DEFAULT_HANG_SECONDS,
    AcceptAllPolicy,
    Drop,
    Hang,
    Reply,
    SinkServer,
    find_free_port,
    parse_action,
)

# The fixtures smtp_server, smtp_server_factory and smtp_settings come from tests/smtpd.py,
# loaded as a plugin by tests/conftest.py.

SENDER = "sender@example.test"
BODY = b"From: sender@example.test\r\nSubject: Hello\r\n\r\nHi there.\r\n"


def send(
    server: SinkServer | SimpleNamespace,
    rcpts: Sequence[str],
    *,
    msg: bytes = BODY,
    timeout: float = 2,
    sender: str = SENDER,
) -> dict:
    with smtplib.SMTP(server.host, server.port, timeout=timeout) as client:
        return client.sendmail(sender, list(rcpts), msg)


def refusal(server: SinkServer, address: str) -> tuple[int, bytes]:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        send(server, [address])
    return caught.value.recipients[address]


# --- accepting and storing -------------------------------------------------------------


def test_it_accepts_a_message_and_writes_it_as_an_eml_file_in_the_maildir(smtp_server_factory, tmp_path):
    maildir = tmp_path / "mail" / "new"  # created on start
    server = smtp_server_factory(maildir=maildir)

    assert send(server, ["ada@example.test", "bob@example.test"]) == {}

    [eml] = list(maildir.glob("*.eml"))
    assert eml.name.endswith("-000001-ada@example.test.eml")
    assert eml.read_bytes() == (
        b"X-Sink-Envelope-From: <sender@example.test>\r\n"
        b"X-Sink-Envelope-To: <ada@example.test>, <bob@example.test>\r\n" + BODY
    )
    assert server.messages[0].eml_path == eml
    assert server.eml_files() == [eml]
    assert not list(maildir.glob("*.tmp")), "temporary files are renamed away"


def test_it_records_envelope_headers_and_parsed_message(smtp_server):
    message = EmailMessage()
    message["From"] = "Sender <sender@example.test>"
    message["To"] = "ada@example.test"
    message["Subject"] = "Größe matters"
    message["Message-ID"] = "<abc.123@example.test>"
    message["List-Unsubscribe"] = "<https://example.test/u/1>"
    message.set_content("Body text\n")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=2) as client:
        client.send_message(message, to_addrs=["ada@example.test", "hidden@example.test"])

    [received] = smtp_server.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ("ada@example.test", "hidden@example.test")
    assert received.subject == "Größe matters"
    assert received.header("message-id") == "<abc.123@example.test>"
    assert ("List-Unsubscribe", "<https://example.test/u/1>") in received.headers
    assert received.message.get_content() == "Body text\n"
    assert b"Subject: =?utf-8?q?Gr=C3=B6=C3=9Fe?= matters" in received.raw
    assert received.auth_login is None


def test_it_delivers_django_mail_through_the_smtp_settings_fixture(smtp_settings):
    from django.core.mail import send_mail

    assert django_settings.EMAIL_PORT == smtp_settings.port
    send_mail("Django subject", "Django body", SENDER, ["ada@example.test"])

    [received] = smtp_settings.messages
    assert received.subject == "Django subject"
    assert received.rcpt_tos == ("ada@example.test",)


# --- the default policy ------------------------------------------------------------------


def test_it_refuses_unknown_local_part_with_550_511(smtp_server):
    assert refusal(smtp_server, "unknown.bob@example.test") == (
        550,
        b"5.1.1 <unknown.bob@example.test>: Recipient address rejected: User unknown",
    )


def test_it_refuses_full_local_part_with_552_522_at_rcpt(smtp_server):
    assert refusal(smtp_server, "full-mailbox@example.test") == (552, b"5.2.2 Mailbox full")


def test_it_refuses_reject_local_part_with_554_571(smtp_server):
    assert refusal(smtp_server, "reject.me@example.test") == (554, b"5.7.1 Message rejected as spam")


def test_it_matches_magic_local_parts_case_insensitively_and_only_as_prefix(smtp_server):
    assert refusal(smtp_server, "UNKNOWN.Bob@Example.test")[0] == 550
    assert send(smtp_server, ["bob.unknown@example.test", "bob@unknown.example.test"]) == {}


def test_it_greylists_the_first_rcpt_then_accepts_the_same_address(smtp_server):
    address = "greylist.gina@example.test"

    assert refusal(smtp_server, address) == (451, b"4.7.1 Greylisted, try again later")
    assert send(smtp_server, [address]) == {}
    assert send(smtp_server, [address.upper()]) == {}, "remembered case-insensitively"
    assert refusal(smtp_server, "greylist.other@example.test")[0] == 451, "remembered per address"
    assert smtp_server.received_count(address) == 2


def test_it_refuses_per_recipient_and_counts_only_accepted_recipients(smtp_server):
    refused = send(smtp_server, ["ok@example.test", "unknown.x@example.test", "also.ok@example.test"])

    assert refused == {"unknown.x@example.test": (550, refused["unknown.x@example.test"][1])}
    assert smtp_server.messages[0].rcpt_tos == ("ok@example.test", "also.ok@example.test")
    assert smtp_server.received_count_by_address() == {"ok@example.test": 1, "also.ok@example.test": 1}
    assert smtp_server.rcpt_attempts("unknown.x@example.test") == 1


def test_an_accept_all_policy_ignores_magic_local_parts(smtp_server_factory):
    server = smtp_server_factory(policy=AcceptAllPolicy())

    assert send(server, ["unknown.bob@example.test"]) == {}


# --- scripts -------------------------------------------------------------------------------


def test_it_plays_scripted_rcpt_replies_in_order_then_falls_back_to_the_policy(smtp_server):
    address = "scripted@example.test"
    smtp_server.script(address, "rcpt:451 4.3.0 Try later", Reply("rcpt", 550, "5.1.1 No such user"))
    smtp_server.script(address, "553 5.1.3 Bad address", "rcpt:550 5.7.1 Policy")

    replies = [refusal(smtp_server, address) for _ in range(4)]

    assert replies == [
        (451, b"4.3.0 Try later"),
        (550, b"5.1.1 No such user"),
        (553, b"5.1.3 Bad address"),
        (550, b"5.7.1 Policy"),
    ]
    assert smtp_server.pending_script(address) == []
    assert send(smtp_server, [address]) == {}
    assert smtp_server.rcpt_attempts(address) == 5
    assert smtp_server.received_count(address) == 1


def test_a_scripted_acceptance_overrides_the_policy_once(smtp_server):
    smtp_server.script("unknown.once@example.test", "rcpt:250 2.1.5 Fine this time")

    assert send(smtp_server, ["unknown.once@example.test"]) == {}
    assert refusal(smtp_server, "unknown.once@example.test")[0] == 550


def test_a_scripted_552_at_rcpt_is_sent_as_is(smtp_server):
    smtp_server.script("big@example.test", "rcpt:552 5.2.2 Over quota")

    assert refusal(smtp_server, "big@example.test") == (552, b"5.2.2 Over quota")


def test_it_refuses_the_message_after_data_when_scripted_and_stores_nothing(smtp_server):
    smtp_server.script("ada@example.test", "data:552 5.3.4 Message too big", "data:554 5.7.1 Spam")

    with pytest.raises(smtplib.SMTPDataError) as first:
        send(smtp_server, ["ada@example.test"])
    with pytest.raises(smtplib.SMTPDataError) as second:
        send(smtp_server, ["ada@example.test"])

    assert (first.value.smtp_code, first.value.smtp_error) == (552, b"5.3.4 Message too big")
    assert (second.value.smtp_code, second.value.smtp_error) == (554, b"5.7.1 Spam")
    assert smtp_server.messages == []
    assert smtp_server.received_count("ada@example.test") == 0
    assert send(smtp_server, ["ada@example.test"]) == {}
    assert smtp_server.received_count("ada@example.test") == 1


def test_the_first_data_action_decides_for_a_message_to_several_recipients(smtp_server):
    smtp_server.script("a@example.test", "data:451 4.3.0 First")
    smtp_server.script("b@example.test", "data:554 5.7.1 Second")

    with pytest.raises(smtplib.SMTPDataError) as caught:
        send(smtp_server, ["a@example.test", "b@example.test"])

    assert caught.value.smtp_code == 451
    assert smtp_server.pending_script("b@example.test") == [], "consumed by its attempt"


def test_it_parses_the_short_string_form_of_actions():
    assert parse_action("rcpt:451 4.3.0 Try later") == Reply("rcpt", 451, "4.3.0 Try later")
    assert parse_action("DATA: 552 5.3.4 Too big") == Reply("data", 552, "5.3.4 Too big")
    assert parse_action("550") == Reply("rcpt", 550)
    assert parse_action("rcpt:hang") == Hang("rcpt", DEFAULT_HANG_SECONDS)
    assert parse_action("data:hang 0.5") == Hang("data", 0.5)
    assert parse_action("data:drop") == Drop("data")
    assert parse_action("drop", "mail") == Drop("mail")
    assert parse_action(Drop("rcpt")) == Drop("rcpt")
    for bad in ("rcpt:", "helo:250", "rcpt:399 nope", "rcpt:hang soon", "data:explode", "45 short"):
        with pytest.raises(ValueError):
            parse_action(bad)


def test_it_refuses_actions_of_a_stage_that_does_not_fit(smtp_server):
    with pytest.raises(ValueError):
        smtp_server.script("a@example.test", "mail:553 5.7.1 No")
    with pytest.raises(ValueError):
        smtp_server.refuse_sender("250 OK")


# --- hangs and drops -------------------------------------------------------------------


def _send_in_thread(server: SinkServer, rcpt: str, timeout: float) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        start = time.monotonic()
        try:
            send(server, [rcpt], timeout=timeout)
        except Exception as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_hang_at_rcpt_times_the_client_out_while_another_connection_is_served(smtp_server):
    smtp_server.script("slow@example.test", "rcpt:hang 2")
    thread, outcome = _send_in_thread(smtp_server, "slow@example.test", timeout=0.5)
    _wait_until(lambda: smtp_server.rcpt_attempts("slow@example.test") == 1)

    start = time.monotonic()
    assert send(smtp_server, ["fast@example.test"]) == {}
    assert time.monotonic() - start < 0.4, "the hang does not block other connections"
    assert "elapsed" not in outcome, "the first client is still waiting"

    thread.join(3)
    error = outcome["error"]
    # smtplib reports a read timeout as a disconnection whose text says so.
    assert isinstance(error, smtplib.SMTPServerDisconnected | TimeoutError)
    assert "timed out" in str(error)
    assert 0.45 < outcome["elapsed"] < 1.5
    assert smtp_server.received_count_by_address() == {"fast@example.test": 1}


def test_a_hang_at_data_times_the_client_out_and_stores_nothing(smtp_server):
    smtp_server.script("slow@example.test", Hang("data", 2))

    start = time.monotonic()
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError), match="timed out"):
        send(smtp_server, ["slow@example.test"], timeout=0.5)

    assert time.monotonic() - start < 1.5
    assert smtp_server.message_count == 0


def test_a_drop_at_rcpt_disconnects_the_client(smtp_server):
    smtp_server.script("gone@example.test", "rcpt:drop")

    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp_server, ["gone@example.test"])
    assert send(smtp_server, ["gone@example.test"]) == {}, "the drop was consumed"


def test_a_drop_at_data_disconnects_the_client_and_stores_nothing(smtp_server):
    smtp_server.script("gone@example.test", "data:drop")

    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp_server, ["gone@example.test"])
    assert smtp_server.messages == []
    assert [event.kind for event in smtp_server.events] == ["reply", "drop"]


def test_scripted_connections_refuse_the_greeting_or_drop(smtp_server):
    smtp_server.script_connect("421 4.3.2 Service not available", "drop")

    with pytest.raises(smtplib.SMTPConnectError) as caught:
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=2)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=2)

    assert (caught.value.smtp_code, caught.value.smtp_error) == (421, b"4.3.2 Service not available")
    assert send(smtp_server, ["ada@example.test"]) == {}
    assert smtp_server.connection_count == 3


# --- sender and AUTH ---------------------------------------------------------------------


def test_a_refused_sender_gives_smtp_sender_refused_until_accepted_again(smtp_server):
    smtp_server.refuse_sender("553 5.7.1 Sender not allowed")

    for _ in range(2):
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            send(smtp_server, ["ada@example.test"])
        assert (caught.value.smtp_code, caught.value.smtp_error) == (553, b"5.7.1 Sender not allowed")
        assert caught.value.sender == SENDER

    smtp_server.accept_sender()
    assert send(smtp_server, ["ada@example.test"]) == {}


def test_a_sender_refusal_can_be_limited_to_some_transactions(smtp_server):
    smtp_server.refuse_sender("451 4.3.0 Later", times=1)

    with pytest.raises(smtplib.SMTPSenderRefused):
        send(smtp_server, ["ada@example.test"])
    assert send(smtp_server, ["ada@example.test"]) == {}


def test_auth_with_a_wrong_password_gives_535_and_is_recorded(smtp_server_factory):
    server = smtp_server_factory(auth=("user", "secret"))

    with smtplib.SMTP(server.host, server.port, timeout=2) as client:
        client.ehlo()
        assert set(client.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN"}
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login("user", "wrong")

    assert (caught.value.smtp_code, caught.value.smtp_error) == (
        535,
        b"5.7.8 Authentication credentials invalid",
    )
    assert server.auth_attempted
    # smtplib tries each offered mechanism in turn after a 535.
    assert [(a.mechanism, a.login, a.success) for a in server.auth_attempts] == [
        ("PLAIN", "user", False),
        ("LOGIN", "user", False),
    ]


def test_auth_with_the_right_credentials_succeeds_and_marks_the_message(smtp_server_factory):
    server = smtp_server_factory(auth=("user", "secret"))

    with smtplib.SMTP(server.host, server.port, timeout=2) as client:
        client.login("user", "secret")
        client.sendmail(SENDER, ["ada@example.test"], BODY)

    assert server.messages[0].auth_login == "user"
    assert server.auth_attempts[-1].success


def test_a_server_with_auth_refuses_mail_before_authentication(smtp_server_factory):
    server = smtp_server_factory(auth=("user", "secret"))

    with pytest.raises(smtplib.SMTPSenderRefused) as caught:
        send(server, ["ada@example.test"])
    assert caught.value.smtp_code == 530


def test_a_server_without_auth_neither_offers_it_nor_sees_it_attempted(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=2) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        client.sendmail(SENDER, ["ada@example.test"], BODY)

    assert not smtp_server.auth_attempted


# --- counters, memory, lifecycle --------------------------------------------------------


def test_counters_survive_without_keeping_messages_in_memory(smtp_server_factory):
    server = smtp_server_factory(keep_messages=False)

    with smtplib.SMTP(server.host, server.port, timeout=2) as client:
        for n in range(5):
            client.sendmail(SENDER, [f"m{n % 2}@example.test"], BODY)

    assert server.messages == [] and server.events == []
    assert server.message_count == 5
    assert server.connection_count == 1
    assert server.received_count_by_address() == {"m0@example.test": 3, "m1@example.test": 2}
    assert server.wait_for_messages(5, timeout=0.1)
    assert not server.wait_for_messages(6, timeout=0.05)


def test_it_keeps_only_the_newest_messages_up_to_max_kept(smtp_server_factory):
    server = smtp_server_factory(max_kept=2)

    for n in range(3):
        send(server, [f"m{n}@example.test"])

    assert [m.rcpt_tos[0] for m in server.messages] == ["m1@example.test", "m2@example.test"]
    assert server.message_count == 3


def test_reset_forgets_messages_counters_scripts_and_greylisting(smtp_server):
    smtp_server.script("a@example.test", "550 5.1.1 No")
    smtp_server.refuse_sender()
    with pytest.raises(smtplib.SMTPSenderRefused):
        send(smtp_server, ["b@example.test"])
    smtp_server.accept_sender()
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(smtp_server, ["greylist@example.test"])
    send(smtp_server, ["b@example.test"])

    smtp_server.refuse_sender()
    smtp_server.reset()

    assert smtp_server.messages == [] and smtp_server.message_count == 0
    assert smtp_server.connection_count == 0 and smtp_server.rcpt_attempts_by_address() == {}
    assert smtp_server.pending_script("a@example.test") == []
    assert send(smtp_server, ["a@example.test"]) == {}
    assert refusal(smtp_server, "greylist@example.test")[0] == 451, "greylisting starts over"


def test_it_stops_promptly_with_a_hanging_session_and_frees_the_port():
    server = SinkServer(port=0).start()
    server.script("slow@example.test", "rcpt:hang 30")
    client = smtplib.SMTP(server.host, server.port, timeout=5)
    client.ehlo()
    client.mail(SENDER)
    client.send(b"RCPT TO:<slow@example.test>\r\n")
    _wait_until(lambda: server.rcpt_attempts("slow@example.test") == 1)

    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 1
    client.close()
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=1).close()
    with SinkServer(port=server.port) as again:  # the same port is usable at once
        assert send(again, ["ada@example.test"]) == {}


def test_find_free_port_gives_a_bindable_port():
    port = find_free_port()
    with SinkServer(port=port) as server:
        assert server.port == port


# --- the management command ---------------------------------------------------------------


@pytest.mark.slow
def test_the_smtp_sink_command_stores_mail_and_exits_0_on_sigint(tmp_path: Path):
    port = find_free_port()
    maildir = tmp_path / "sink"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "smtp_sink", "--port", str(port), "--maildir", str(maildir)],
        cwd=django_settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        sink = SimpleNamespace(host="127.0.0.1", port=port)
        _wait_until(lambda: _listening("127.0.0.1", port) or process.poll() is not None, timeout=10)
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""

        refused = send(sink, ["ada@example.test", "unknown.bob@example.test"])
        assert list(refused) == ["unknown.bob@example.test"]
        [eml] = list(maildir.glob("*.eml"))
        assert b"Subject: Hello" in eml.read_bytes()

        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr.decode()
    out = stdout.decode()
    assert f"listening on 127.0.0.1:{port}" in out
    assert str(maildir) in out
    assert "unknown…" in out and "greylist…" in out
    log = stderr.decode()
    assert "RCPT ada@example.test accepted" in log
    assert "RCPT unknown.bob@example.test refused: 550 5.1.1" in log


@pytest.mark.slow
def test_the_smtp_sink_command_exits_0_on_sigterm(tmp_path: Path):
    port = find_free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "smtp_sink", "--port", str(port), "--maildir", str(tmp_path)],
        cwd=django_settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until(lambda: _listening("127.0.0.1", port) or process.poll() is not None, timeout=10)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False
