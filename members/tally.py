"""The database triggers that keep `MemberTally`: statement level on PostgreSQL (one
statement's rows counted at once; an UPDATE only counts rows whose counted flags
changed, so a login locks no tally row), row level on SQLite.

Installed by migration 0002 and again after every `migrate` (`members.apps`): a
later migration that rebuilds the member table on SQLite (copy, drop, rename)
drops its triggers with the old table.
"""

from __future__ import annotations

# The key of a member row: (is_staff, is_active, subscribed, is_verified).
PG_KEY = "{t}.is_staff, {t}.is_active, {t}.unsubscribed_at IS NULL, {t}.is_verified"
PG_CHANGED = (
    "(o.is_staff, o.is_active, o.unsubscribed_at IS NULL, o.is_verified) IS DISTINCT FROM "
    "(n.is_staff, n.is_active, n.unsubscribed_at IS NULL, n.is_verified)"
)
PG_UPSERT = (
    "INSERT INTO members_membertally (is_staff, is_active, subscribed, is_verified, n) "
    "SELECT a, b, c, d, sum(delta) FROM ({rows}) AS moved(a, b, c, d, delta) "
    "GROUP BY a, b, c, d ORDER BY a, b, c, d "
    "ON CONFLICT (is_staff, is_active, subscribed, is_verified) "
    "DO UPDATE SET n = members_membertally.n + excluded.n;"
)
POSTGRES = f"""
CREATE OR REPLACE FUNCTION members_tally_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {PG_UPSERT.format(rows="SELECT " + PG_KEY.format(t="n") + ", 1 FROM new_rows n")}
    ELSIF TG_OP = 'DELETE' THEN
        {PG_UPSERT.format(rows="SELECT " + PG_KEY.format(t="o") + ", -1 FROM old_rows o")}
    ELSE
        -- Only rows whose key changed: a login (last_login) locks no tally row.
        {PG_UPSERT.format(rows="SELECT " + PG_KEY.format(t="n") + ", 1 FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE " + PG_CHANGED + " UNION ALL SELECT " + PG_KEY.format(t="o") + ", -1 FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE " + PG_CHANGED)}
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER members_tally_insert AFTER INSERT ON members_member
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION members_tally_apply();
CREATE TRIGGER members_tally_delete AFTER DELETE ON members_member
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION members_tally_apply();
CREATE TRIGGER members_tally_update AFTER UPDATE ON members_member
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION members_tally_apply();
"""
POSTGRES_DROP = """
DROP TRIGGER IF EXISTS members_tally_insert ON members_member;
DROP TRIGGER IF EXISTS members_tally_delete ON members_member;
DROP TRIGGER IF EXISTS members_tally_update ON members_member;
DROP FUNCTION IF EXISTS members_tally_apply();
"""


def _sqlite_add(row: str, delta: str) -> str:
    key = f"{row}.is_staff, {row}.is_active, {row}.unsubscribed_at IS NULL, {row}.is_verified"
    where = (
        f"is_staff = {row}.is_staff AND is_active = {row}.is_active "
        f"AND subscribed = ({row}.unsubscribed_at IS NULL) AND is_verified = {row}.is_verified"
    )
    return (
        "INSERT OR IGNORE INTO members_membertally (is_staff, is_active, subscribed, is_verified, n) "
        f"VALUES ({key}, 0); UPDATE members_membertally SET n = n + ({delta}) WHERE {where};"
    )


SQLITE = [
    f"CREATE TRIGGER members_tally_insert AFTER INSERT ON members_member BEGIN {_sqlite_add('NEW', '1')} END;",
    f"CREATE TRIGGER members_tally_delete AFTER DELETE ON members_member BEGIN {_sqlite_add('OLD', '-1')} END;",
    "CREATE TRIGGER members_tally_update AFTER UPDATE OF is_staff, is_active, unsubscribed_at, is_verified "
    "ON members_member WHEN (OLD.is_staff, OLD.is_active, OLD.unsubscribed_at IS NULL, OLD.is_verified) "
    "<> (NEW.is_staff, NEW.is_active, NEW.unsubscribed_at IS NULL, NEW.is_verified) "
    f"BEGIN {_sqlite_add('OLD', '-1')} {_sqlite_add('NEW', '1')} END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS members_tally_insert;",
    "DROP TRIGGER IF EXISTS members_tally_delete;",
    "DROP TRIGGER IF EXISTS members_tally_update;",
]


def triggers_install(connection) -> None:
    """Create (or re-create) the tally's triggers on this database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRES_DROP)
            cursor.execute(POSTGRES)
        else:
            for statement in SQLITE_DROP + SQLITE:
                cursor.execute(statement)


def triggers_remove(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRES_DROP)
        else:
            for statement in SQLITE_DROP:
                cursor.execute(statement)


def triggers_present(connection) -> bool:
    names = {"members_tally_insert", "members_tally_delete", "members_tally_update"}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'members_member'::regclass AND NOT tgisinternal"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'members_member'"
            )
        return names <= {row[0] for row in cursor.fetchall()}


# --- mailing lists' member counts ---------------------------------------------------------------
# `MailingList.member_count` is kept by triggers on the membership table, the same way.

LIST_POSTGRES = """
CREATE OR REPLACE FUNCTION members_list_count_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE members_mailinglist l SET member_count = l.member_count + d.n
        FROM (SELECT list_id, count(*) AS n FROM new_rows GROUP BY list_id) d WHERE l.id = d.list_id;
    ELSE
        UPDATE members_mailinglist l SET member_count = l.member_count - d.n
        FROM (SELECT list_id, count(*) AS n FROM old_rows GROUP BY list_id) d WHERE l.id = d.list_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER members_list_count_insert AFTER INSERT ON members_listmembership
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION members_list_count_apply();
CREATE TRIGGER members_list_count_delete AFTER DELETE ON members_listmembership
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION members_list_count_apply();
"""
LIST_POSTGRES_DROP = """
DROP TRIGGER IF EXISTS members_list_count_insert ON members_listmembership;
DROP TRIGGER IF EXISTS members_list_count_delete ON members_listmembership;
DROP FUNCTION IF EXISTS members_list_count_apply();
"""
LIST_SQLITE = [
    "CREATE TRIGGER members_list_count_insert AFTER INSERT ON members_listmembership BEGIN "
    "UPDATE members_mailinglist SET member_count = member_count + 1 WHERE id = NEW.list_id; END;",
    "CREATE TRIGGER members_list_count_delete AFTER DELETE ON members_listmembership BEGIN "
    "UPDATE members_mailinglist SET member_count = member_count - 1 WHERE id = OLD.list_id; END;",
]
LIST_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS members_list_count_insert;",
    "DROP TRIGGER IF EXISTS members_list_count_delete;",
]
LIST_TRIGGERS = {"members_list_count_insert", "members_list_count_delete"}


def list_triggers_install(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(LIST_POSTGRES_DROP)
            cursor.execute(LIST_POSTGRES)
        else:
            for statement in LIST_SQLITE_DROP + LIST_SQLITE:
                cursor.execute(statement)


def list_triggers_remove(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(LIST_POSTGRES_DROP)
        else:
            for statement in LIST_SQLITE_DROP:
                cursor.execute(statement)


def list_triggers_present(connection) -> bool:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'members_listmembership'::regclass "
                "AND NOT tgisinternal"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'members_listmembership'"
            )
        return LIST_TRIGGERS <= {row[0] for row in cursor.fetchall()}
