"""The member tally (how many members per staff / active / subscribed / verified) is
kept by database triggers, so the dashboard and the member lists never count the
members: it equals a recount after every way of writing members, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from members import selectors
from members.models import Member, MemberTally
from members.services import member_tally_repair
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def kept() -> dict[tuple[bool, bool, bool, bool], int]:
    return {
        (t.is_staff, t.is_active, t.subscribed, t.is_verified): t.n for t in MemberTally.objects.all() if t.n
    }


def assert_tally_exact() -> None:
    assert kept() == selectors.member_tally_recount()


def test_it_counts_members_saved_one_by_one_in_bulk_and_by_raw_sql():
    MemberFactory(is_staff=True)
    MemberFactory.create_bulk(5, is_verified=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Member._meta.db_table} (password, is_superuser, username, first_name, middle_name,"
            " last_name, email, is_staff, is_active, is_verified, date_joined)"
            " VALUES ('!', %s, 'raw', '', '', '', 'raw@example.test', %s, %s, %s, %s)",
            [False, False, True, False, timezone.now()],
        )
    assert_tally_exact()
    assert selectors.member_count() == Member.objects.count() == 7
    assert selectors.member_count(is_staff=True) == 1
    assert selectors.member_count(is_staff=False) == 6


def test_it_follows_changes_of_the_counted_flags_and_ignores_the_others():
    ada, bob = MemberFactory(), MemberFactory()
    ada.unsubscribed_at = timezone.now()
    ada.save()
    Member.objects.filter(pk=bob.pk).update(is_active=False, is_verified=True)
    Member.objects.update(last_login=timezone.now(), first_name="Same")  # no counted flag moves
    assert_tally_exact()
    totals = selectors.member_totals()
    assert totals == {"members": 2, "subscribed": 0, "verified": 1, "staff": 0}


def test_it_follows_deletes():
    people = MemberFactory.create_bulk(4)
    people[0].delete()
    Member.objects.filter(pk__in=[p.pk for p in people[1:3]]).delete()
    assert_tally_exact()
    assert selectors.member_count() == 1


def test_repair_rebuilds_a_tally_edited_by_hand():
    MemberFactory.create_bulk(3)
    MemberTally.objects.update(n=42)
    assert member_tally_repair() is True
    assert_tally_exact()
    assert member_tally_repair() is False


def test_migrate_puts_back_triggers_that_a_table_rebuild_dropped(transactional_db):
    from django.core.management import call_command

    from members.tally import triggers_present, triggers_remove

    assert triggers_present(connection)
    triggers_remove(connection)  # what SQLite's copy-drop-rename of the table does
    MemberFactory.create_bulk(2)  # uncounted meanwhile
    call_command("migrate", verbosity=0)
    assert triggers_present(connection)
    assert_tally_exact()
    MemberFactory()
    assert_tally_exact()
