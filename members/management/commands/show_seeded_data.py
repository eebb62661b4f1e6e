"""Print staff users, members and email bursts as aligned plain-text tables.

One query per table (recipient counts are annotated), plus one count per table
with --limit: the number of queries never grows with the data.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, QuerySet
from django.utils import timezone

from campaigns.models import EmailBurst
from members.models import Member

SUBJECT_WIDTH = 40
DEFAULT_LIMIT = 50
EMPTY_MESSAGE = "No data yet: run `python manage.py seed_database`"


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    total: int
    # Numbers read better right-aligned.
    right_aligned: frozenset[int] = frozenset()


def display_width(text: str) -> int:
    """Terminal columns, so that wide (CJK) and combining characters keep the columns straight."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def pad(text: str, width: int, *, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render(table: Table) -> list[str]:
    lines = [f"{table.title} ({table.total})"]
    if not table.rows:
        return [*lines, "  (none)"]
    widths = [
        max(display_width(cell) for cell in column) for column in zip(table.headers, *table.rows, strict=True)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = (pad(cell, widths[i], right=i in table.right_aligned) for i, cell in enumerate(cells))
        return " | ".join(padded).rstrip()

    lines += [line(table.headers), "-+-".join("-" * w for w in widths)]
    lines += [line(row) for row in table.rows]
    if table.total > len(table.rows):
        lines.append(f"... and {table.total - len(table.rows)} more (use --limit 0 to show all)")
    return lines


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def take(queryset: QuerySet, limit: int) -> tuple[list, int]:
    """The first `limit` rows (all if 0) and the total: one query, or two with a limit."""
    if not limit:
        rows = list(queryset)
        return rows, len(rows)
    return list(queryset[:limit]), queryset.count()


def staff_table(limit: int) -> Table:
    users, total = take(Member.objects.filter(is_staff=True).order_by("id"), limit)
    rows = [(str(u.pk), u.username, u.email, u.get_full_name() or "-") for u in users]
    return Table("Staff users", ("id", "username", "email", "name"), rows, total, frozenset({0}))


def members_table(limit: int) -> Table:
    members, total = take(Member.objects.filter(is_staff=False).order_by("id"), limit)
    rows = [
        (
            str(m.pk),
            m.username,
            m.email,
            m.get_full_name() or "-",
            yes_no(m.is_verified),
            yes_no(m.is_active),
        )
        for m in members
    ]
    headers = ("id", "username", "email", "name", "verified", "active")
    return Table("Members", headers, rows, total, frozenset({0}))


def bursts_table(limit: int) -> Table:
    queryset = EmailBurst.objects.annotate(recipient_count=Count("recipients", distinct=True)).order_by("id")
    bursts, total = take(queryset, limit)
    rows = [
        (
            str(b.pk),
            truncate(b.subject, SUBJECT_WIDTH),
            b.status,
            "all" if b.all_members else str(b.recipient_count),
            timezone.localtime(b.created_at).strftime("%Y-%m-%d %H:%M"),
        )
        for b in bursts
    ]
    headers = ("id", "subject", "status", "recipients", "created")
    return Table("Email bursts", headers, rows, total, frozenset({0, 3}))


class Command(BaseCommand):
    help = "Print the staff users, members and email bursts as tables."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit",
            type=int,
            default=DEFAULT_LIMIT,
            help=f"Rows per table at most (default {DEFAULT_LIMIT}; 0 shows every row).",
        )

    def handle(self, *args: Any, limit: int, **options: Any) -> None:
        if limit < 0:
            raise CommandError("--limit must be 0 (no limit) or more.")
        tables = [staff_table(limit), members_table(limit), bursts_table(limit)]
        if not any(table.total for table in tables):
            self.stdout.write(EMPTY_MESSAGE)
            return
        blocks = ["\n".join(render(table)) for table in tables]
        self.stdout.write("\n\n".join(blocks))
