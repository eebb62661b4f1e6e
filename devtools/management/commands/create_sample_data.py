"""`python manage.py create_sample_data`: a realistic data set for trying the system
(the logic is devtools.sample_data)."""

from __future__ import annotations

import random
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from devtools.sample_data import (
    DEFAULT_MEMBERS,
    MIN_MEMBERS,
    SEED,
    Summary,
    create_sample_data,
    delete_sample_data,
    sample_bursts,
    sample_members,
)


class Command(BaseCommand):
    help = (
        "Create a realistic sample data set: members, and draft, scheduled, paused, cancelled and sent "
        "bursts with deliveries in every status. Does nothing if sample data exists, unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--members",
            type=int,
            default=DEFAULT_MEMBERS,
            help=f"How many members to create (at least {MIN_MEMBERS}, default {DEFAULT_MEMBERS}).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Delete the existing sample members and bursts (with their deliveries) and create them again.",
        )

    def handle(self, *args: Any, members: int, force: bool, **options: Any) -> None:
        if members < MIN_MEMBERS:
            raise CommandError(f"--members must be at least {MIN_MEMBERS}, got {members}.")
        with transaction.atomic():
            found_members, found_bursts = sample_members().count(), sample_bursts().count()
            if (found_members or found_bursts) and not force:
                self.stdout.write(
                    self.style.WARNING(
                        f"Sample data already present ({found_members} members, {found_bursts} bursts): "
                        "nothing done. Use --force to replace it."
                    )
                )
                return
            if force:
                delete_sample_data()
            summary = create_sample_data(members, random.Random(SEED), timezone.now())
        self.report(summary, replaced=force and bool(found_members or found_bursts))

    def report(self, summary: Summary, *, replaced: bool) -> None:
        verb = "Replaced sample data" if replaced else "Created sample data"
        statuses = ", ".join(f"{status} {count}" for status, count in summary.statuses.items())
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb}: {summary.members} members, {summary.bursts} bursts, "
                f"{summary.lists} lists, {summary.segments} segments, "
                f"{summary.deliveries} deliveries ({statuses})."
            )
        )
