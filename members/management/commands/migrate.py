"""Django's `migrate`, without the statement limit of DATABASE_TIMEOUT: building an
index or rewriting a table of a million deliveries may take minutes, and a migration
cut off half-way is only rolled back and tried again at the next deployment."""

from __future__ import annotations

from typing import Any

from django.core.management.commands.migrate import Command as MigrateCommand

from common.db.limits import statements_unbounded


class Command(MigrateCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        with statements_unbounded(using=options["database"]):
            super().handle(*args, **options)
