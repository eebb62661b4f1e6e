"""The bounce mailbox poller against a real IMAP server (dovecot, tests/imapd.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.conf import settings
from imap_tools import MailBoxUnencrypted

from campaigns import services
from campaigns.bounces import imap
from tests import imapd
from tests.imapd import dsn_message

# The real IMAP server's fixtures (tests/imapd.py).
dovecot_server = imapd.dovecot_server
imap_account = imapd.imap_account

pytestmark = pytest.mark.django_db


def _junk() -> bytes:
    message = EmailMessage()
    message["From"] = "friend@example.net"
    message["To"] = "bounces@example.org"
    message["Subject"] = "Lunch?"
    message.set_content("Are you free on Tuesday?")
    return message.as_bytes()


def _append(account, *messages: bytes) -> None:
    with MailBoxUnencrypted(account.host, port=account.port).login(account.user, account.password) as box:
        for raw in messages:
            box.append(raw, "INBOX")


def _folder_counts(account) -> dict[str, int]:
    counts = {}
    with MailBoxUnencrypted(account.host, port=account.port).login(account.user, account.password) as box:
        for folder in ("INBOX", imap.PROCESSED_FOLDER, imap.UNPARSED_FOLDER):
            if box.folder.exists(folder):
                counts[folder] = box.folder.status(folder, ["MESSAGES"])["MESSAGES"]
    return counts


def poll(**kwargs) -> imap.PollReport:
    return imap.mailbox_poll(record=services.mail_event_record, **kwargs)


def _imap_events():
    from campaigns.models import MailEvent

    return MailEvent.objects.filter(source="imap")


class CuttingProxy:
    """A TCP proxy to the IMAP server that drops its first connection `after` bytes past
    the first time the server sends `marker` (later connections pass through): the cut
    falls inside the server's answer to a chosen command."""

    def __init__(self, port: int, *, marker: bytes, after: int = 0) -> None:
        self.target = port
        self.marker = marker
        self.after = after
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        first = True
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, first), daemon=True).start()
            first = False

    def _pipe(self, source: socket.socket, sink: socket.socket, cut: bool) -> None:
        seen = b""
        try:
            while data := source.recv(4096):
                if cut:
                    start = len(seen)
                    seen += data
                    found = seen.find(self.marker)
                    if found >= 0 and len(seen) >= found + len(self.marker) + self.after:
                        sink.sendall(data[: found + len(self.marker) + self.after - start])
                        self.cuts += 1
                        break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_each_message_is_recorded_once_and_moved_to_its_folder(imap_account):
    _append(imap_account, dsn_message("gone@example.com"), dsn_message("lost@example.com"), _junk())

    report = poll(config=imap_account.config)

    assert (report.seen, report.processed, report.unparsed, report.failed) == (3, 2, 1, 0)
    assert _folder_counts(imap_account) == {"INBOX": 0, "Processed": 2, "Unparsed": 1}
    events = _imap_events()
    assert sorted(events.values_list("kind", flat=True)) == ["hard_bounce", "hard_bounce", "unparsed"]
    assert {event.dedup_key.startswith(f"imap:INBOX:{report.uidvalidity}:") for event in events} == {True}


def test_a_second_poll_changes_nothing(imap_account):
    _append(imap_account, dsn_message("gone@example.com"), _junk())
    poll(config=imap_account.config)
    events_before = list(_imap_events().values_list("id", flat=True))

    report = poll(config=imap_account.config)

    assert report.seen == 0
    assert list(_imap_events().values_list("id", flat=True)) == events_before
    assert _folder_counts(imap_account) == {"INBOX": 0, "Processed": 1, "Unparsed": 1}


def test_an_empty_mailbox_creates_the_folders_and_records_nothing(imap_account):
    report = poll(config=imap_account.config)

    assert report.seen == 0
    assert _folder_counts(imap_account) == {"INBOX": 0, "Processed": 0, "Unparsed": 0}
    assert not _imap_events().exists()


def test_a_connection_cut_mid_fetch_leaves_nothing_half_done_and_the_next_poll_finishes(imap_account):
    _append(imap_account, *[dsn_message(f"gone{n}@example.com") for n in range(5)])
    # 500 bytes into the first message of the batch.
    proxy = CuttingProxy(imap_account.port, marker=b" FETCH (", after=500)
    config = {**imap_account.config, "port": proxy.port}
    try:
        with pytest.raises(Exception):  # noqa: B017 (imaplib's abort or a socket error)
            poll(config=config)
        assert proxy.cuts == 1
        assert not _imap_events().exists()
        assert _folder_counts(imap_account)["INBOX"] == 5

        report = poll(config=config)
    finally:
        proxy.close()

    assert (report.processed, report.failed) == (5, 0)
    assert _imap_events().count() == 5
    assert _folder_counts(imap_account) == {"INBOX": 0, "Processed": 5, "Unparsed": 0}


def test_a_connection_cut_during_a_move_records_nothing_twice(imap_account):
    _append(imap_account, *[dsn_message(f"gone{n}@example.com") for n in range(3)])
    # dovecot answers MOVE with "* OK [COPYUID ...]": cut before the command's own OK.
    proxy = CuttingProxy(imap_account.port, marker=b"[COPYUID ")
    config = {**imap_account.config, "port": proxy.port}
    try:
        with pytest.raises(Exception):  # noqa: B017 (imaplib's abort or a socket error)
            poll(config=config)
        assert proxy.cuts == 1
        assert _imap_events().count() == 1  # the first message: recorded, its move cut short

        report = poll(config=config)
    finally:
        proxy.close()

    assert report.failed == 0
    assert _imap_events().count() == 3
    assert _folder_counts(imap_account) == {"INBOX": 0, "Processed": 3, "Unparsed": 0}


def test_a_message_that_fails_to_record_stays_and_the_others_are_handled(imap_account):
    real = services.mail_event_record

    def failing_for_one(*, parsed, source, raw, dedup_key):
        if b"broken@example.com" in raw:
            raise ValueError("a bug in the policy")
        return real(parsed=parsed, source=source, raw=raw, dedup_key=dedup_key)

    _append(imap_account, dsn_message("broken@example.com"), dsn_message("gone@example.com"))

    report = imap.mailbox_poll(record=failing_for_one, config=imap_account.config)

    assert (report.processed, report.failed) == (1, 1)
    assert _folder_counts(imap_account) == {"INBOX": 1, "Processed": 1, "Unparsed": 0}


def test_no_mailbox_configured_polls_nothing(settings):
    settings.BOUNCE_IMAP = None

    assert poll().seen == 0


def test_the_periodic_task_polls_the_configured_mailbox(imap_account, settings, immediate_huey):
    from campaigns.tasks import poll_bounce_mailbox

    settings.BOUNCE_IMAP = imap_account.config
    _append(imap_account, dsn_message("gone@example.com"))

    assert poll_bounce_mailbox.call_local() == {
        "seen": 1,
        "processed": 1,
        "unparsed": 0,
        "failed": 0,
        "events": 1,
    }
    assert _folder_counts(imap_account)["Processed"] == 1


def test_the_periodic_task_does_not_poll_while_another_poll_holds_the_lock(
    imap_account, settings, immediate_huey
):
    from huey.exceptions import TaskLockedException

    from campaigns.tasks import BOUNCE_POLL_LOCK, poll_bounce_mailbox

    settings.BOUNCE_IMAP = imap_account.config
    _append(imap_account, dsn_message("gone@example.com"))

    with immediate_huey.lock_task(BOUNCE_POLL_LOCK), pytest.raises(TaskLockedException):
        poll_bounce_mailbox.call_local()

    assert _folder_counts(imap_account)["INBOX"] == 1
    assert not _imap_events().exists()


def test_the_periodic_task_logs_an_unreachable_server_without_its_password(settings, immediate_huey, caplog):
    from campaigns.tasks import poll_bounce_mailbox

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings.BOUNCE_IMAP = {
        "host": "127.0.0.1",
        "port": closed_port,
        "ssl": False,
        "user": "bounces",
        "password": "s3cret-pw",
        "mailbox": "INBOX",
    }

    assert poll_bounce_mailbox.call_local() is None
    assert "bounce mailbox poll failed" in caplog.text
    assert "s3cret-pw" not in caplog.text


def _bounce_imap_setting(url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"BOUNCE_IMAP_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(DEBUG="1", BOUNCE_IMAP_URL=url)
    code = "import json, config.settings as s; print(json.dumps(s.BOUNCE_IMAP))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_imap_url_is_read_into_its_parts():
    result = _bounce_imap_setting("imaps://bounces%40example.org:p%2Fss@imap.example.org/Bounces")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "host": "imap.example.org",
        "port": 993,
        "ssl": True,
        "user": "bounces@example.org",
        "password": "p/ss",
        "mailbox": "Bounces",
    }


def test_a_local_imap_url_defaults_to_port_143_and_the_inbox():
    result = _bounce_imap_setting("imap://user:pw@127.0.0.1")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["port"] == 143
    assert json.loads(result.stdout)["mailbox"] == "INBOX"


@pytest.mark.parametrize(
    "url",
    [
        "pop3://user:s3cret-pw@host/INBOX",
        "imaps://host/INBOX",
        "imaps://user@host/INBOX",
        "imaps://user:s3cret-pw@host:notaport/INBOX",
        "imaps://user:s3cret-pw@host/INBOX?tls=0",
    ],
)
def test_a_bad_imap_url_stops_start_up_without_echoing_the_password(url):
    result = _bounce_imap_setting(url)

    assert result.returncode != 0
    assert "BOUNCE_IMAP_URL" in result.stderr.strip().splitlines()[-1]
    assert "s3cret-pw" not in result.stderr


def test_every_sample_report_is_read_from_the_mailbox_and_filed_by_what_it_is(imap_account):
    """The parser's real-shaped samples (DSNs, ARF, non-standard bounces, junk), as they
    would sit in a bounce mailbox."""
    samples = Path(__file__).with_name("bounce_samples")
    expected = json.loads((samples / "expected.json").read_text())["samples"]
    _append(imap_account, *[(samples / name).read_bytes() for name in sorted(expected)])
    unparsed = sum(1 for sample in expected.values() if sample["kind"] == "unparsed")

    report = poll(config=imap_account.config)

    assert (report.seen, report.failed) == (len(expected), 0)
    assert _folder_counts(imap_account) == {
        "INBOX": 0,
        "Processed": len(expected) - unparsed,
        "Unparsed": unparsed,
    }
    keys = {key.split("|")[0] for key in _imap_events().values_list("dedup_key", flat=True)}
    assert len(keys) == len(expected)  # each message recorded (one event per recipient)
