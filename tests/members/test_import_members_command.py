"""`python manage.py import_members FILE [--dry-run] [--list NAME] [--errors OUT.csv]`
(SPEC section 14, issue 13 point 5): the summary line, the rejected rows' file, the list, the
progress bar only on a terminal, and the exit codes 0, 1 and 2."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import openpyxl
import pytest
from django.core.management import call_command

from members.models import ListMembership, MailingList, Member

pytestmark = pytest.mark.django_db

TRACES = re.compile(r"Traceback|Exception|Error\b|File \"|site-packages|\.py\b")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def command(*args: str, stdout: io.StringIO | None = None) -> tuple[int, str, str]:
    out, err = stdout or io.StringIO(), io.StringIO()
    try:
        call_command("import_members", *args, stdout=out, stderr=err)
    except SystemExit as stop:
        return int(stop.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.fixture
def write(tmp_path: Path):
    def write(content: str | bytes, name: str = "members.csv") -> str:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    return write


GOOD = "email,first_name\nann@example.test,Ann\nbob@example.test,Bob\n"
MIXED = "email,first_name,city\nann@example.test,Ann,Oslo\nnope,Nora,Bergen\nANN@example.test,Annie,Oslo\n"


def test_every_row_fine_exits_0_and_prints_the_summary(write, member):
    code, out, err = command(write(GOOD + "ada@example.test,Ada\n"))
    assert code == 0 and err == ""
    assert out.strip().splitlines()[-1] == "2 new, 0 updated, 1 unchanged, 0 invalid"
    assert set(Member.objects.values_list("email", flat=True)) == {
        "ada@example.test",
        "ann@example.test",
        "bob@example.test",
    }


def test_some_rows_rejected_exits_1_imports_the_others_and_writes_them_to_errors(write, tmp_path):
    errors = tmp_path / "rejected.csv"
    code, out, err = command(write(MIXED), "--errors", str(errors))
    assert code == 1
    assert "1 new, 0 updated, 0 unchanged, 2 invalid" in out
    assert "Ignored columns: city" in out
    assert "Row 3: email: “nope” is not a valid email address" in err
    assert "Row 4: duplicate of row 2" in err and str(errors) in err
    assert Member.objects.get().email == "ann@example.test"
    rows = list(csv.DictReader(errors.open(encoding="utf-8-sig", newline="")))
    assert [(r["row"], r["email"], r["first_name"], r["city"]) for r in rows] == [
        ("3", "nope", "Nora", "Bergen"),
        ("4", "ANN@example.test", "Annie", "Oslo"),
    ]
    assert all(r["reason"] for r in rows)


def test_every_row_invalid_exits_2(write):
    code, out, _err = command(write("email\nnope\nnada\n"))
    assert code == 2 and "0 new, 0 updated, 0 unchanged, 2 invalid" in out
    assert not Member.objects.exists()


def test_a_refused_file_exits_2_with_its_message_and_no_errors_file(write, tmp_path):
    errors = tmp_path / "rejected.csv"
    code, out, err = command(write("Name,Phone\nAda,123\n"), "--errors", str(errors))
    assert code == 2 and "Nothing was imported. The file has no email column" in err
    assert "email, first_name" in err and not TRACES.search(err + out)
    assert not errors.exists() and not Member.objects.exists()


def test_a_missing_file_exits_2_without_a_traceback(tmp_path):
    code, out, err = command(str(tmp_path / "nowhere.csv"))
    assert code == 2 and "Cannot open" in err and "no such file or directory" in err
    assert not TRACES.search(err)


def test_a_dry_run_writes_nothing(write, member):
    code, out, _err = command(write(GOOD + "ada@example.test,Augusta\n"), "--dry-run", "--list", "Fair")
    assert code == 0
    assert "Dry run: nothing was written." in out and "2 new, 1 updated, 0 unchanged, 0 invalid" in out
    assert "would be added to the mailing list “Fair”" in out
    assert Member.objects.count() == 1 and not MailingList.objects.exists()
    member.refresh_from_db()
    assert member.first_name == "Ada"


def test_list_creates_the_list_and_adds_new_updated_and_unchanged_members(write, member):
    code, out, _err = command(write(GOOD + "ada@example.test,Ada\n"), "--list", "Spring fair")
    assert code == 0 and "Mailing list “Spring fair” (created): 3 members added." in out
    fair = MailingList.objects.get(name="Spring fair")
    assert ListMembership.objects.filter(mailing_list=fair).count() == 3
    code, out, _err = command(write(GOOD), "--list", "spring FAIR")
    assert "Mailing list “Spring fair”: 0 members added." in out and MailingList.objects.count() == 1


def test_an_xlsx_file_imports(write):
    book = openpyxl.Workbook()
    book.active.append(["E-mail", "First Name", "Verified"])
    book.active.append(["xena@example.test", "Xena", True])
    buffer = io.BytesIO()
    book.save(buffer)
    code, out, _err = command(write(buffer.getvalue(), "members.xlsx"))
    assert code == 0 and "1 new" in out
    assert Member.objects.get().is_verified


def test_no_progress_bar_when_stdout_is_not_a_terminal(write, capsys):
    code, out, err = command(write(GOOD))
    captured = capsys.readouterr()
    assert code == 0
    assert "rows" not in captured.err and "it/s" not in captured.err and "\r" not in out + err


def test_a_progress_bar_on_a_terminal(write, capsys):
    code, out, _err = command(write(GOOD), stdout=Terminal())
    bar = capsys.readouterr().err
    assert code == 0 and "2/2" in bar and "rows" in bar
    assert "2 new" in out


def test_an_unexpected_failure_says_so_plainly(write, monkeypatch):
    import members.management.commands.import_members as module

    def broken(**kwargs):
        raise RuntimeError("database at /srv/secret/path exploded")

    monkeypatch.setattr(module, "members_import", broken)
    code, out, err = command(write(GOOD))
    assert code == 2 and "stopped because of an unexpected error" in err
    assert "RuntimeError" not in err and "/srv/" not in err and not TRACES.search(err)
