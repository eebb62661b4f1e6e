"""The bounce mailbox: DSNs and complaint reports read over IMAP (SPEC 13, intake 1).

Each message is keyed on (mailbox, UIDVALIDITY, UID), recorded through `record`
(the task passes `services.mail_event_record`, which records a key once; given, not
imported, since the services enqueue the tasks that call this) and then moved with the
server's MOVE to `Processed`, or to `Unparsed` when nothing could be read from it.
A message is never deleted. Recording comes before moving: a connection lost in
between leaves the message in the mailbox, and the next poll records nothing new
and moves it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from imap_tools import AND, BaseMailBox, MailBox, MailBoxUnencrypted, MailMessage
from imap_tools.errors import MailboxMoveError

from campaigns.bounces.parse import parse_message

logger = logging.getLogger(__name__)

PROCESSED_FOLDER = "Processed"
UNPARSED_FOLDER = "Unparsed"
# Messages fetched per round trip: a DSN carries the original message, so a
# batch stays a few megabytes at most.
BATCH_SIZE = 20
IMAP_TIMEOUT = 60


# services.mail_event_record(*, parsed, source, raw, dedup_key) -> list[MailEvent]
Record = Callable[..., list]


class _RawMessage(MailMessage):
    """Keeps the bytes as the server sent them: the parser and the stored event get
    the message itself, not a re-serialisation of it."""

    def __init__(self, fetch_data: list) -> None:
        super().__init__(fetch_data)
        self.raw: bytes = self._get_message_data_parts(fetch_data)[0]


class MoveUnsupported(RuntimeError):
    """The server has no MOVE; imap-tools' fallback would expunge the whole folder."""


@dataclass
class PollReport:
    mailbox: str = ""
    uidvalidity: int = 0
    seen: int = 0
    processed: int = 0
    unparsed: int = 0
    failed: int = 0
    events: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "processed": self.processed,
            "unparsed": self.unparsed,
            "failed": self.failed,
            "events": self.events,
        }


def dedup_key(*, mailbox: str, uidvalidity: int, uid: str) -> str:
    return f"imap:{mailbox}:{uidvalidity}:{uid}"


def _connect(config: dict) -> BaseMailBox:
    host, port = config["host"], config["port"]
    if config["ssl"]:
        box: BaseMailBox = MailBox(host, port=port, timeout=IMAP_TIMEOUT)
    else:
        box = MailBoxUnencrypted(host, port=port, timeout=IMAP_TIMEOUT)
    box.email_message_class = _RawMessage
    box.login(config["user"], config["password"], initial_folder=None)
    # imaplib keeps the capabilities announced before login, where servers often
    # leave out MOVE; imap-tools' move() reads them to choose MOVE over its fallback.
    _typ, data = box.client.capability()
    box.client.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
    return box


def _ensure_folders(box: BaseMailBox) -> None:
    for folder in (PROCESSED_FOLDER, UNPARSED_FOLDER):
        if not box.folder.exists(folder):
            box.folder.create(folder)


def _uidvalidity(box: BaseMailBox, mailbox: str) -> int:
    return int(box.folder.status(mailbox, ["UIDVALIDITY"])["UIDVALIDITY"])


def _batches(uids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(uids), BATCH_SIZE):
        yield uids[start : start + BATCH_SIZE]


def _handle(box: BaseMailBox, *, uid: str, raw: bytes, key: str, record: Record, report: PollReport) -> None:
    """Record one message, then move it. A message that cannot be recorded stays in
    the mailbox (logged) and never stops the others; a lost connection does stop
    the poll (the next one starts over)."""
    try:
        parsed = parse_message(raw)
        events = record(parsed=parsed, source="imap", raw=raw, dedup_key=key)
    except Exception:
        logger.exception("bounce mailbox: message %s could not be recorded; left in the mailbox", key)
        report.failed += 1
        return
    report.events += len(events)
    unparsed = parsed.kind == "unparsed"
    try:
        box.move([uid], UNPARSED_FOLDER if unparsed else PROCESSED_FOLDER)
    except MailboxMoveError:
        # Recorded already; moved by an overlapping poll, or refused: the next poll retries.
        logger.warning("bounce mailbox: message %s could not be moved", key)
        report.failed += 1
        return
    if unparsed:
        report.unparsed += 1
    else:
        report.processed += 1


def mailbox_poll(*, record: Record, config: dict | None = None) -> PollReport:
    """Read every message in the bounce mailbox once. Connection errors propagate
    (the next poll starts over); nothing is half-done since each message is recorded
    idempotently before it is moved."""
    config = config if config is not None else settings.BOUNCE_IMAP
    report = PollReport()
    if not config:
        return report
    mailbox = config["mailbox"]
    report.mailbox = mailbox
    with _connect(config) as box:
        if "MOVE" not in box.client.capabilities:
            raise MoveUnsupported(f"the IMAP server at {config['host']} does not support MOVE")
        _ensure_folders(box)
        report.uidvalidity = _uidvalidity(box, mailbox)
        box.folder.set(mailbox)
        uids = box.uids(AND(all=True), charset=None)
        for batch in _batches(uids):
            # The whole batch is read before the first MOVE is sent.
            fetched = list(box.fetch(mark_seen=False, bulk=True, uid_list=batch))
            for message in fetched:
                report.seen += 1
                key = dedup_key(mailbox=mailbox, uidvalidity=report.uidvalidity, uid=message.uid)
                _handle(box, uid=message.uid, raw=message.raw, key=key, record=record, report=report)
    return report
