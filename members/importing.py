"""Member import: the one validator behind the admin's import and `manage.py import_members`.

`members_import` reads a CSV or XLSX file as a stream and imports its rows in batches:

- A file is refused as a whole (``ImportReport.refused``, nothing written) when it cannot be
  read as a table (empty, binary, an archive that is no workbook, a workbook that would expand
  past XLSX_UNCOMPRESSED_MAX), has no email column, or has no rows. Every such check happens
  before the first write.
- Otherwise each row is new, updated, unchanged or invalid. An invalid row (with its reason)
  never stops the others. Rows are matched and written BATCH_SIZE at a time, one transaction
  each; unchanged rows are not written. Memory stays flat but for 12 bytes a row (to find
  repeated addresses); a line or cell too long to be a member costs its row, not memory.
- Headers are matched case-, space- and punctuation-insensitively with the aliases the exports
  of Mailchimp, listmonk, Google Contacts and Outlook use; other columns are named as ignored.
- Members are matched by email, ignoring case. A blank cell leaves the stored value as it is.
  A row repeating an earlier row's email is invalid ("duplicate of row N"). An import never
  sets is_staff, is_superuser or a password (no column reads them), and never changes a staff
  user or a superuser, whoever imports (that row is invalid): a file is no way around the
  rights rule of members.services.
- Messages are for people: no exception names, tracebacks or paths, whatever the file holds.

Spreadsheet formulas: a cell is only ever stored as text. The export puts a ``'`` in front
of text a spreadsheet would evaluate (``= + - @``, tab, CR; OWASP CSV injection); the import
takes it off again, so an exported file can be edited and imported back.
"""

from __future__ import annotations

import calendar
import codecs
import csv
import io
import re
import secrets
import shutil
import tempfile
import unicodedata
import warnings
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, BinaryIO, NamedTuple, TextIO

import openpyxl
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from common.errors import Conflict
from members.models import ListMembership, MailingList, Member
from members.services import list_members_add, mailing_list_create

# --- limits -------------------------------------------------------------------------------------------

BATCH_SIZE = 5000  # rows validated, matched and written together (one transaction)
INSERT_BATCH = 1000  # rows per INSERT / UPDATE statement (PostgreSQL takes at most 65,535 parameters)
# Keys per lookup query: PostgreSQL's planner reads a large table through its index for a
# thousand keys, but may scan all of it for five thousand (90 ms instead of 5 at 200,000 members).
LOOKUP_CHUNK = 1000
REJECTED_KEPT = 1000  # rejected rows kept in the report; all of them go to errors_out
CELL_MAX = 1000  # characters in one cell
COLUMNS_MAX = 500
EMAIL_MAX = 254
NAME_MAX = 150
USERNAME_MAX = 150
LIST_NAME_MAX = 200
LINE_MAX = 1_000_000  # characters of one physical CSV line read at once: memory stays bounded
SNIFF_BYTES = 64 * 1024
XLSX_UNCOMPRESSED_MAX = 200 * 1024 * 1024
# openpyxl keeps a workbook's shared strings (its text cells) in memory: larger workbooks are
# asked for as CSV, which is read as a stream.
XLSX_SHARED_STRINGS_MAX = 50 * 1024 * 1024
XLSX_ENTRIES_MAX = 10_000
DELIMITERS = ",;\t|"

# --- the public vocabulary (the admin shows these) ---------------------------------------------------

ACCEPTED_HEADERS: list[str] = [
    "email",
    "first_name",
    "middle_name",
    "last_name",
    "username",
    "birth_date",
    "is_verified",
    "is_active",
]

_ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "emailaddress",
        "mail",
        "mailaddress",
        "emailaddr",
        "email1",
        "email1value",
        "primaryemail",
        "emailprimary",
    ),
    "first_name": ("firstname", "first", "givenname", "given", "forename", "fname"),
    "middle_name": ("middlename", "middle", "middlenames", "additionalname", "additionalnames"),
    "last_name": ("lastname", "last", "surname", "familyname", "family", "lname"),
    # One cell with the whole name (listmonk's "name"): split into first and last name, and only
    # read when the file has neither a first-name nor a last-name column.
    "full_name": ("name", "fullname", "displayname"),
    "username": ("username", "user", "login", "loginname"),
    "birth_date": ("birthdate", "dateofbirth", "birthday", "dob", "born", "bday"),
    "is_verified": ("isverified", "verified", "emailverified"),
    "is_active": ("isactive", "active"),
}
HEADER_ALIASES: dict[str, str] = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}

TEMPLATE_CSV: str = (
    ",".join(ACCEPTED_HEADERS) + "\r\n"
    "ada.lovelace@example.org,Ada,,Lovelace,ada,1815-12-10,yes,yes\r\n"
    "alan.turing@example.org,Alan,Mathison,Turing,,1912-06-23,no,yes\r\n"
)

DATE_FORMAT_HELP = "YYYY-MM-DD (or DD/MM/YYYY; MM/DD/YYYY only when the day is over 12)"
BOOLEAN_HELP = "yes/no, 1/0 or true/false"
STAFF_ROW_REFUSED = "belongs to a staff account; imports never change staff users or superusers"
HEADER_HINT = (
    "accepted column names: "
    + ", ".join(ACCEPTED_HEADERS)
    + " (also common names such as “Email Address”, “E-mail”, “First Name”, “Given name”, “Surname”, "
    "“Last Name”, “Date of birth”, “Birthday”, and “Name” for a whole name)"
)
USE_CSV = "Save the member list as CSV (UTF-8) or XLSX and import that file."

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "x", "t", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "f", "off"})


def escape_formula(value: Any) -> Any:
    """A leading ``'`` for text that a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def unescape_formula(value: Any) -> Any:
    """Undo `escape_formula` (only a quote that protects a formula-like text is taken off)."""
    if (
        isinstance(value, str)
        and len(value) > 1
        and value[0] == "'"
        and value[1:].startswith(FORMULA_PREFIXES)
    ):
        return value[1:]
    return value


# --- results ------------------------------------------------------------------------------------------


class ImportRefused(Exception):
    """The file as a whole cannot be imported; ``message`` says why, for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class RejectedRow:
    row: int  # the row's line in the file, the header being 1 (a spreadsheet's row number)
    reason: str
    values: dict[str, str]  # the row's cells by column name, as text


@dataclass
class ImportReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the file's column names, in file order
    rejected: list[RejectedRow] = field(default_factory=list)  # the first REJECTED_KEPT
    refused: str = ""  # why the whole file was refused (then every count is 0)
    dry_run: bool = False
    list_name: str = ""  # the mailing list the imported members were (or would be) added to
    list_created: bool = False
    added_to_list: int = 0  # members put on it who were not on it yet (a dry run: who would be)

    @property
    def exit_code(self) -> int:
        """0: every row was fine; 1: some rows were rejected, the others imported;
        2: nothing could be imported (the file was refused, or every row is invalid)."""
        if self.refused or not (self.new + self.updated + self.unchanged):
            return 2
        return 1 if self.invalid else 0

    @property
    def rows(self) -> int:
        return self.new + self.updated + self.unchanged + self.invalid

    def summary(self) -> str:
        return f"{self.new:,} new, {self.updated:,} updated, {self.unchanged:,} unchanged, {self.invalid:,} invalid"


Progress = Callable[[int, int | None], None]


# --- the entry point ---------------------------------------------------------------------------------


def members_import(
    *,
    source: BinaryIO,
    filename: str,
    dry_run: bool = False,
    list_name: str | None = None,
    list_id: int | None = None,
    errors_out: TextIO | None = None,
    progress: Progress | None = None,
    actor: Member | None = None,
) -> ImportReport:
    """Import the members of a CSV or XLSX file (see the module's docstring).

    ``dry_run`` validates everything and writes nothing (the admin's preview). ``list_name``
    (created when no list has that name) or ``list_id`` names a mailing list that every
    imported member (new, updated or unchanged) is added to. ``errors_out`` receives every
    rejected row as CSV: the file's columns plus ``row`` and ``reason``. ``progress`` is
    called once the header is read and after each batch, with the rows done and the rows
    expected (an estimate from the file's lines or the sheet's dimension; None when unknown).
    ``actor`` is who imports; the rules are the same for everyone (an import never changes a
    staff user or a superuser, nor anyone's rights or password).
    """
    del actor  # the rules do not depend on who imports
    report = ImportReport(dry_run=dry_run)
    try:
        with _Table.open(source, filename, count_rows=progress is not None) as table:
            columns = _Columns.read(table.header)
            report.columns = columns.names
            report.ignored_columns = columns.ignored
            target = _ListTarget.find(name=list_name, pk=list_id)
            report.list_name = target.name if target else ""
            run = _Run(
                columns=columns,
                report=report,
                target=target,
                errors_out=errors_out,
                ragged_is_invalid=table.ragged_is_invalid,
            )
            if progress is not None:
                progress(0, table.rows_expected)
            for batch in _batches(table.records(), BATCH_SIZE):
                run.batch(batch)
                if progress is not None:
                    progress(run.rows_read, table.rows_expected)
            if not run.rows_read:
                # Nothing was written: there was nothing to write.
                raise ImportRefused("The file names its columns but has no rows of members.")
            run.finish()
    except ImportRefused as refusal:
        return ImportReport(refused=refusal.message, dry_run=dry_run)
    return report


# --- reading the file ----------------------------------------------------------------------------------


def _cp1252_table() -> list[str]:
    chars = []
    for byte in range(256):
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:  # the five bytes Windows-1252 leaves undefined: as Latin-1
            chars.append(chr(byte))
    return chars


_CP1252 = _cp1252_table()
_FALLBACK = "members-import-cp1252"


def _decode_as_cp1252(exc: UnicodeError) -> tuple[str, int]:
    """Bytes that are not valid in the file's encoding are read as Windows-1252 (what
    spreadsheets on Windows write), so a stray accented byte never stops an import."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(_CP1252[b] for b in bad), exc.end


codecs.register_error(_FALLBACK, _decode_as_cp1252)


def _encoding(head: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 (BOM, or ASCII text with every other byte NUL),
    else Windows-1252."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = head[:4096]
    half = len(sample) // 2
    if half >= 2:
        even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
        if odd_nuls > half * 0.7 and even_nuls < half * 0.05:
            return "utf-16-le"
        if even_nuls > half * 0.7 and odd_nuls < half * 0.05:
            return "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _looks_binary(text: str) -> bool:
    if "\x00" in text:
        return True
    return len(_CONTROL.findall(text)) > max(2, len(text) // 100)


class _LineTooLong(Exception):
    pass


class _CappedLines:
    """The physical lines of a text stream, none longer than LINE_MAX characters: a longer
    one is skipped (read in pieces) and raises _LineTooLong, so that one enormous line
    costs a rejected row, not the memory to hold it."""

    def __init__(self, text: TextIO) -> None:
        self.text = text

    def __iter__(self) -> _CappedLines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(LINE_MAX)
        if not line:
            raise StopIteration
        if len(line) >= LINE_MAX and not line.endswith(("\n", "\r")):
            while True:
                rest = self.text.readline(LINE_MAX)
                if not rest or rest.endswith(("\n", "\r")):
                    break
            raise _LineTooLong
        return line


class _Unreadable(NamedTuple):
    reason: str


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"this row could not be read: a cell is longer than {csv.field_size_limit():,} characters"
    if "unexpected end of data" in text or "EOF" in text:
        return 'this row could not be read: a quoted cell is not closed (a " is missing)'
    return "this row could not be read as CSV (check its quotes)"


class _Table:
    """A file's header and its data rows, as lists of cells (str, or the values of an XLSX
    cell: numbers, dates, booleans, None). Row numbers count every line from the header (1),
    blank ones included."""

    header: list[Any]
    header_row: int
    rows_expected: int | None
    # A CSV row with more cells than the header has a delimiter inside an unquoted value:
    # its values are shifted, so it is refused. A workbook's cells cannot shift.
    ragged_is_invalid = False

    @staticmethod
    def open(source: BinaryIO, filename: str, *, count_rows: bool) -> _Table:
        source = _seekable(source)
        head = source.read(SNIFF_BYTES)
        source.seek(0)
        if not head.strip():
            raise ImportRefused("The file is empty.")
        if head.startswith(b"PK\x03\x04"):
            return _XlsxTable(source)
        name = (filename or "").lower()
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise ImportRefused(
                "This is an old-style Excel (.xls) or password-protected Office file, which an import "
                "cannot read. " + USE_CSV
            )
        if name.endswith((".xlsx", ".xlsm", ".xls", ".ods")):
            raise ImportRefused(
                f"This file is named like a spreadsheet but is not an XLSX workbook. {USE_CSV}"
            )
        return _CsvTable(source, head, count_rows=count_rows)

    def records(self) -> Iterator[tuple[int, list[Any] | _Unreadable]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> _Table:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _seekable(source: BinaryIO) -> BinaryIO:
    try:
        if source.seekable():
            return source
    except (AttributeError, ValueError, OSError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
    shutil.copyfileobj(source, spool)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter among DELIMITERS that splits the header into the most columns and keeps
    the most following lines to the header's width."""
    best, best_score = ",", (False, 0, 0)
    for delimiter in DELIMITERS:
        try:
            widths = [len(cells) for cells in csv.reader(lines, delimiter=delimiter)]
        except csv.Error:
            continue
        if not widths:
            continue
        score = (widths[0] > 1, sum(w == widths[0] for w in widths), widths[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


class _CsvTable(_Table):
    ragged_is_invalid = True

    def __init__(self, source: BinaryIO, head: bytes, *, count_rows: bool) -> None:
        self.source = source
        encoding = _encoding(head)
        sample = head.decode(encoding, errors=_FALLBACK)
        if _looks_binary(sample):
            raise ImportRefused(
                f"This file is neither a CSV text file nor an XLSX workbook (it holds binary data). {USE_CSV}"
            )
        self.rows_expected = self._count_rows(source) if count_rows and "16" not in encoding else None
        source.seek(0)
        self.text = io.TextIOWrapper(source, encoding=encoding, errors=_FALLBACK, newline="")  # type: ignore[arg-type]
        lines = [line for line in sample.splitlines()[:-1] if line.strip()][:20] or [sample]
        delimiter = _sniff_delimiter(lines)
        self.row = 0
        self.lines = _CappedLines(self.text)
        # Excel's own hint ("sep=;" on the first line) names the delimiter.
        first = lines[0].strip() if lines else ""
        if len(first) == 5 and first.lower().startswith("sep="):
            delimiter = first[4]
            self._next_line()
        self.reader = csv.reader(self.lines, delimiter=delimiter, doublequote=True, strict=True)
        try:
            self.header, self.header_row = self._header()
        except ImportRefused:
            self.close()
            raise

    @staticmethod
    def _count_rows(source: BinaryIO) -> int:
        lines, last = 0, b"\n"
        for chunk in iter(lambda: source.read(1024 * 1024), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
        return max(lines + (last != b"\n") - 1, 0)

    def _next_line(self) -> None:
        try:
            next(self.lines)
        except (StopIteration, _LineTooLong):
            pass
        self.row += 1

    def _next(self) -> list[str] | _Unreadable | None:
        """The next record (None at the end)."""
        self.row += 1
        try:
            return next(self.reader)
        except StopIteration:
            return None
        except _LineTooLong:
            return _Unreadable(f"this row could not be read: it is longer than {LINE_MAX:,} characters")
        except csv.Error as exc:
            return _Unreadable(_csv_problem(exc))

    def _header(self) -> tuple[list[Any], int]:
        while True:
            record = self._next()
            if record is None:
                raise ImportRefused("The file is empty.")
            if isinstance(record, _Unreadable):
                raise ImportRefused(
                    "The first line of the file should name the columns, but it could not be read: "
                    + record.reason.removeprefix("this row could not be read: ")
                    + "."
                )
            if any(cell.strip() for cell in record):
                return record, self.row

    def records(self) -> Iterator[tuple[int, list[Any] | _Unreadable]]:
        while True:
            record = self._next()
            if record is None:
                return
            yield self.row, record

    def close(self) -> None:
        self.text.detach()  # the caller's file stays open


class _XlsxTable(_Table):
    def __init__(self, source: BinaryIO) -> None:
        _zip_check(source)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions
                self.book = openpyxl.load_workbook(source, read_only=True, data_only=False, keep_links=False)
                sheet = self.book.worksheets[0]
                declared = sheet.max_row
                # The dimension a file declares may be wrong: read every row there is.
                sheet.reset_dimensions()
                self.rows = enumerate(sheet.iter_rows(values_only=True), start=1)
                self.header, self.header_row = self._header()
        except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
            book = getattr(self, "book", None)
            if book is not None:
                book.close()
            if isinstance(exc, ImportRefused):
                raise
            raise ImportRefused(f"This workbook could not be read. {USE_CSV}") from None
        self.rows_expected = max(declared - self.header_row, 0) if declared else None

    def _header(self) -> tuple[list[Any], int]:
        for number, row in self.rows:
            if any(_text(cell) for cell in row):
                return list(row), number
        raise ImportRefused("The workbook's first sheet is empty.")

    def records(self) -> Iterator[tuple[int, list[Any] | _Unreadable]]:
        number = self.header_row
        try:
            for number, row in self.rows:
                yield number, list(row)
        except Exception:  # a sheet damaged after the rows read so far
            yield number + 1, _Unreadable("the rest of the workbook could not be read from this row on")

    def close(self) -> None:
        self.book.close()


def _zip_check(source: BinaryIO) -> None:
    """Refuse, before anything is decompressed, an archive that is not an XLSX workbook or
    that would expand past the limits; then check every part's checksum (zipfile never
    inflates a part past its declared size, so the declared sizes bound the work)."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise ImportRefused(
            f"This file looks like a ZIP archive or workbook but is damaged. {USE_CSV}"
        ) from None
    with archive:
        parts = archive.infolist()
        names = {part.filename for part in parts}
        if "mimetype" in names and "content.xml" in names:
            raise ImportRefused(
                f"This is an OpenDocument spreadsheet (.ods), which an import cannot read. {USE_CSV}"
            )
        if "[Content_Types].xml" not in names or not any(n.startswith("xl/worksheets/") for n in names):
            raise ImportRefused(f"This file is a ZIP archive, not an Excel workbook (.xlsx). {USE_CSV}")
        if len(parts) > XLSX_ENTRIES_MAX:
            raise ImportRefused(f"This workbook has too many parts to be a member list. {USE_CSV}")
        expanded = sum(part.file_size for part in parts)
        if expanded > XLSX_UNCOMPRESSED_MAX:
            raise ImportRefused(
                f"This workbook would expand to {_megabytes(expanded)} when opened, more than the "
                f"{_megabytes(XLSX_UNCOMPRESSED_MAX)} an import reads. "
                "For a very large member list, save it as CSV (UTF-8): CSV files of any size are read."
            )
        strings = sum(p.file_size for p in parts if p.filename.lower().endswith("sharedstrings.xml"))
        if strings > XLSX_SHARED_STRINGS_MAX:
            raise ImportRefused(
                f"This workbook holds {_megabytes(strings)} of text, more than the "
                f"{_megabytes(XLSX_SHARED_STRINGS_MAX)} an import reads from an XLSX file. "
                "Save it as CSV (UTF-8): CSV files of any size are read."
            )
        try:
            damaged = archive.testzip()
        except Exception:  # zlib errors, encrypted or unsupported compression
            damaged = "?"
        if damaged is not None:
            raise ImportRefused(f"This workbook is damaged (a part of it does not check out). {USE_CSV}")
    source.seek(0)


def _megabytes(size: int) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:,.1f} GB"
    return f"{size / 1024**2:,.0f} MB"


def _batches(
    records: Iterable[tuple[int, list[Any] | _Unreadable]], size: int
) -> Iterator[list[tuple[int, list[Any] | _Unreadable]]]:
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- columns ---------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A cell as text (XLSX cells may be numbers, dates or booleans)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def normalise_header(header: str) -> str:
    """``"E-mail Address "`` → ``"emailaddress"``: case, spaces, punctuation and accents ignored."""
    text = unicodedata.normalize("NFKD", header).casefold()
    return "".join(ch for ch in text if ch.isascii() and ch.isalnum())


def _shorten(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class _Columns:
    names: list[str]  # unique display names, in file order
    fields: dict[str, int]  # field -> cell index
    ignored: list[str]

    @classmethod
    def read(cls, header: list[Any]) -> _Columns:
        cells = [_text(cell).strip() for cell in header]
        while cells and not cells[-1]:
            cells.pop()
        if len(cells) > COLUMNS_MAX:
            raise ImportRefused(
                f"The file has {len(cells):,} columns; an import reads at most {COLUMNS_MAX:,}. "
                "Keep the member columns and try again."
            )
        names = cls._unique([unescape_formula(c) or f"column {i + 1}" for i, c in enumerate(cells)])
        fields: dict[str, int] = {}
        for index, cell in enumerate(cells):
            name = HEADER_ALIASES.get(normalise_header(cell))
            if name and name not in fields:
                fields[name] = index
        if "full_name" in fields and ("first_name" in fields or "last_name" in fields):
            del fields["full_name"]
        if "email" not in fields:
            raise ImportRefused(cls._no_email(cells))
        used = set(fields.values())
        ignored = [names[i] for i in range(len(names)) if i not in used]
        return cls(names=names, fields=fields, ignored=ignored)

    @staticmethod
    def _unique(names: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        unique = []
        for name in names:
            seen[name] = seen.get(name, 0) + 1
            unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
        return unique

    @staticmethod
    def _no_email(cells: list[str]) -> str:
        for cell in cells:
            if "@" in cell and _email_error(cell.strip()) is None:
                return (
                    f"The first line should name the columns, but it looks like a member (“{_shorten(cell)}”). "
                    "Add a first line naming the columns, for example: email,first_name,last_name. "
                    f"The {HEADER_HINT}."
                )
        found = ", ".join(f"“{_shorten(c)}”" for c in cells[:10] if c) or "none"
        if len(cells) > 10:
            found += ", …"
        return (
            f"The file has no email column. Its first line must name the columns; the {HEADER_HINT}. "
            f"Columns found: {found}."
        )


# --- mailing list ------------------------------------------------------------------------------------------


@dataclass
class _ListTarget:
    name: str
    pk: int | None  # None: to be created at the first write
    created: bool = False

    @classmethod
    def find(cls, *, name: str | None, pk: int | None) -> _ListTarget | None:
        if pk is not None:
            found = MailingList.objects.filter(pk=pk).first()
            if found is None:
                raise ImportRefused("The mailing list chosen for the imported members no longer exists.")
            return cls(name=found.name, pk=found.pk)
        if name is None:
            return None
        name = " ".join(name.split())
        if not name:
            raise ImportRefused("The name of the mailing list is empty.")
        if len(name) > LIST_NAME_MAX:
            raise ImportRefused(f"The name of the mailing list is longer than {LIST_NAME_MAX} characters.")
        found = MailingList.objects.filter(name__iexact=name).first()
        return cls(name=found.name, pk=found.pk) if found else cls(name=name, pk=None)

    def list_pk(self) -> int:
        if self.pk is None:
            try:
                self.pk = mailing_list_create(name=self.name).pk
                self.created = True
            except Conflict:  # created meanwhile by someone else
                self.pk = MailingList.objects.get(name__iexact=self.name).pk
        return self.pk


# --- cells ---------------------------------------------------------------------------------------------


class _CellError(Exception):
    pass


class _EmailValidator(EmailValidator):
    """Django's address rule (SPEC section 3), its patterns compiled once here instead of
    reached through lazy objects on every call (a third of its cost)."""

    user_regex = re.compile(EmailValidator.user_regex.pattern, EmailValidator.user_regex.flags)
    domain_regex = re.compile(EmailValidator.domain_regex.pattern, EmailValidator.domain_regex.flags)
    literal_regex = re.compile(EmailValidator.literal_regex.pattern, EmailValidator.literal_regex.flags)


_email_validator = _EmailValidator()
_username_validator = UnicodeUsernameValidator()
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_USERNAME_CHARS = re.compile(r"[^\w.@+-]")
# Not calendar.month_name: that one follows the process's locale.
_MONTHS = [
    "",
    *"January February March April May June July August September October November December".split(),
]


def _email_error(value: str) -> str | None:
    if len(value) > EMAIL_MAX:
        return f"is longer than {EMAIL_MAX} characters"
    try:
        _email_validator(value)
    except ValidationError:
        return f"“{_shorten(value)}” is not a valid email address"
    return None


def _clean_text(value: Any) -> str:
    """The cell as stored text: trimmed, the export's formula quote taken off."""
    return unescape_formula(_text(value).strip())


def _clean_email(value: Any) -> str:
    text = _clean_text(value)
    problem = _email_error(text)
    if problem:
        raise _CellError(problem)
    return Member.objects.normalize_email(text)


# What the API says of a name with a line break or another control character: the
# import refuses the same names with the same words (issue 15).
NAME_NOT_ONE_LINE = "must be a single line without control characters"


def _clean_name(value: Any) -> str:
    text = _clean_text(value)
    if _UNSTORABLE.search(text):
        raise _CellError(NAME_NOT_ONE_LINE)
    text = " ".join(text.split())  # runs of spaces become one, as a person means them
    if len(text) > NAME_MAX:
        raise _CellError(f"is longer than {NAME_MAX} characters")
    return text


def _clean_username(value: Any) -> str:
    text = _clean_text(value)
    if len(text) > USERNAME_MAX:
        raise _CellError(f"is longer than {USERNAME_MAX} characters")
    try:
        _username_validator(text)
    except ValidationError:
        raise _CellError(
            f"“{_shorten(text)}” is not a valid username (letters, digits and @ . + - _ only)"
        ) from None
    return text


def _clean_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = _clean_text(value).lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise _CellError(f"“{_shorten(_text(value))}” is not a yes/no value (use {BOOLEAN_HELP})")


_ISO_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_DMY_DATE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})")
# Placeholders other tools write for "no date" (Outlook: 0/0/00).
_NO_DATE = frozenset({"0/0/00", "0/0/0000", "00/00/0000", "0000-00-00", "00.00.0000"})


def _clean_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _clean_text(value)
    if text in _NO_DATE:
        return None
    if isinstance(value, int | float):
        raise _CellError(f"“{_text(value)}” is a number, not a date; use {DATE_FORMAT_HELP}")
    match = _ISO_DATE.fullmatch(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
        return _date(text, year, month, day)
    match = _DMY_DATE.fullmatch(text)
    if match:
        first, second, year_text = match.groups()
        if len(year_text) != 4:
            raise _CellError(f"“{text}” has a two-digit year; use {DATE_FORMAT_HELP}")
        a, b, year = int(first), int(second), int(year_text)
        if b > 12 >= a:  # only month/day/year reads it
            return _date(text, year, a, b)
        if a != b and a <= 12 and b <= 12:
            raise _CellError(
                f"“{text}” could be {a} {_MONTHS[b]} or {b} {_MONTHS[a]} {year}; use {DATE_FORMAT_HELP}: "
                f"{year:04d}-{b:02d}-{a:02d} or {year:04d}-{a:02d}-{b:02d}"
            )
        return _date(text, year, b, a)
    if re.fullmatch(r"-?-?\d{1,2}[-/.]\d{1,2}", text):
        raise _CellError(f"“{text}” has no year; use {DATE_FORMAT_HELP} (or leave the cell empty)")
    raise _CellError(f"“{_shorten(text)}” is not a date; use {DATE_FORMAT_HELP}")


def _date(text: str, year: int, month: int, day: int) -> date:
    if not 1 <= month <= 12:
        raise _CellError(f"“{text}” is not a date: there is no month {month}; use {DATE_FORMAT_HELP}")
    if year < 1:
        raise _CellError(f"“{text}” is not a date: there is no year {year}; use {DATE_FORMAT_HELP}")
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        raise _CellError(
            f"“{text}” does not exist: {_MONTHS[month]} {year} has {days} days; use {DATE_FORMAT_HELP}"
        )
    return date(year, month, day)


def _split_name(value: Any) -> dict[str, str]:
    """A whole name: "Ada Lovelace" or "Lovelace, Ada"."""
    text = _clean_name(value)
    if "," in text:
        last, _, first = text.partition(",")
        return {"first_name": first.strip(), "last_name": last.strip()}
    first, _, last = text.rpartition(" ")
    return {"first_name": first, "last_name": last} if first else {"first_name": last}


_CLEANERS: dict[str, Callable[[Any], Any]] = {
    "email": _clean_email,
    "first_name": _clean_name,
    "middle_name": _clean_name,
    "last_name": _clean_name,
    "username": _clean_username,
    "birth_date": _clean_date,
    "is_verified": _clean_bool,
    "is_active": _clean_bool,
}
# What a member's stored values are compared with (email is matched, never rewritten).
COMPARED_FIELDS = (
    "username",
    "first_name",
    "middle_name",
    "last_name",
    "birth_date",
    "is_verified",
    "is_active",
)


# --- duplicates ---------------------------------------------------------------------------------------------


class _FirstSeen:
    """The first row of each key (an email or a username), in 12 bytes a key: an 8-byte hash
    and a 4-byte row number in open-addressing arrays (a dict of Python ints would take about
    100 bytes a key, 100 MB for a million rows). Two keys share a 64-bit hash once in about
    10^7 million-row files."""

    def __init__(self) -> None:
        self.count = 0
        self.keys = array("Q", [0]) * (1 << 12)
        self.rows = array("L", [0]) * (1 << 12)

    def first(self, key: str, row: int) -> int:
        """The row that had this key first (0: none; this row is now the first)."""
        hashed = (hash(key) & 0xFFFF_FFFF_FFFF_FFFF) or 1
        earlier = self._put(hashed, row)
        if not earlier:
            self.count += 1
            if self.count * 2 > len(self.keys):
                self._grow()
        return earlier

    def _put(self, hashed: int, row: int) -> int:
        keys = self.keys
        mask = len(keys) - 1
        slot = hashed & mask
        while True:
            found = keys[slot]
            if found == hashed:
                return self.rows[slot]
            if not found:
                keys[slot] = hashed
                self.rows[slot] = row
                return 0
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old_keys, old_rows = self.keys, self.rows
        self.keys = array("Q", [0]) * (len(old_keys) * 2)
        self.rows = array("L", [0]) * (len(old_keys) * 2)
        for hashed, row in zip(old_keys, old_rows, strict=True):
            if hashed:
                self._put(hashed, row)


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class _Row:
    number: int
    cells: list[Any]
    key: str  # the email, lower-cased
    data: dict[str, Any]  # field -> value, blank cells left out


class _Stored(NamedTuple):
    key: str
    pk: int
    username: str
    first_name: str
    middle_name: str
    last_name: str
    birth_date: date | None
    is_verified: bool
    is_active: bool
    is_staff: bool
    is_superuser: bool


@dataclass
class _Plan:
    rejects: list[tuple[_Row, str]] = field(default_factory=list)
    creates: list[dict[str, Any]] = field(default_factory=list)  # the new members' columns
    updates: list[Member] = field(default_factory=list)
    update_fields: set[str] = field(default_factory=set)
    unchanged_ids: list[int] = field(default_factory=list)


def _blank(cells: list[Any]) -> bool:
    try:
        return not "".join(cells).strip()
    except TypeError:  # an XLSX row: numbers, dates, None
        return not any(_text(cell).strip() for cell in cells)


class _Run:
    def __init__(
        self,
        *,
        columns: _Columns,
        report: ImportReport,
        target: _ListTarget | None,
        errors_out: TextIO | None,
        ragged_is_invalid: bool,
    ) -> None:
        self.columns = columns
        self.report = report
        self.target = target
        self.errors = csv.writer(errors_out) if errors_out is not None else None
        self.errors_started = False
        self.ragged_is_invalid = ragged_is_invalid
        self.rows_read = 0
        self.emails = _FirstSeen()
        self.usernames = _FirstSeen()
        names = columns.names
        self.width = len(names)
        self.cell_checks = [
            (index, names[index], name, _CLEANERS[name])
            for name, index in sorted(columns.fields.items(), key=lambda item: item[1])
            if name in _CLEANERS
        ]
        self.email_column = names[columns.fields["email"]]
        self.staff_keys = _staff_keys()
        self.full_name_index = columns.fields.get("full_name")

    # -- rows, in file order

    def batch(self, records: list[tuple[int, list[Any] | _Unreadable]]) -> None:
        rows: list[_Row] = []
        for number, cells in records:
            if isinstance(cells, _Unreadable):
                self.rows_read += 1
                self._reject(number, [], cells.reason)
                continue
            if _blank(cells):
                continue  # a blank line
            self.rows_read += 1
            row = self._row(number, cells)
            if row is not None:
                rows.append(row)
        if rows:
            self._apply(rows)

    def _row(self, number: int, cells: list[Any]) -> _Row | None:
        problems, too_long = self._shape_problems(cells)
        data: dict[str, Any] = {}
        width = len(cells)
        email_problem = False
        for index, column, name, clean in self.cell_checks:
            value = cells[index] if index < width else None
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if index in too_long:
                email_problem = email_problem or name == "email"
                continue
            try:
                cleaned = clean(value)
            except _CellError as problem:
                problems.append(f"{column}: {problem}")
                email_problem = email_problem or name == "email"
                continue
            if cleaned is not None and cleaned != "":
                data[name] = cleaned
        if self.full_name_index is not None and self.full_name_index < width:
            self._whole_name(cells[self.full_name_index], data, problems)
        email = data.get("email")
        if email is None and not email_problem:
            problems.append(f"{self.email_column}: is empty (every member needs an email address)")
        key = email.lower() if email else ""
        if key:
            first = self.emails.first(key, number)
            if first:
                problems.insert(0, f"duplicate of row {first} (the same email address)")
        username = data.get("username")
        if username is not None:
            first = self.usernames.first(username, number)
            if first:
                problems.append(f"username “{username}” is already used by row {first}")
        if problems:
            self._reject(number, cells, "; ".join(problems))
            return None
        return _Row(number=number, cells=cells, key=key, data=data)

    def _shape_problems(self, cells: list[Any]) -> tuple[list[str], set[int]]:
        """Problems of the row as a whole, and the cells too long to be read further."""
        problems = []
        too_long = set()
        if (
            self.ragged_is_invalid
            and len(cells) > self.width
            and any(_text(cell).strip() for cell in cells[self.width :])
        ):
            problems.append(
                f"has {len(cells)} cells but the first line names {self.width} columns "
                "(a value with the delimiter in it must be in double quotes)"
            )
        if sum(len(cell) for cell in cells if isinstance(cell, str)) > CELL_MAX:
            for index, cell in enumerate(cells):
                if isinstance(cell, str) and len(cell) > CELL_MAX:
                    column = self.columns.names[index] if index < self.width else f"column {index + 1}"
                    problems.append(f"{column}: is longer than {CELL_MAX:,} characters")
                    too_long.add(index)
        return problems, too_long

    def _whole_name(self, whole: Any, data: dict[str, Any], problems: list[str]) -> None:
        if not _text(whole).strip():
            return
        try:
            data.update({k: v for k, v in _split_name(whole).items() if v})
        except _CellError as problem:
            problems.append(f"{self.columns.names[self.full_name_index]}: {problem}")  # type: ignore[index]

    # -- batches, against the database

    def _apply(self, rows: list[_Row]) -> None:
        added = 0
        for attempt in range(3):
            plan = self._plan(rows)
            if self.report.dry_run:
                added = self._would_add(plan)
                break
            list_pk = self._list_pk(plan)
            if not (plan.creates or plan.updates or list_pk):
                break  # nothing to write: the rows are unchanged or invalid
            try:
                with transaction.atomic():
                    added = self._write(plan, list_pk)
                break
            except IntegrityError:
                # Someone else created one of these members (or took a username) between the
                # check and the write: the batch is planned again against what is stored now.
                if attempt == 2:
                    raise
        for row, reason in plan.rejects:
            self._reject(row.number, row.cells, reason)
        self.report.new += len(plan.creates)
        self.report.updated += len(plan.updates)
        self.report.unchanged += len(plan.unchanged_ids)
        self.report.added_to_list += added

    def _plan(self, rows: list[_Row]) -> _Plan:
        plan = _Plan()
        stored = _stored_by_key([row.key for row in rows])
        wanted = {row.data["username"] for row in rows if "username" in row.data}
        taken = _usernames_taken(wanted)
        creating: list[_Row] = []
        for row in rows:
            member = stored.get(row.key)
            reason = _refusal(row, member, taken, self.staff_keys)
            if reason:
                plan.rejects.append((row, reason))
            elif member is None:
                creating.append(row)
            else:
                changes = {
                    name: value
                    for name, value in row.data.items()
                    if name in COMPARED_FIELDS and getattr(member, name) != value
                }
                if changes:
                    plan.updates.append(_updated(member, changes))
                    plan.update_fields.update(changes)
                else:
                    plan.unchanged_ids.append(member.pk)
        plan.creates = _new_members(creating, reserved=wanted)
        return plan

    def _list_pk(self, plan: _Plan) -> int | None:
        """The list's id, the list created first if need be (outside the batch's transaction,
        so that a retried batch never refers to a list that was rolled back)."""
        if self.target is None or not (plan.creates or plan.updates or plan.unchanged_ids):
            return None
        pk = self.target.list_pk()
        self.report.list_created = self.target.created
        return pk

    def _would_add(self, plan: _Plan) -> int:
        if self.target is None:
            return 0
        known = [m.pk for m in plan.updates] + plan.unchanged_ids
        if self.target.pk is not None and known:
            on_list = ListMembership.objects.filter(mailing_list_id=self.target.pk, member_id__in=known)
            return len(plan.creates) + len(known) - on_list.count()
        return len(plan.creates) + len(known)

    def _write(self, plan: _Plan, list_pk: int | None) -> int:
        created = _members_insert(plan.creates, ids_wanted=list_pk is not None)
        _members_update(plan.updates, sorted(plan.update_fields))
        if list_pk is None:
            return 0
        ids = created + [m.pk for m in plan.updates] + plan.unchanged_ids
        added = 0
        for chunk in _chunks(ids):
            added += list_members_add(list_id=list_pk, members=Member.objects.filter(pk__in=chunk))
        return added

    # -- rejected rows

    def _reject(self, number: int, cells: list[Any], reason: str) -> None:
        self.report.invalid += 1
        values = {name: _cut(_text(cells[i])) for i, name in enumerate(self.columns.names) if i < len(cells)}
        if len(self.report.rejected) < REJECTED_KEPT:
            self.report.rejected.append(RejectedRow(row=number, reason=reason, values=values))
        if self.errors is not None:
            self._errors_header()
            self.errors.writerow(
                [escape_formula(values.get(name, "")) for name in self.columns.names] + [number, reason]
            )

    def _errors_header(self) -> None:
        if self.errors is None or self.errors_started:
            return
        self.errors_started = True
        taken = set(self.columns.names)
        extra = [name if name not in taken else f"import {name}" for name in ("row", "reason")]
        self.errors.writerow([escape_formula(name) for name in self.columns.names] + extra)

    def finish(self) -> None:
        self._errors_header()  # a file with its header, even when no row was rejected


def _cut(text: str) -> str:
    return text if len(text) <= CELL_MAX else text[:CELL_MAX] + "…"


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]


def _stored_by_key(keys: list[str]) -> dict[str, _Stored]:
    """The stored members with these lower-cased addresses (through the lower(email) index)."""
    stored = {}
    for chunk in _chunks(keys):
        rows = (
            Member.objects.annotate(key=Lower("email"))
            .filter(key__in=chunk)
            .order_by()
            .values_list("key", *_Stored._fields[1:])
        )
        stored.update((row[0], _Stored(*row)) for row in rows)
    return stored


def _usernames_taken(usernames: set[str]) -> dict[str, int]:
    taken = {}
    for chunk in _chunks(sorted(usernames)):
        taken.update(Member.objects.filter(username__in=chunk).values_list("username", "pk"))
    return taken


def _staff_keys() -> frozenset[str]:
    """Staff and superuser addresses, casefolded: compared in Python, because the database's
    lower() may fold ASCII only (SQLite), and a staff address in another Unicode case must
    not become a second account."""
    staff = Member.objects.filter(Q(is_staff=True) | Q(is_superuser=True)).values_list("email", flat=True)
    return frozenset(email.casefold() for email in staff)


def _refusal(row: _Row, member: _Stored | None, taken: dict[str, int], staff_keys: frozenset[str]) -> str:
    if member is not None and (member.is_staff or member.is_superuser):
        return STAFF_ROW_REFUSED
    if staff_keys and row.key.casefold() in staff_keys:
        return STAFF_ROW_REFUSED
    username = row.data.get("username")
    if username is not None and username in taken and (member is None or taken[username] != member.pk):
        return f"username “{username}” belongs to another member"
    return ""


def _updated(member: _Stored, changes: dict[str, Any]) -> Member:
    values = {name: getattr(member, name) for name in COMPARED_FIELDS}
    values.update(changes)
    return Member(pk=member.pk, **values)


def _new_members(rows: list[_Row], *, reserved: set[str]) -> list[dict[str, Any]]:
    """The columns of the new rows' members: an unusable password, and the file's username or
    one made from the address (``ann@example.org``; ``ann@example.org-2`` when that is taken)."""
    if not rows:
        return []
    derived = {row.key: _username_from(row.key) for row in rows if "username" not in row.data}
    taken = set(_usernames_taken(set(derived.values()))) | reserved
    now = timezone.now()
    members = []
    for row in rows:
        data = row.data
        username = data.get("username")
        if username is None:
            username = _free_username(derived[row.key], taken)
            taken.add(username)
        members.append(
            {
                "username": username,
                "email": data["email"],
                "first_name": data.get("first_name", ""),
                "middle_name": data.get("middle_name", ""),
                "last_name": data.get("last_name", ""),
                "birth_date": data.get("birth_date"),
                "is_verified": data.get("is_verified", False),
                "is_active": data.get("is_active", True),
                "is_staff": False,
                "is_superuser": False,
                # What set_unusable_password() stores, without its cost per row.
                "password": "!" + secrets.token_urlsafe(30),
                "date_joined": now,
            }
        )
    return members


def _members_insert(members: list[dict[str, Any]], *, ids_wanted: bool) -> list[int]:
    """Insert the new members; their ids when asked for. On PostgreSQL through COPY (the
    ORM's bulk_create spends more time preparing the values than the database storing them;
    COPY fires the insert triggers that keep the member tally like any INSERT)."""
    if not members:
        return []
    if connection.vendor != "postgresql":
        created = Member.objects.bulk_create(
            [Member(**values) for values in members], batch_size=INSERT_BATCH
        )
        return [member.pk for member in created]
    names = list(members[0])
    opts = Member._meta
    columns = ", ".join(connection.ops.quote_name(opts.get_field(name).column) for name in names)
    # wrap_database_errors: a taken address raises Django's IntegrityError, as an INSERT would.
    with connection.wrap_database_errors, connection.cursor() as cursor:
        with cursor.copy(f"COPY {connection.ops.quote_name(opts.db_table)} ({columns}) FROM STDIN") as copy:
            for values in members:
                copy.write_row([values[name] for name in names])
    if not ids_wanted:
        return []
    return [stored.pk for stored in _stored_by_key([values["email"].lower() for values in members]).values()]


def _members_update(members: list[Member], fields: list[str]) -> None:
    """Write the changed fields. On PostgreSQL one UPDATE … FROM unnest(arrays) for the batch
    (the ORM's bulk_update writes a CASE per field and row: 4,000 rows a second)."""
    if not members:
        return
    if connection.vendor != "postgresql":
        Member.objects.bulk_update(members, fields, batch_size=INSERT_BATCH)
        return
    opts, quote = Member._meta, connection.ops.quote_name
    pk = opts.pk.column
    columns = [opts.get_field(name) for name in fields]
    types = [opts.pk.rel_db_type(connection), *(field.db_type(connection) for field in columns)]
    arrays = ", ".join(f"%s::{db_type}[]" for db_type in types)
    names = ", ".join(quote(column) for column in [pk, *(field.column for field in columns)])
    assignments = ", ".join(f"{quote(field.column)} = v.{quote(field.column)}" for field in columns)
    params = [[member.pk for member in members]]
    params += [[getattr(member, field.attname) for member in members] for field in columns]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(opts.db_table)} AS m SET {assignments} FROM unnest({arrays}) AS v({names}) "
            f"WHERE m.{quote(pk)} = v.{quote(pk)}",
            params,
        )


def _username_from(email: str) -> str:
    return _USERNAME_CHARS.sub("", email)[:USERNAME_MAX] or "member"


def _free_username(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    for n in range(2, 10_000):
        suffix = f"-{n}"
        candidate = base[: USERNAME_MAX - len(suffix)] + suffix
        if candidate not in taken and not Member.objects.filter(username=candidate).exists():
            return candidate
    return "member-" + secrets.token_hex(8)
