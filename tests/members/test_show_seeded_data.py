from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import EmailBurst
from members.models import Member

pytestmark = pytest.mark.django_db


def show(*args: str) -> str:
    out = StringIO()
    call_command("show_seeded_data", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def seeded() -> None:
    call_command("seed_database", stdout=StringIO())


def tables(output: str) -> dict[str, list[str]]:
    """Each table's lines (header, separator, rows), by its title without the count."""
    result = {}
    for block in output.strip().split("\n\n"):
        title, *lines = block.splitlines()
        result[title.rsplit(" (", 1)[0]] = lines
    return result


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split(" | ")]


def offsets(line: str, char: str) -> list[int]:
    return [i for i, c in enumerate(line) if c == char]


def test_it_says_how_to_seed_an_empty_database() -> None:
    assert show().strip() == "No data yet: run `python manage.py seed_database`"


def test_it_prints_the_three_tables_with_their_counts(seeded) -> None:
    output = show()

    assert "Staff users (2)" in output
    assert "Members (10)" in output
    assert "Email bursts (2)" in output


def test_the_tables_list_the_seeded_users_and_bursts(seeded) -> None:
    found = tables(show())

    staff = "\n".join(found["Staff users"])
    members = "\n".join(found["Members"])
    for user in Member.objects.all():
        assert user.username in (staff if user.is_staff else members)
        assert user.username not in (members if user.is_staff else staff)
    bursts = "\n".join(found["Email bursts"])
    for burst in EmailBurst.objects.all():
        assert burst.subject[:30] in bursts


def test_the_headers_are_the_expected_columns(seeded) -> None:
    found = tables(show())

    assert cells(found["Staff users"][0]) == ["id", "username", "email", "name"]
    assert cells(found["Members"][0]) == [
        "id",
        "username",
        "email",
        "name",
        "verified",
        "active",
    ]
    assert cells(found["Email bursts"][0]) == [
        "id",
        "subject",
        "status",
        "recipients",
        "created",
    ]


def test_every_row_has_its_column_separators_at_the_header_offsets(seeded) -> None:
    for title, (header, separator, *rows) in tables(show()).items():
        expected = offsets(header, "|")
        assert expected, title
        assert offsets(separator, "+") == expected, title
        assert set(separator) == {"-", "+"}, title
        for row in rows:
            assert offsets(row, "|") == expected, (title, row)


def test_bursts_show_chosen_recipient_counts_or_all(seeded) -> None:
    _, _, *rows = tables(show())["Email bursts"]
    recipients = sorted(cells(row)[3] for row in rows)

    chosen = EmailBurst.objects.get(all_members=False).recipients.count()
    assert recipients == sorted([str(chosen), "all"])


def test_long_subjects_are_truncated(seeded) -> None:
    EmailBurst.objects.create(subject="A" * 120, body="x")

    _, _, *rows = tables(show())["Email bursts"]

    subject = cells(rows[-1])[1]
    assert subject == "A" * 39 + "…"


def test_members_show_verified_and_active(seeded) -> None:
    Member.objects.filter(username="ethan.walker").update(is_active=False)

    _, _, *rows = tables(show())["Members"]

    flags = {cells(row)[1]: cells(row)[4:] for row in rows}
    assert flags["ethan.walker"] == ["yes", "no"]
    assert flags["hannah.schmidt"] == ["no", "yes"]


def test_limit_cuts_long_tables_and_says_how_many_more(seeded) -> None:
    found = tables(show("--limit", "3"))

    _, _, *rows = found["Members"]
    assert len(rows) == 4
    assert rows[-1] == "... and 7 more (use --limit 0 to show all)"


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(CommandError):
        show("--limit", "-1")


def count_queries(*args: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        show(*args)
    return len(queries)


@pytest.mark.parametrize("limit", ["0", "5"])
def test_the_number_of_queries_does_not_grow_with_the_data(seeded, limit: str) -> None:
    small = count_queries("--limit", limit)
    members = Member.objects.bulk_create(
        Member(username=f"extra{i}", email=f"extra{i}@example.org", is_staff=i % 5 == 0) for i in range(30)
    )
    for i in range(5):
        burst = EmailBurst.objects.create(subject=f"Extra burst {i}", body="Hi {{ member.first_name }}")
        burst.recipients.set(members[i:])

    assert count_queries("--limit", limit) == small
