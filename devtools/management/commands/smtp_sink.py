"""`python manage.py smtp_sink`: the development SMTP sink `make run` sends mail to."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.smtp_sink import SinkEvent, SinkServer, magic_table

logger = logging.getLogger("devtools.smtp_sink")


class Command(BaseCommand):
    help = (
        "Run the development SMTP sink: accepts mail, writes each message as an .eml file, "
        "and simulates failures for magic recipient local parts (unknown…, full…, greylist…, reject…)."
    )
    # The sink needs neither the database nor the project's checks to be happy.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=1025, help="port to listen on (default 1025; 0: any)")
        parser.add_argument(
            "--maildir",
            type=Path,
            default=None,
            help="folder for the received .eml files (default <BASE_DIR>/var/mail, created if missing)",
        )

    def handle(self, *args: Any, host: str, port: int, maildir: Path | None, **options: Any) -> None:
        maildir = (maildir or Path(settings.BASE_DIR) / "var" / "mail").resolve()
        # A long-running sink keeps nothing in memory: the .eml files are the record.
        try:
            maildir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create the maildir {maildir}: {exc.strerror or exc}") from None
        server = SinkServer(host, port, maildir=maildir, keep_messages=False, on_event=self._log_event)
        stop = threading.Event()
        # Handlers first: a signal arriving as soon as the port answers must still stop us cleanly.
        previous = {sig: signal.signal(sig, self._stopper(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                server.start()
            except OSError as exc:
                raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            self._banner(server, maildir)
            # Waiting in slices keeps the main thread responsive to signals.
            while not stop.wait(0.5):
                pass
        finally:
            server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(f"SMTP sink stopped ({server.message_count} message(s) received).")
        self.stdout.flush()

    @staticmethod
    def _stopper(stop: threading.Event) -> Any:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        return on_signal

    def _banner(self, server: SinkServer, maildir: Path) -> None:
        rows = list(magic_table())
        width = max(len(prefix) for prefix, _, _ in rows) + 2
        lines = [
            self.style.SUCCESS(f"SMTP sink listening on {server.host}:{server.port}"),
            f"Messages are written as .eml files to: {maildir}",
            "Magic recipient local parts (case-insensitive prefix), everything else is accepted:",
            *(f"  {prefix:<{width}}{reply}  ({when})" for prefix, reply, when in rows),
            "Press Ctrl-C to stop.",
        ]
        self.stdout.write("\n".join(lines))
        # Whoever started us (make run, a test) may be reading a pipe: do not sit in a buffer.
        self.stdout.flush()

    @staticmethod
    def _log_event(event: SinkEvent) -> None:
        # One line per recipient decision and per message; MAIL/AUTH only when refused.
        if event.stage in ("rcpt", "data") or not event.accepted:
            logger.info("%s", event.describe())
