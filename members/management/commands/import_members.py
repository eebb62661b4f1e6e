"""`python manage.py import_members FILE [--dry-run] [--list NAME] [--errors OUT.csv]`

The admin's import for files of any size: the same validator (members.importing), the file
read as a stream. Prints `N new, N updated, N unchanged, N invalid` and exits 0 when every row
was fine, 1 when some rows were rejected (the others are imported), 2 when nothing could be
imported (the file was refused, or every row is invalid).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from members.importing import ImportReport, members_import

ROWS_SHOWN = 20  # rejected rows printed; --errors gets all of them


class Command(BaseCommand):
    help = (
        "Import members from a CSV or XLSX file: new addresses are added, known ones (matched by "
        "email, ignoring case) updated; staff accounts are never changed. Exit status: 0 every row "
        "imported, 1 some rows rejected, 2 nothing imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a .csv (any delimiter among , ; tab |) or .xlsx file")
        parser.add_argument("--dry-run", action="store_true", help="check the file and write nothing")
        parser.add_argument(
            "--list",
            dest="list_name",
            metavar="NAME",
            help="add the imported members to this mailing list (created when it does not exist)",
        )
        parser.add_argument(
            "--errors",
            metavar="OUT.csv",
            help="write the rejected rows to this CSV file: the file's columns plus row and reason",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: str = options["file"]
        try:
            source = open(path, "rb")
        except OSError as exc:
            self._stop(f"Cannot open {path}: {_why(exc)}.")
        errors_path: str | None = options["errors"]
        errors_out = None
        if errors_path:
            try:
                errors_out = open(errors_path, "w", newline="", encoding="utf-8-sig")
            except OSError as exc:
                source.close()
                self._stop(f"Cannot write {errors_path}: {_why(exc)}.")
        bar = self._bar()
        try:
            report = members_import(
                source=source,
                filename=os.path.basename(path),
                dry_run=options["dry_run"],
                list_name=options["list_name"],
                errors_out=errors_out,
                progress=bar.progress if bar else None,
            )
        except Exception:
            if options.get("traceback"):
                raise
            self._stop(
                "The import stopped because of an unexpected error (not a problem of the file). "
                "Batches written before it stay imported; run the command again, it updates "
                "what is already there. Add --traceback for the details."
            )
        finally:
            if bar:
                bar.close()
            source.close()
            if errors_out:
                errors_out.close()
        if report.refused and errors_path:
            os.remove(errors_path)  # nothing was read: no errors file
        self._print(report, errors_path)
        if report.exit_code:
            sys.exit(report.exit_code)

    def _bar(self) -> _Bar | None:
        # A progress bar only for a person watching: never in a pipe, a log or a test.
        return _Bar() if self.stdout.isatty() else None

    def _print(self, report: ImportReport, errors_path: str | None) -> None:
        if report.refused:
            self.stderr.write(f"Nothing was imported. {report.refused}")
            self.stdout.write(report.summary())
            return
        if report.ignored_columns:
            self.stdout.write("Ignored columns: " + ", ".join(report.ignored_columns))
        for rejected in report.rejected[:ROWS_SHOWN]:
            self.stderr.write(f"Row {rejected.row}: {rejected.reason}")
        more = report.invalid - min(len(report.rejected), ROWS_SHOWN)
        if more > 0:
            where = f"all of them are in {errors_path}" if errors_path else "--errors OUT.csv writes them all"
            self.stderr.write(f"… and {more:,} more rejected rows ({where}).")
        elif report.invalid and errors_path:
            self.stderr.write(f"The rejected rows are in {errors_path}.")
        if report.dry_run:
            self.stdout.write("Dry run: nothing was written.")
        if report.list_name:
            self.stdout.write(self._list_line(report))
        self.stdout.write(report.summary())

    @staticmethod
    def _list_line(report: ImportReport) -> str:
        if report.dry_run:
            return f"The imported members would be added to the mailing list “{report.list_name}”."
        created = " (created)" if report.list_created else ""
        return f"Mailing list “{report.list_name}”{created}: {report.added_to_list:,} members added."

    def _stop(self, message: str) -> None:
        self.stderr.write(message)
        sys.exit(2)


class _Bar:
    """tqdm on the terminal, fed by members_import's progress callback."""

    def __init__(self) -> None:
        self.bar = tqdm(total=None, unit=" rows", dynamic_ncols=True, file=sys.stderr)

    def progress(self, done: int, total: int | None) -> None:
        if total and self.bar.total != max(total, done):
            self.bar.total = max(total, done)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _why(exc: OSError) -> str:
    return (exc.strerror or "it cannot be opened").lower()
