"""Malformed files given to the member import (SPEC section 14, issue 13 point 3): each one is
read as far as it can be, refused as a whole or row by row with a reason for people, and never
answered with a traceback, an exception's name or a path of the server."""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable

import openpyxl
import pytest

from members import importing
from members.importing import ACCEPTED_HEADERS, ImportReport, members_import
from members.models import Member

pytestmark = pytest.mark.django_db

TRACES = re.compile(
    r"Traceback|Exception|Error\b|File \"|/work/|/srv/|/tmp/|/usr/|site-packages|\.py\b|"
    r"BadZip|Unicode|codec|_csv|openpyxl|zipfile|\bNone\b"
)


def run(content: bytes, filename: str = "members.csv", **options) -> ImportReport:
    return members_import(source=io.BytesIO(content), filename=filename, **options)


def words(report: ImportReport) -> str:
    """Everything the report says to people."""
    return " ".join([report.refused, *(r.reason for r in report.rejected)])


def emails() -> set[str]:
    return set(Member.objects.values_list("email", flat=True))


# --- files to build ------------------------------------------------------------------------------------


def workbook(*rows: list) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def raw_zip(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A ZIP written by hand: (name, deflated data, CRC-32, declared uncompressed size) per
    part, so that a part can declare any size, true or not, without compressing gigabytes."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, data, crc, size in entries:
        offset = out.tell()
        encoded = name.encode()
        fields = (20, 0, 8, 0, 0, crc, len(data), size, len(encoded))
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields, 0) + encoded + data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, offset) + encoded)
    start, directory = out.tell(), central.getvalue()
    count = len(entries)
    out.write(
        directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), start, 0)
    )
    return out.getvalue()


CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
)


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def part(name: str, data: bytes) -> tuple[str, bytes, int, int]:
    return name, deflated(data), zlib.crc32(data), len(data)


def zeros_part(name: str, size: int) -> tuple[str, bytes, int, int]:
    """A part that inflates to `size` zero bytes, made of one compressed megabyte repeated
    (a full flush makes every repetition the same bytes). Its CRC is left 0: the part is
    refused by its declared size before a byte of it is read."""
    chunk = 1024 * 1024
    assert size % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return name, block * (size // chunk) + compressor.flush(), 0, size


def zip_bomb(size: int) -> bytes:
    return raw_zip([part("[Content_Types].xml", CONTENT_TYPES), zeros_part("xl/worksheets/sheet1.xml", size)])


def lying_workbook() -> bytes:
    """A part that declares 100 bytes and inflates to a megabyte."""
    name, data, _crc, _size = zeros_part("xl/worksheets/sheet1.xml", 1024 * 1024)
    return raw_zip(
        [part("[Content_Types].xml", CONTENT_TYPES), (name, data, zlib.crc32(bytes(1024 * 1024)), 100)]
    )


def zip_of(**files: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name.replace("__", "/"), data)
    return buffer.getvalue()


def workbook_with_broken_sheet() -> bytes:
    good = zipfile.ZipFile(io.BytesIO(workbook(["email"], ["a@example.test"])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info in good.infolist():
            data = good.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = b"<worksheet><sheetData><row r='1'><c r='A1' t='inlineStr'><is><t>em"
            archive.writestr(info.filename, data)
    return buffer.getvalue()


def rows_of(n: int, start: int = 0) -> str:
    return "".join(f"member{i}@example.test,Member,{i}\n" for i in range(start, start + n))


# Every file below: (file name, content). The tests after the table check what each must do.
MALFORMED: dict[str, Callable[[], tuple[str, bytes]]] = {
    "semicolons": lambda: ("m.csv", b"email;first_name;last_name\na@example.test;Ann;Smith, Jr.\n"),
    "tabs": lambda: ("m.tsv", b"email\tfirst_name\na@example.test\tAnn\n"),
    "pipes": lambda: ("m.txt", b"email|first_name\na@example.test|Ann\n"),
    "wrong delimiter": lambda: ("m.csv", b"email:first_name:last_name\na@example.test:Ann:Smith\n"),
    "excel sep hint": lambda: ("m.csv", b"sep=;\r\nemail;first_name\r\na@example.test;Ann\r\n"),
    "utf-8 bom": lambda: ("m.csv", b"\xef\xbb\xbfemail,first_name\na@example.test,\xc3\x85sa\n"),
    "latin-1": lambda: ("m.csv", "email,first_name\na@example.test,Åsa Müller\n".encode("latin-1")),
    "stray latin-1 byte late in utf-8": lambda: (
        "m.csv",
        ("email,first_name,last_name\n" + rows_of(2000) + "a@example.test,Jos\u00e9,x\n").encode()
        + b"b@example.test,Ren\xe9,y\n",
    ),
    "utf-16 with bom": lambda: ("m.txt", "email\tfirst_name\r\na@example.test\tÅsa\r\n".encode("utf-16")),
    "utf-16 without bom": lambda: ("m.csv", "email,first_name\na@example.test,Åsa\n".encode("utf-16-le")),
    "no header": lambda: ("m.csv", b"a@example.test,Ann,Smith\nb@example.test,Bob,Brown\n"),
    "empty": lambda: ("m.csv", b""),
    "only blanks": lambda: ("m.csv", b"  \r\n\r\n \n"),
    "only a header": lambda: ("m.csv", b"email,first_name\r\n"),
    "a header and blank lines": lambda: ("m.csv", b"email,first_name\n\n,\n  ,  \n"),
    "binary junk": lambda: ("m.csv", random.Random(13).randbytes(5000)),
    "a picture": lambda: ("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4),
    "old excel": lambda: ("m.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)),
    "html named xls": lambda: ("m.xls", b"<html><table><tr><td>email</td></tr></table></html>"),
    "zip of something else": lambda: ("m.xlsx", zip_of(readme__txt=b"hello", photos__cat__jpg=b"\xff\xd8")),
    "opendocument": lambda: ("m.ods", zip_of(mimetype=b"application/vnd.oasis", **{"content.xml": b"<x/>"})),
    "zip bomb": lambda: ("m.xlsx", zip_bomb(3 * 1024**3)),
    "zip just over the limit": lambda: ("m.xlsx", zip_bomb(importing.XLSX_UNCOMPRESSED_MAX + 1024 * 1024)),
    "zip lying about its size": lambda: ("m.xlsx", lying_workbook()),
    "truncated workbook": lambda: ("m.xlsx", workbook(["email"], ["a@example.test"])[:900]),
    "workbook with a broken sheet": lambda: ("m.xlsx", workbook_with_broken_sheet()),
    "empty workbook": lambda: ("m.xlsx", workbook()),
    "ragged rows": lambda: (
        "m.csv",
        b"email,first_name\na@example.test,Ann,Smith,extra\nb@example.test\nc@example.test,Cat,,\n",
    ),
    "a 10 MB cell": lambda: (
        "m.csv",
        b"email,notes\na@example.test," + b"x" * 10_000_000 + b"\nb@example.test,short\n",
    ),
    "a 200 KB cell": lambda: (
        "m.csv",
        b'email,notes\na@example.test,"' + b"y" * 200_000 + b'"\nb@example.test,ok\n',
    ),
    "a 5 KB name": lambda: (
        "m.csv",
        b"email,first_name\na@example.test," + b"z" * 5000 + b"\nb@example.test,ok\n",
    ),
    "an unclosed quote": lambda: ("m.csv", b'email,first_name\na@example.test,"Ann\nb@example.test,Bob\n'),
    "a stray quote": lambda: ("m.csv", b'email,first_name\na@example.test,"Ann"x\nb@example.test,Bob\n'),
    "formulas": lambda: (
        "m.csv",
        b"email,first_name,last_name,middle_name\nf@example.test,=cmd|' /C calc'!A0,'+SUM(1;2),@import\n",
    ),
    "names with line breaks": lambda: (
        "m.csv",
        b'email,first_name\na@example.test,"Ann\nMarie"\nb@example.test,Bob\n',
    ),
    "a nul byte late in the file": lambda: (
        "m.csv",
        ("email,first_name,last_name\n" + rows_of(2000)).encode() + b"nul@example.test,A\x00nn,x\n",
    ),
    "too many columns": lambda: (
        "m.csv",
        (",".join(["email"] + [f"c{i}" for i in range(600)]) + "\n").encode(),
    ),
    "json": lambda: ("m.csv", b'[{"email": "a@example.test", "first_name": "Ann"}]\n'),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_no_file_gets_a_traceback_an_exception_name_or_a_path(case):
    filename, content = MALFORMED[case]()
    report = run(content, filename)  # never raises
    said = words(report)
    assert said or report.invalid == 0
    assert not TRACES.search(said), said
    if report.refused:
        assert (report.new, report.updated, report.unchanged, report.invalid) == (0, 0, 0, 0)
        assert report.exit_code == 2
        assert not Member.objects.exists()  # nothing half-imported


def test_there_are_at_least_fifteen_malformed_files():
    assert len(MALFORMED) >= 15


def imported(case: str) -> tuple[ImportReport, set[str]]:
    filename, content = MALFORMED[case]()
    return run(content, filename), emails()


@pytest.mark.parametrize("case", ["semicolons", "tabs", "pipes", "excel sep hint"])
def test_the_delimiter_is_found(case):
    report, found = imported(case)
    assert report.exit_code == 0 and found == {"a@example.test"}
    assert Member.objects.get().first_name == "Ann"
    if case == "semicolons":
        assert Member.objects.get().last_name == "Smith, Jr."


def test_an_unknown_delimiter_leaves_one_column_and_says_which():
    report, _ = imported("wrong delimiter")
    assert "no email column" in report.refused and "“email:first_name:last_name”" in report.refused


@pytest.mark.parametrize(
    "case, name",
    [
        ("utf-8 bom", "Åsa"),
        ("latin-1", "Åsa Müller"),
        ("utf-16 with bom", "Åsa"),
        ("utf-16 without bom", "Åsa"),
    ],
)
def test_the_encoding_is_found(case, name):
    report, found = imported(case)
    assert report.exit_code == 0 and found == {"a@example.test"}
    assert Member.objects.get().first_name == name


def test_a_stray_windows_1252_byte_in_a_utf_8_file_is_read_as_such():
    report, _ = imported("stray latin-1 byte late in utf-8")
    assert report.exit_code == 0 and report.new == 2002
    assert Member.objects.get(email="a@example.test").first_name == "José"
    assert Member.objects.get(email="b@example.test").first_name == "René"


@pytest.mark.parametrize(
    "case, message",
    [
        ("no header", "looks like a member"),
        ("empty", "The file is empty."),
        ("only blanks", "The file is empty."),
        ("only a header", "has no rows of members"),
        ("a header and blank lines", "has no rows of members"),
        ("binary junk", "binary data"),
        ("a picture", "binary data"),
        ("old excel", "old-style Excel (.xls)"),
        ("html named xls", "not an XLSX workbook"),
        ("zip of something else", "ZIP archive, not an Excel workbook"),
        ("opendocument", "OpenDocument"),
        ("zip bomb", "expand to 3.0 GB"),
        ("zip just over the limit", "more than the 200 MB an import reads"),
        ("zip lying about its size", "damaged"),
        ("truncated workbook", "damaged"),
        ("workbook with a broken sheet", "could not be read"),
        ("empty workbook", "first sheet is empty"),
        ("too many columns", "601 columns"),
        ("json", "no email column"),
    ],
)
def test_a_file_refused_as_a_whole_says_why_and_writes_nothing(case, message):
    report, found = imported(case)
    assert message in report.refused and found == set()
    assert report.exit_code == 2


def test_a_refusal_for_a_missing_email_column_lists_the_accepted_headers():
    report, _ = imported("json")
    for header in ACCEPTED_HEADERS:
        assert header in report.refused


def test_a_ragged_row_with_more_cells_is_rejected_and_fewer_cells_are_blanks():
    report, found = imported("ragged rows")
    assert found == {"b@example.test", "c@example.test"}
    assert report.rejected[0].row == 2
    assert "has 4 cells but the first line names 2 columns" in report.rejected[0].reason


@pytest.mark.parametrize(
    "case, reason",
    [
        ("a 10 MB cell", "longer than 1,000,000 characters"),
        ("a 200 KB cell", "a cell is longer than 131,072 characters"),
        ("a 5 KB name", "first_name: is longer than 1,000 characters"),
    ],
)
def test_a_huge_cell_rejects_its_row_only(case, reason):
    report, found = imported(case)
    assert found == {"b@example.test"} and report.exit_code == 1
    assert [r.row for r in report.rejected] == [2] and reason in report.rejected[0].reason
    assert report.rejected[0].reason.count("longer than") == 1


def test_the_rejected_row_of_a_huge_cell_is_written_cut_short():
    out = io.StringIO()
    filename, content = MALFORMED["a 5 KB name"]()
    run(content, filename, errors_out=out)
    assert len(out.getvalue()) < 1200


@pytest.mark.parametrize("case", ["an unclosed quote", "a stray quote"])
def test_a_quoting_mistake_rejects_the_row_with_a_reason(case):
    report, _ = imported(case)
    assert report.invalid >= 1 and "quote" in report.rejected[0].reason
    assert not Member.objects.filter(first_name__contains="@").exists()  # no row swallowed into a name


def test_formulas_are_text_and_the_export_quote_is_undone():
    report, _ = imported("formulas")
    assert report.exit_code == 0
    member = Member.objects.get()
    assert (member.first_name, member.last_name, member.middle_name) == (
        "=cmd|' /C calc'!A0",
        "+SUM(1;2)",
        "@import",
    )


def test_a_name_with_a_line_break_is_refused_as_the_api_refuses_it():
    report, found = imported("names with line breaks")
    assert report.exit_code == 1 and found == {"b@example.test"}
    assert report.rejected[0].reason == "first_name: must be a single line without control characters"


def test_a_nul_byte_rejects_its_row_only():
    report, _ = imported("a nul byte late in the file")
    assert report.new == 2000 and report.invalid == 1
    assert report.rejected[0].reason == "first_name: must be a single line without control characters"
