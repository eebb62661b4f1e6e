"""Seed a small, fixed cast: 2 staff users, 10 members and 2 draft bursts.

Every row has a fixed natural key (username, burst subject), so a second run
finds everything in place and adds nothing. No superuser: that is `make run`'s job.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Q

from campaigns.models import BurstStatus, EmailBurst
from members.models import Member


@dataclass(frozen=True)
class Person:
    username: str
    email: str
    first_name: str
    last_name: str
    birth_date: datetime.date
    middle_name: str = ""
    is_verified: bool = True


STAFF: tuple[Person, ...] = (
    Person("olivia.bennett", "olivia.bennett@example.org", "Olivia", "Bennett", datetime.date(1984, 3, 12)),
    Person(
        "marcus.okafor", "marcus.okafor@example.org", "Marcus", "Okafor", datetime.date(1990, 11, 2), "Chidi"
    ),
)

MEMBERS: tuple[Person, ...] = (
    Person("amelia.hart", "amelia.hart@example.com", "Amelia", "Hart", datetime.date(1979, 6, 24)),
    Person("daniel.novak", "daniel.novak@example.net", "Daniel", "Novák", datetime.date(1988, 1, 17)),
    Person(
        "sofia.martinez",
        "sofia.martinez@example.org",
        "Sofía",
        "Martínez",
        datetime.date(1995, 9, 5),
        "Isabel",
    ),
    Person("liam.oconnor", "liam.oconnor@example.com", "Liam", "O'Connor", datetime.date(1972, 12, 30)),
    Person(
        "hannah.schmidt",
        "hannah.schmidt@example.net",
        "Hannah",
        "Schmidt",
        datetime.date(2001, 4, 8),
        is_verified=False,
    ),
    Person("noah.kim", "noah.kim@example.org", "Noah", "Kim", datetime.date(1993, 7, 19), "Jae"),
    Person(
        "chloe.dubois",
        "chloe.dubois@example.com",
        "Chloé",
        "Dubois",
        datetime.date(1986, 2, 27),
        is_verified=False,
    ),
    Person("ethan.walker", "ethan.walker@example.net", "Ethan", "Walker", datetime.date(1965, 10, 11)),
    Person(
        "priya.raman",
        "priya.raman@example.org",
        "Priya",
        "Raman",
        datetime.date(1998, 8, 3),
        is_verified=False,
    ),
    Person("lucas.ferreira", "lucas.ferreira@example.com", "Lucas", "Ferreira", datetime.date(1981, 5, 14)),
)

# The chosen-recipients burst goes to these seeded members.
CHOSEN_RECIPIENTS = ("amelia.hart", "daniel.novak", "sofia.martinez", "noah.kim", "lucas.ferreira")

WORKSHOP_SUBJECT = "Invitation: spring volunteer workshop on 14 May"
WORKSHOP_BODY = """\
Hello {{ member.first_name }},

You are warmly invited to our spring volunteer workshop on Saturday 14 May, 10:00-13:00,
in the community hall. We will plan the summer events and share coffee and pastries.

Please reply to this message if you can make it, so we can plan the seating.

See you there,
Olivia Bennett
"""

NEWSLETTER_SUBJECT = "Our monthly newsletter: new season, new faces"
NEWSLETTER_BODY = """\
Dear {{ member.first_name }} {{ member.last_name }},

Welcome to this month's newsletter. Highlights:

- The new season programme is online.
- Ten new members joined us last month: say hello at the next meetup.
- Annual fees are due by the end of the month.

You receive this message as a member registered with {{ member.email }}.

Best regards,
The Emailer team
"""
NEWSLETTER_HTML = """\
<p>Dear {{ member.first_name }} {{ member.last_name }},</p>
<p>Welcome to this month's newsletter. Highlights:</p>
<ul>
  <li>The new season programme is online.</li>
  <li>Ten new members joined us last month: say hello at the next meetup.</li>
  <li>Annual fees are due by the <strong>end of the month</strong>.</li>
</ul>
<p>You receive this message as a member registered with {{ member.email }}.</p>
<p>Best regards,<br>The Emailer team</p>
"""


@dataclass
class Tally:
    created: int = 0
    present: int = 0


class Command(BaseCommand):
    help = "Create 2 staff users, 10 members and 2 draft email bursts; a second run adds nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            help="Password for the seeded staff users (created ones only). "
            "Without it every seeded user gets an unusable password.",
        )

    @transaction.atomic
    def handle(self, *args: Any, password: str | None = None, **options: Any) -> None:
        staff = seed_people(STAFF, is_staff=True, password=password)
        members = seed_people(MEMBERS, is_staff=False, password=None)
        bursts = seed_bursts()
        self.report(staff, members, bursts, password_ignored=bool(password) and staff.present > 0)

    def report(self, staff: Tally, members: Tally, bursts: Tally, *, password_ignored: bool) -> None:
        if staff.created + members.created + bursts.created == 0:
            self.stdout.write("Nothing to do: already seeded.")
        else:
            created = f"Created {staff.created} staff, {members.created} members, {bursts.created} bursts"
            if staff.present + members.present + bursts.present:
                created += (
                    f" (already present: {staff.present} staff, {members.present} members, "
                    f"{bursts.present} bursts)"
                )
            self.stdout.write(self.style.SUCCESS(created + "."))
        if password_ignored:
            # Changing the password of an existing account behind the owner's
            # back would be a surprise; changepassword is the tool for that.
            self.stdout.write(
                self.style.WARNING(
                    "--password applies to newly created staff only; use `manage.py changepassword` "
                    "for existing ones."
                )
            )


def seed_people(people: tuple[Person, ...], *, is_staff: bool, password: str | None) -> Tally:
    tally = Tally()
    for person in people:
        # The email is unique too: a row holding either key counts as present
        # rather than crashing on the constraint.
        if Member.objects.filter(Q(username=person.username) | Q(email__iexact=person.email)).exists():
            tally.present += 1
            continue
        user = Member(
            username=person.username,
            email=person.email,
            first_name=person.first_name,
            middle_name=person.middle_name,
            last_name=person.last_name,
            birth_date=person.birth_date,
            is_verified=person.is_verified,
            is_staff=is_staff,
            is_superuser=False,
        )
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        if is_staff:
            grant_staff_permissions(user)
        tally.created += 1
    return tally


def grant_staff_permissions(user: Member) -> None:
    # Staff without permissions see an empty admin. The first staff user runs
    # campaigns; the second may only look, to try the admin as a reader too.
    perms = Permission.objects.filter(content_type__app_label__in=["campaigns", "members"])
    if user.username != STAFF[0].username:
        perms = perms.filter(codename__startswith="view_")
    user.user_permissions.set(perms)


def seed_bursts() -> Tally:
    tally = Tally()
    author = Member.objects.filter(username=STAFF[0].username).first()
    workshop, created = EmailBurst.objects.get_or_create(
        subject=WORKSHOP_SUBJECT,
        defaults={"body": WORKSHOP_BODY, "status": BurstStatus.DRAFT, "created_by": author},
    )
    if created:
        workshop.recipients.set(Member.objects.filter(username__in=CHOSEN_RECIPIENTS))
    tally.created += created
    tally.present += not created

    _, created = EmailBurst.objects.get_or_create(
        subject=NEWSLETTER_SUBJECT,
        defaults={
            "body": NEWSLETTER_BODY,
            "html_body": NEWSLETTER_HTML,
            "all_members": True,
            "status": BurstStatus.DRAFT,
            "created_by": author,
            "from_name": "Emailer newsletter",
        },
    )
    tally.created += created
    tally.present += not created
    return tally
