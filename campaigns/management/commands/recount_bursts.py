"""`python manage.py recount_bursts [--burst ID ...]`: recount the delivery counters
of bursts (and the dashboard's daily outcomes) from the deliveries, repair any that
differ, and say what changed."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from campaigns import services
from common.db import statements_unbounded


class Command(BaseCommand):
    help = (
        "Recount bursts' delivery counters and the daily outcomes from the deliveries, "
        "repair those that differ and print each change."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--burst", type=int, action="append", dest="bursts", help="only this burst (repeatable)"
        )

    def handle(self, *args, bursts: list[int] | None = None, **options) -> None:
        # Maintenance run by hand: recounting every delivery of a large deployment (and
        # waiting for a sending burst's row lock) may take longer than DATABASE_TIMEOUT.
        with statements_unbounded():
            changes = services.bursts_recount(burst_ids=bursts)
        for line in changes:
            self.stdout.write(line)
        if changes:
            self.stdout.write(self.style.WARNING(f"Repaired {len(changes)} counter(s)."))
        else:
            self.stdout.write(self.style.SUCCESS("Every counter equals its recount; nothing changed."))
