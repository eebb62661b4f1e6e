"""The member import's validator (members.importing, SPEC section 14): header aliases and the
exports of other tools, duplicates, dates, rights, blank cells, usernames, batches, the
mailing list, the rejected rows' CSV and the report."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from django.contrib.auth.hashers import is_password_usable

from members import importing
from members.importing import (
    ACCEPTED_HEADERS,
    DATE_FORMAT_HELP,
    HEADER_ALIASES,
    STAFF_ROW_REFUSED,
    TEMPLATE_CSV,
    ImportReport,
    members_import,
    normalise_header,
)
from members.models import ListMembership, MailingList, Member
from tests.factories import MemberFactory, StaffFactory, SuperuserFactory

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).parent / "import_samples"


def run(content: str | bytes, *, filename: str = "members.csv", **options) -> ImportReport:
    data = content.encode() if isinstance(content, str) else content
    return members_import(source=io.BytesIO(data), filename=filename, **options)


def reasons(report: ImportReport) -> dict[int, str]:
    return {rejected.row: rejected.reason for rejected in report.rejected}


def counts(report: ImportReport) -> tuple[int, int, int, int]:
    return report.new, report.updated, report.unchanged, report.invalid


def xlsx(*rows: list) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# --- headers and the exports of other tools ---------------------------------------------------------


def test_the_template_imports_cleanly():
    report = run(TEMPLATE_CSV)
    assert counts(report) == (2, 0, 0, 0) and report.ignored_columns == []
    assert next(csv.reader(io.StringIO(TEMPLATE_CSV))) == ACCEPTED_HEADERS
    ada = Member.objects.get(email="ada.lovelace@example.org")
    assert (ada.username, ada.birth_date, ada.is_verified) == ("ada", date(1815, 12, 10), True)


@pytest.mark.parametrize(
    "header, field",
    [
        ("E-mail", "email"),
        (" EMAIL ", "email"),
        ("Email Address", "email"),
        ("e_mail", "email"),
        ("E-mail 1 - Value", "email"),
        ("First Name", "first_name"),
        ("Given name", "first_name"),
        ("first_name", "first_name"),
        ("Surname", "last_name"),
        ("Last Name", "last_name"),
        ("Family name", "last_name"),
        ("Middle name", "middle_name"),
        ("Additional Name", "middle_name"),
        ("Date of birth", "birth_date"),
        ("Birthday", "birth_date"),
        ("User name", "username"),
        ("Verified", "is_verified"),
        ("Név", None),
    ],
)
def test_headers_are_matched_ignoring_case_spaces_and_punctuation(header, field):
    assert HEADER_ALIASES.get(normalise_header(header)) == field


def test_a_mailchimp_export_imports(member):
    report = run((SAMPLES / "mailchimp.csv").read_bytes(), filename="subscribed_members_export.csv")
    assert counts(report) == (3, 0, 0, 0)
    assert report.columns[:3] == ["Email Address", "First Name", "Last Name"]
    assert "Phone Number" in report.ignored_columns and "TAGS" in report.ignored_columns
    assert "Email Address" not in report.ignored_columns and "Birthday" not in report.ignored_columns
    katherine = Member.objects.get(email__iexact="katherine.johnson@example.test")
    assert (katherine.first_name, katherine.last_name) == ("Katherine", "Johnson")
    assert katherine.email == "Katherine.Johnson@example.test"  # the domain is normalised, not the name


def test_a_listmonk_export_splits_the_whole_name():
    report = run((SAMPLES / "listmonk.csv").read_bytes())
    assert counts(report) == (3, 0, 0, 0) and report.ignored_columns == ["attributes"]
    names = dict(Member.objects.filter(email__endswith="example.test").values_list("email", "last_name"))
    assert names == {
        "ada.lovelace@example.test": "Lovelace",
        "charles.babbage@example.test": "Babbage",
        "hypatia@example.test": "",
    }
    assert Member.objects.get(email="charles.babbage@example.test").first_name == "Charles"
    assert Member.objects.get(email="hypatia@example.test").first_name == "Hypatia"


def test_a_google_contacts_export_imports_and_a_birthday_without_year_is_rejected():
    report = run((SAMPLES / "google_contacts.csv").read_bytes(), filename="contacts.csv")
    assert counts(report) == (2, 0, 0, 1)
    # "Name" is not read when the file has first and last names of their own.
    assert "Name" in report.ignored_columns and "E-mail 2 - Value" in report.ignored_columns
    alan = Member.objects.get(email="alan.turing@example.test")
    assert (alan.first_name, alan.middle_name, alan.last_name) == ("Alan", "Mathison", "Turing")
    assert alan.birth_date == date(1912, 6, 23)
    # Joan's row (its notes span two lines) is row 3, Tommy's row 4.
    assert list(reasons(report)) == [3]
    assert "Birthday" in reasons(report)[3] and "no year" in reasons(report)[3]
    assert Member.objects.filter(email="tommy.flowers@example.test").exists()


def test_an_outlook_export_in_windows_1252_imports():
    report = run((SAMPLES / "outlook.csv").read_bytes())
    assert counts(report) == (3, 0, 0, 0)
    zoe = Member.objects.get(email="zoe.muller@example.test")
    assert (zoe.first_name, zoe.last_name, zoe.birth_date) == ("Zoë", "Müller", None)  # 0/0/00: none
    rene = Member.objects.get(email="rene.dupont@example.test")
    assert (rene.first_name, rene.middle_name, rene.birth_date) == ("René", "Jean", date(1984, 5, 17))
    assert Member.objects.get(email="sian.obrien@example.test").last_name == "O’Brien"
    assert "E-mail 2 Address" in report.ignored_columns and "Notes" in report.ignored_columns


def test_a_file_without_an_email_column_is_refused_listing_the_accepted_headers(member):
    report = run("Name,Phone\nAda,123\n")
    assert report.refused and report.exit_code == 2 and counts(report) == (0, 0, 0, 0)
    for header in ACCEPTED_HEADERS:
        assert header in report.refused
    assert "“Name”, “Phone”" in report.refused
    assert Member.objects.count() == 1


def test_a_file_without_a_header_line_is_told_so():
    report = run("ann@example.test,Ann,Smith\nbob@example.test,Bob,Brown\n")
    assert "looks like a member" in report.refused and "ann@example.test" in report.refused
    assert not Member.objects.exists()


def test_two_columns_for_one_field_read_the_first_and_name_the_other_ignored():
    report = run("email,E-mail Address,first_name\na@example.test,b@example.test,A\n")
    assert report.ignored_columns == ["E-mail Address"]
    assert Member.objects.filter(email="a@example.test").exists()


# --- rows --------------------------------------------------------------------------------------------


def test_a_repeated_email_is_invalid_and_names_the_first_row():
    report = run("email,first_name\nbob@example.test,Bob\nann@example.test,Ann\nBOB@Example.test,Bobby\n")
    assert counts(report) == (2, 0, 0, 1)
    assert reasons(report)[4].startswith("duplicate of row 2")
    assert Member.objects.get(email="bob@example.test").first_name == "Bob"  # not silently renamed


def test_a_repeated_email_is_found_across_batches(monkeypatch):
    monkeypatch.setattr(importing, "BATCH_SIZE", 2)
    rows = [f"p{i}@example.test,P{i}" for i in range(7)] + ["P1@EXAMPLE.TEST,again"]
    report = run("email,first_name\n" + "\n".join(rows) + "\n")
    assert counts(report) == (7, 0, 0, 1)
    assert "duplicate of row 3" in reasons(report)[9]


@pytest.mark.parametrize(
    "cell, words",
    [
        ("2023-02-30", ["does not exist", "February 2023 has 28 days"]),
        ("1990-13-45", ["no month 13"]),
        ("soon", ["is not a date"]),
        ("05/06/1990", ["could be 5 June or 6 May 1990", "1990-06-05"]),
        ("17/05/90", ["two-digit year"]),
        ("--05-17", ["no year"]),
        ("31/04/1990", ["does not exist", "April 1990 has 30 days"]),
    ],
)
def test_a_bad_date_names_the_accepted_format(cell, words):
    report = run(f"email,birth_date\nd@example.test,{cell}\n")
    assert report.invalid == 1 and report.exit_code == 2
    reason = reasons(report)[2]
    assert reason.startswith("birth_date: ") and DATE_FORMAT_HELP in reason
    for word in words:
        assert word in reason
    assert "could not be parsed" not in reason


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("1990-05-17", date(1990, 5, 17)),
        ("1990/5/7", date(1990, 5, 7)),
        ("1990-05-17 00:00:00", date(1990, 5, 17)),
        ("17/05/1990", date(1990, 5, 17)),
        ("17.05.1990", date(1990, 5, 17)),
        ("5/17/1990", date(1990, 5, 17)),
        ("06/06/1990", date(1990, 6, 6)),
        ("2024-02-29", date(2024, 2, 29)),
        ("0/0/00", None),
    ],
)
def test_dates_that_read_one_way_only_are_accepted(cell, expected):
    report = run(f"email,birth_date\nd@example.test,{cell}\n")
    assert report.invalid == 0
    assert Member.objects.get(email="d@example.test").birth_date == expected


def test_every_problem_of_a_row_is_named_once():
    report = run(
        "email,first_name,last_name,birth_date,is_verified\n"
        "anna@example.test,Anna,A,1990-01-02,yes\n"
        "not-an-email,Bad,Email,,\n"
        "carl@example.test,Carl,C,1990-13-45,maybe\n"
        ",No,Address,,\n"
    )
    assert counts(report) == (1, 0, 0, 3)
    found = reasons(report)
    assert found[3] == "email: “not-an-email” is not a valid email address"
    assert "birth_date:" in found[4] and "is_verified: “maybe” is not a yes/no value" in found[4]
    assert found[5] == "email: is empty (every member needs an email address)"


def test_an_import_never_sets_rights_or_a_password():
    report = run(
        "email,is_staff,is_superuser,password,groups\nmallory@example.test,yes,1,hunter2hunter2,admins\n"
    )
    assert counts(report) == (1, 0, 0, 0)
    assert report.ignored_columns == ["is_staff", "is_superuser", "password", "groups"]
    mallory = Member.objects.get(email="mallory@example.test")
    assert not (mallory.is_staff or mallory.is_superuser)
    assert not mallory.has_usable_password() and not is_password_usable(mallory.password)
    assert not mallory.groups.exists()


@pytest.mark.parametrize("factory", [StaffFactory, SuperuserFactory])
def test_a_row_of_a_staff_account_is_invalid_whoever_imports(factory):
    boss = factory(username="boss", email="boss@example.test", first_name="Boss")
    root = SuperuserFactory(username="root", email="root@example.test")
    report = run("email,first_name\nBOSS@example.test,Renamed\nz@example.test,Zed\n", actor=root)
    assert counts(report) == (1, 0, 0, 1)
    assert reasons(report)[2] == STAFF_ROW_REFUSED
    boss.refresh_from_db()
    assert boss.first_name == "Boss"


def test_a_staff_address_in_another_unicode_case_is_invalid_too():
    """Stored as written by some older path (SQLite's lower() folds ASCII only)."""
    emile = StaffFactory(username="emile", email="emile@example.test")
    Member.objects.filter(pk=emile.pk).update(email="Emile@École.example")
    report = run("email,first_name\nEMILE@ÉCOLE.EXAMPLE,Imposter\n")
    assert reasons(report) == {2: STAFF_ROW_REFUSED}
    assert Member.objects.count() == 1


def test_existing_members_are_matched_by_email_ignoring_case_and_blank_cells_keep_values(member):
    member.birth_date = date(1815, 12, 10)
    member.save()
    report = run("Email,First name,Last name,birth_date\nADA@Example.TEST,Augusta,,\n")
    assert counts(report) == (0, 1, 0, 0)
    member.refresh_from_db()
    assert (member.first_name, member.last_name, member.birth_date) == (
        "Augusta",
        "Lovelace",
        date(1815, 12, 10),
    )
    assert (member.email, member.username) == ("ada@example.test", "ada")  # the address is kept as stored
    assert Member.objects.count() == 1


def test_unchanged_rows_are_counted_and_not_written(member, django_assert_num_queries):
    content = "email,first_name,last_name\nada@example.test,Ada,Lovelace\nADA2@example.test,,\n"
    MemberFactory(username="ada2", email="ada2@example.test")
    with django_assert_num_queries(2):  # the staff addresses, then the batch's members
        report = run(content)
    assert counts(report) == (0, 0, 2, 0) and report.exit_code == 0


def test_a_batch_reads_the_same_queries_for_ten_rows_or_a_hundred():
    """The staff addresses once, then two reads a batch (members by address, taken
    usernames), never one a row; the INSERTs are as many as the database takes rows per
    statement."""

    def import_rows(n: int, start: int) -> list[str]:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        rows = "\n".join(f"q{i}@example.test,Q{i}" for i in range(start, start + n))
        with CaptureQueriesContext(connection) as queries:
            assert run("email,first_name\n" + rows + "\n").new == n
        return [q["sql"].split()[0] for q in queries if not q["sql"].startswith("INSERT")]

    few, many = import_rows(10, 0), import_rows(100, 100)
    assert few == many and few.count("SELECT") == 3


def test_an_invalid_row_never_stops_the_valid_ones():
    rows = ["ok1@example.test,One", "broken,Two", "ok2@example.test,Three", "ok1@example.test,Again"]
    report = run("email,first_name\n" + "\n".join(rows) + "\n")
    assert counts(report) == (2, 0, 0, 2) and report.exit_code == 1
    assert set(Member.objects.values_list("email", flat=True)) == {"ok1@example.test", "ok2@example.test"}


def test_a_dry_run_writes_nothing_and_counts_what_a_run_would_do(member):
    content = "email,first_name\nada@example.test,Augusta\nnew@example.test,New\nbad,Bad\n"
    dry = run(content, dry_run=True, list_name="Volunteers")
    assert counts(dry) == (1, 1, 0, 1) and dry.dry_run and dry.added_to_list == 2
    assert Member.objects.count() == 1 and not MailingList.objects.exists()
    member.refresh_from_db()
    assert member.first_name == "Ada"
    real = run(content, list_name="Volunteers")
    assert counts(real) == counts(dry) and real.added_to_list == 2


# --- usernames -------------------------------------------------------------------------------------------


def test_new_members_get_a_username_from_their_address_and_a_free_one_when_taken():
    MemberFactory(username="ann@example.test", email="someone@example.test")
    report = run("email\nAnn@example.test\nbob+news@example.test\nodd!name@example.test\n")
    assert report.new == 3
    usernames = dict(Member.objects.values_list("email", "username"))
    assert usernames["Ann@example.test"] == "ann@example.test-2"
    assert usernames["bob+news@example.test"] == "bob+news@example.test"
    assert usernames["odd!name@example.test"] == "oddname@example.test"


def test_a_username_of_another_member_or_of_an_earlier_row_is_invalid(member):
    report = run(
        "email,username\nnew@example.test,ada\nfirst@example.test,pick\nsecond@example.test,pick\n"
        "third@example.test,bad name\n"
    )
    assert counts(report) == (1, 0, 0, 3)
    found = reasons(report)
    assert found[2] == "username “ada” belongs to another member"
    assert found[4] == "username “pick” is already used by row 3"
    assert "not a valid username" in found[5]


def test_a_member_may_keep_or_change_their_own_username(member):
    report = run("email,username\nada@example.test,ada\n")
    assert counts(report) == (0, 0, 1, 0)
    report = run("email,username\nada@example.test,countess\n")
    assert counts(report) == (0, 1, 0, 0)
    member.refresh_from_db()
    assert member.username == "countess"


# --- cells -------------------------------------------------------------------------------------------------


def test_formulas_are_stored_as_text_and_the_exports_quote_is_taken_off():
    report = run("email,first_name,last_name\nf@example.test,'=HYPERLINK(\"x\"),=cmd|' /C calc'!A0\n")
    assert report.invalid == 0
    member = Member.objects.get(email="f@example.test")
    assert member.first_name == '=HYPERLINK("x")'
    assert member.last_name == "=cmd|' /C calc'!A0"


def test_a_name_with_a_line_break_is_refused_with_the_apis_words_and_spaces_are_tidied():
    report = run(
        'email,first_name,last_name\nl@example.test,"Anna\r\nMaria",x\nm@example.test,Mia,"  de la   Cruz "\n'
    )
    assert reasons(report) == {2: "first_name: must be a single line without control characters"}
    assert Member.objects.get(email="m@example.test").last_name == "de la Cruz"
    assert not Member.objects.filter(email="l@example.test").exists()


def test_a_name_with_control_characters_or_too_long_is_invalid():
    report = run(f"email,first_name,last_name\nc@example.test,Bell\x07,x\nd@example.test,x,{'y' * 151}\n")
    found = reasons(report)
    assert found[2] == "first_name: must be a single line without control characters"
    assert found[3] == "last_name: is longer than 150 characters"


def test_an_xlsx_file_reads_typed_cells():
    content = xlsx(
        ["Email", "First name", "Birthday", "Verified", "Active"],
        ["x@example.test", "Xena", date(1990, 5, 17), True, 1],
        ["y@example.test", '=CONCAT("Y","a")', None, 0, None],
        [None, None, None, None, None],
        ["bad address", 42, "2020-02-30", "maybe", None],
    )
    report = run(content, filename="members.xlsx")
    assert counts(report) == (2, 0, 0, 1)
    x = Member.objects.get(email="x@example.test")
    assert (x.birth_date, x.is_verified, x.is_active) == (date(1990, 5, 17), True, True)
    assert Member.objects.get(email="y@example.test").first_name == '=CONCAT("Y","a")'  # text, never run
    assert list(reasons(report)) == [5]  # the blank row 4 is skipped, the row numbers are the sheet's


# --- the mailing list, the rejected rows and the report -------------------------------------------------------


def test_the_imported_members_are_added_to_a_new_list(member):
    MemberFactory(username="old", email="old@example.test", first_name="Old")
    content = "email,first_name\nada@example.test,Augusta\nold@example.test,Old\nnew@example.test,N\nbad,B\n"
    report = run(content, list_name="  Spring   fair ")
    assert counts(report) == (1, 1, 1, 1) and report.list_created and report.added_to_list == 3
    spring = MailingList.objects.get(name="Spring fair")
    members = set(ListMembership.objects.filter(mailing_list=spring).values_list("member__email", flat=True))
    assert members == {"ada@example.test", "old@example.test", "new@example.test"}
    again = run(content, list_name="SPRING FAIR")
    assert not again.list_created and again.added_to_list == 0 and MailingList.objects.count() == 1


def test_the_imported_members_are_added_to_a_list_chosen_by_id(member):
    volunteers = MailingList.objects.create(name="Volunteers")
    report = run("email\nada@example.test\n", list_id=volunteers.pk)
    assert report.list_name == "Volunteers" and report.added_to_list == 1
    gone = run("email\nada@example.test\n", list_id=volunteers.pk + 100)
    assert "no longer exists" in gone.refused


def test_no_list_is_created_when_no_row_is_valid():
    report = run("email\nbroken\n", list_name="Empty")
    assert report.exit_code == 2 and not MailingList.objects.exists()


def test_the_rejected_rows_are_written_with_their_columns_row_and_reason():
    out = io.StringIO()
    report = run(
        "email,first_name,city\nok@example.test,Ok,Oslo\nnope,=cmd(),Bergen\nok@example.test,Twice\n",
        errors_out=out,
    )
    assert report.invalid == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["email", "first_name", "city", "row", "reason"]
    assert rows[1][:4] == ["nope", "'=cmd()", "Bergen", "3"]  # a spreadsheet will not run it
    assert "not a valid email" in rows[1][4]
    assert rows[2][:4] == ["ok@example.test", "Twice", "", "4"] and "duplicate of row 2" in rows[2][4]


def test_the_rejected_rows_file_has_its_header_when_no_row_is_rejected():
    out = io.StringIO()
    run("email\nok@example.test\n", errors_out=out)
    assert out.getvalue() == "email,row,reason\r\n"


def test_at_most_rejected_kept_rows_are_kept_in_the_report_and_all_are_written(monkeypatch):
    monkeypatch.setattr(importing, "REJECTED_KEPT", 3)
    out = io.StringIO()
    report = run("email\n" + "bad\n" * 10, errors_out=out)
    assert report.invalid == 10 and len(report.rejected) == 3
    assert len(out.getvalue().splitlines()) == 11


def test_progress_is_reported_after_each_batch(monkeypatch):
    monkeypatch.setattr(importing, "BATCH_SIZE", 4)
    calls = []
    rows = "\n".join(f"r{i}@example.test" for i in range(10))
    run("email\n" + rows + "\n", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 10), (4, 10), (8, 10), (10, 10)]


def test_the_exit_code_and_summary():
    assert ImportReport(new=1, updated=2, unchanged=1234).exit_code == 0
    assert ImportReport(new=1, invalid=1).exit_code == 1
    assert ImportReport(unchanged=1, invalid=1).exit_code == 1
    assert ImportReport(invalid=3).exit_code == 2
    assert ImportReport(refused="The file is empty.").exit_code == 2
    assert ImportReport(new=1, updated=2, unchanged=1234, invalid=0).summary() == (
        "1 new, 2 updated, 1,234 unchanged, 0 invalid"
    )


def test_a_member_created_meanwhile_is_updated_not_duplicated(monkeypatch):
    """Between the batch's check and its write someone adds the same address: the batch is
    planned again and updates that member."""
    real = importing._stored_by_key
    calls = []

    def racing(keys):
        calls.append(keys)
        if len(calls) == 1:
            MemberFactory(username="racer", email="race@example.test", first_name="Early")
            return {}
        return real(keys)

    monkeypatch.setattr(importing, "_stored_by_key", racing)
    report = run("email,first_name\nrace@example.test,Late\n")
    assert counts(report) == (0, 1, 0, 0) and len(calls) == 2
    assert Member.objects.get(email="race@example.test").first_name == "Late"


def test_the_first_row_table_finds_every_earlier_key():
    seen = importing._FirstSeen()
    for i in range(20_000):
        assert seen.first(f"member{i}@example.test", i + 2) == 0
    assert seen.first("member0@example.test", 99_999) == 2
    assert seen.first("member19999@example.test", 99_999) == 20_001
    assert len(seen.keys) == 1 << 16  # 12 bytes a key at most half full


def test_updates_write_every_changed_field_and_only_those(member):
    other = MemberFactory(username="bo", email="bo@example.test", first_name="Bo", is_verified=True)
    report = run(
        "email,username,first_name,middle_name,birth_date,is_verified,is_active\n"
        "ada@example.test,countess,Augusta,Ada,1815-12-10,yes,no\n"
        "bo@example.test,,,,1990-01-02,,\n"
    )
    assert counts(report) == (0, 2, 0, 0)
    member.refresh_from_db()
    other.refresh_from_db()
    assert (member.username, member.first_name, member.middle_name, member.last_name) == (
        "countess",
        "Augusta",
        "Ada",
        "Lovelace",
    )
    assert (member.birth_date, member.is_verified, member.is_active) == (date(1815, 12, 10), True, False)
    assert (other.username, other.first_name, other.birth_date, other.is_verified) == (
        "bo",
        "Bo",
        date(1990, 1, 2),
        True,
    )


def test_the_member_tally_stays_exact_through_an_import(member):
    from members.services import member_tally_repair

    run(
        "email,first_name,is_verified,is_active\nada@example.test,A,yes,no\n"
        + "".join(f"t{i}@example.test,T,{'yes' if i % 2 else 'no'},\n" for i in range(20))
    )
    assert member_tally_repair() is False  # the triggers counted every insert and update


def test_lookups_and_list_additions_go_by_chunks_and_miss_no_one(monkeypatch, member):
    monkeypatch.setattr(importing, "LOOKUP_CHUNK", 2)
    MemberFactory(username="m1", email="m1@example.test")
    MemberFactory(username="m2", email="m2@example.test")
    rows = (
        "ada@example.test,Augusta\nm1@example.test,\nm2@example.test,\nn1@example.test,\nn2@example.test,\n"
    )
    report = run("email,first_name\n" + rows, list_name="All")
    assert counts(report) == (2, 1, 2, 0) and report.added_to_list == 5
    assert ListMembership.objects.filter(mailing_list__name="All").count() == 5
