import os
import secrets

from django.core.management import call_command
from django.core.management.base import BaseCommand

from campaigns.models import EmailBurst
from members.models import Member

DEMO_USERNAME = "admin"
# `make run` runs with DEBUG=1; other commands need it too (README, "Set up").
MANAGE = "DEBUG=1 .venv/bin/python manage.py"


class Command(BaseCommand):
    help = (
        "First-run set-up for `make run`: a demo superuser (once, credentials printed) "
        "and the seed data when there are no bursts yet."
    )

    def handle(self, *args, **options) -> None:
        self._ensure_superuser()
        if not EmailBurst.objects.exists():
            call_command("seed_database", stdout=self.stdout)

    def _ensure_superuser(self) -> None:
        if Member.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                f"A superuser exists already. Forgot the password? {MANAGE} changepassword {DEMO_USERNAME}"
            )
            return
        password = secrets.token_urlsafe(12)
        Member.objects.create_superuser(username=DEMO_USERNAME, email="admin@localhost", password=password)
        bar = "=" * 60
        self.stdout.write(
            self.style.SUCCESS(
                f"{bar}\nDemo superuser created (shown only this once):\n"
                f"  username: {DEMO_USERNAME}\n  password: {password}\n"
                f"  log in at http://{os.environ.get('RUN_ADDR', '127.0.0.1:8000')}/admin/\n"
                f"Other management commands: {MANAGE} <command>\n{bar}"
            )
        )
