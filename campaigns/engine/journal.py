"""The chunk's journal: what each message's reply said, on local disk, before the
next message is sent.

Outcomes reach the database in groups (every FLUSH_EVERY messages or FLUSH_SECONDS),
so a worker killed between two writes, or cut off from the database or Redis, knows
more than the database does. Each outcome is first appended to a file of the chunk's
own, and the file is emptied once the database holds it. The live chunk keeps an
exclusive `flock` on its file; a file whose lock can be taken belongs to a chunk that
died, and `campaigns.engine.recovery` writes it to the database before anyone claims
or takes back deliveries on this host. So a message is sent twice only when it was
truly in flight: its final dot written, its reply not yet read (one per connection).

A JSON line per outcome, written with one `write()` (append mode): a process killed
mid-way leaves whole lines, and the page cache keeps them when the process dies.
Nothing is fsync'ed: the journal guards against a dead worker, not a dead machine.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from campaigns.engine.classify import Outcome

logger = logging.getLogger(__name__)

SUFFIX = ".journal"


@dataclass(frozen=True)
class Entry:
    delivery_id: int
    attempts_before: int
    outcome: Outcome


class Journal:
    """The open journal of one live chunk (`burst_id`, claim `token`)."""

    def __init__(self, directory: Path | str, *, burst_id: int, token: str) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{burst_id}-{token}{SUFFIX}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.empty = True

    def write(self, delivery_id: int, attempts_before: int, outcome: Outcome) -> None:
        line = json.dumps(
            [
                delivery_id,
                attempts_before,
                outcome.status,
                outcome.error,
                outcome.transient,
                outcome.smtp_tried,
                outcome.relay_id,
            ],
            separators=(",", ":"),
        )
        os.write(self.fd, line.encode() + b"\n")
        self.empty = False

    def clear(self) -> None:
        """The database holds everything written so far."""
        if not self.empty:
            os.ftruncate(self.fd, 0)
            self.empty = True

    def close(self, *, keep: bool) -> None:
        """Remove the file (everything is in the database), or leave it for the
        recovery (the last write to the database failed)."""
        if self.fd < 0:
            return
        if not keep:
            self.clear()
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # releases the lock: the recovery may now replay a kept file
        self.fd = -1


@dataclass
class Orphan:
    """A dead chunk's journal, locked by whoever replays it."""

    path: Path
    fd: int
    burst_id: int
    token: str

    def entries(self) -> Iterator[Entry]:
        with open(self.fd, "rb", closefd=False) as file:
            file.seek(0)
            for line in file:
                try:
                    delivery_id, attempts, status, error, transient, tried, relay_id = json.loads(line)
                    yield Entry(
                        int(delivery_id),
                        int(attempts),
                        Outcome(
                            str(status),
                            str(error),
                            transient=bool(transient),
                            smtp_tried=bool(tried),
                            relay_id=str(relay_id),
                        ),
                    )
                except (ValueError, TypeError):  # a torn last line: its message was in flight
                    logger.warning("journal %s: unreadable line skipped", self.path.name)

    def done(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def give_up(self) -> None:
        """Leave the file for a later try (the database is still away)."""
        os.close(self.fd)


def orphans(directory: Path | str) -> Iterator[Orphan]:
    """The journals of chunks that died on this host, each locked while it is handled."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        burst, _, token = path.name.removesuffix(SUFFIX).partition("-")
        if not burst.isdigit() or not token:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # its chunk just ended well
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its chunk is alive
            os.close(fd)
            continue
        if not path.exists():  # removed between our open and our lock: its chunk ended well
            os.close(fd)
            continue
        yield Orphan(path=path, fd=fd, burst_id=int(burst), token=token)
