"""`python manage.py ingest_bounce FILE... | -`: record bounce and complaint reports
(DSNs, ARF, the odd non-standard bounce) from `.eml` files, or one message from stdin
(`-`), so the command can be a mail server's pipe (README, "Bounces and complaints").

Each message is keyed on the SHA-256 of its bytes: feeding the same file twice
records it once. Prints, per file, the kind, the recipients, what each matched and
whether the address was suppressed.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from campaigns import services
from campaigns.bounces.parse import parse_message
from members.models import Suppression

# A bounce returns the original message, attachments included; past this it is
# not a bounce worth reading whole.
MAX_MESSAGE_BYTES = 25 * 1024 * 1024


def message_dedup_key(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _suppressed_by(event) -> bool:
    return Suppression.objects.filter(event_id=event.pk).exists()


def describe_event(event) -> str:
    """One line for a recorded event: its kind, address, match and consequence."""
    address = event.email or "no address"
    if event.matched_by == "token":
        match = f"matched delivery {event.delivery_id} by its token"
    elif event.matched_by == "relay_id":
        match = f"matched delivery {event.delivery_id} by the relay's message id"
    elif event.matched_by == "address":
        match = "matched by address only (no delivery; never suppresses)"
    else:
        match = "not matched"
    suppressed = "address suppressed" if _suppressed_by(event) else "nothing suppressed"
    return f"{event.get_kind_display()}: {address}, {match}, {suppressed}"


class Command(BaseCommand):
    help = (
        "Record bounce and complaint reports from .eml files, or one message from stdin with '-' "
        "(a mail server's pipe). A message already recorded is not recorded again."
    )
    # call_command(..., stdin=stream) in tests; sys.stdin otherwise.
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="an .eml file, or - for stdin")

    def handle(self, *args, files: list[str], **options) -> None:
        self.stdin = options.get("stdin") or sys.stdin
        unreadable = 0
        for name in files:
            try:
                raw = self._read(name)
            except (OSError, ValueError) as exc:
                self.stderr.write(f"{name}: {exc}")
                unreadable += 1
                continue
            self._ingest(name, raw)
        if unreadable:
            raise CommandError(f"{unreadable} file(s) could not be read; the others were recorded.")

    def _read(self, name: str) -> bytes:
        if name == "-":
            stream = self.stdin.buffer
            raw = stream.read(MAX_MESSAGE_BYTES + 1)
        else:
            path = Path(name)
            if path.stat().st_size > MAX_MESSAGE_BYTES:
                raise ValueError(f"bigger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MB, not read")
            raw = path.read_bytes()
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ValueError(f"bigger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MB, not read")
        if not raw.strip():
            raise ValueError("empty, nothing to record")
        return raw

    def _ingest(self, name: str, raw: bytes) -> None:
        parsed = parse_message(raw)
        events = services.mail_event_record(
            parsed=parsed, source="command", raw=raw, dedup_key=message_dedup_key(raw)
        )
        label = "stdin" if name == "-" else name
        if not events:
            self.stdout.write(f"{label}: already recorded, nothing new.")
            return
        self.stdout.write(f"{label}: {parsed.kind.replace('_', ' ')}, {len(events)} event(s)")
        for event in events:
            self.stdout.write(f"  {describe_event(event)}")
