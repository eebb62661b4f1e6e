"""A realistic data set for trying the admin and the dashboard (`create_sample_data`).

Names come from fixed lists through a seeded RNG, so two databases built with
the same --members look alike; times are relative to now, so the dashboard's
"last 30 days" always has data. Sample members are recognised by their
addresses at SAMPLE_DOMAINS, sample bursts by their subjects: that is how a
re-run knows the data is already there and how --force replaces it.
"""

from __future__ import annotations

import datetime
import random
import unicodedata
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import F, Q, QuerySet

from campaigns import services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from members import services as member_services
from members.models import ListMembership, MailingList, Member, Segment, Suppression, SuppressionReason

SEED = 20240514
MIN_MEMBERS = 200
DEFAULT_MEMBERS = 250
STAFF_COUNT = 3
# Subdomains of the RFC 2606 reserved names: realistic-looking, never deliverable,
# and distinct from seed_database's addresses.
SAMPLE_DOMAINS = ("mail.example.com", "post.example.net", "inbox.example.org")

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Isabella", "Lucas",
    "Mia", "Mateo", "Charlotte", "Leo", "Ava", "Hugo", "Chloé", "Jakub", "Zoë", "Arjun",
    "Priya", "Kenji", "Aiko", "Mohammed", "Fatima", "Sven", "Ingrid", "Diego", "Lucía", "Tomasz",
    "Aoife", "Declan", "Nadia", "Yusuf", "Elena", "Marco", "Grace", "Samuel", "Hannah", "Oskar",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Garcia", "Martínez", "Müller", "Schmidt", "Dubois", "Rossi",
    "Nowak", "Kowalski", "Novák", "Jensen", "Andersson", "O'Brien", "Murphy", "Tanaka", "Sato", "Kim",
    "Patel", "Sharma", "Khan", "Haddad", "Okafor", "Mensah", "Silva", "Santos", "Fernández", "López",
    "Taylor", "Walker", "Hughes", "Clarke", "Bennett", "Moreau", "Lefèvre", "Van Dijk", "Costa", "Ivanova",
)  # fmt: skip
MIDDLE_NAMES = ("Anne", "James", "Marie", "Lee", "Rose", "John", "Grace", "Paul")

NOT_FOUND_ERRORS = (
    "550 5.1.1 <{email}>: Recipient address rejected: User unknown in virtual mailbox table",
    "550 5.1.1 The email account that you tried to reach does not exist.",
    "550 5.2.1 <{email}>: Mailbox disabled, not accepting messages",
    "553 5.1.3 <{email}>: Recipient address rejected: Bad recipient address syntax",
)
# (message, attempts): permanent rejections stop at once, 4xx give up after all tries.
FAILED_ERRORS = (
    ("554 5.7.1 Message rejected as spam by content filter", 1),
    ("550 5.7.1 Relaying denied: sender address not authorised for this domain", 1),
    ("451 4.7.1 Greylisted, please try again later; gave up after {max} attempts", None),
    ("452 4.2.2 Mailbox full; gave up after {max} attempts", None),
)
CONNECTION_ERRORS = (
    "Connection refused: [Errno 111] smtp.example.net:587",
    "Connection timed out after 30 seconds",
    "Server disconnected: Connection unexpectedly closed",
    "TLS handshake failed: certificate verify failed: hostname mismatch",
)
OTHER_ERRORS = (
    "Template error: Invalid filter: 'titel' at line 3",
    "Template error: Could not parse the remainder: '{{ member.first_name' from 'member.first_name'",
    "Encoding error: 'ascii' codec can't encode character '\\u2019' in position 41",
    "Attachment error: [Errno 2] No such file or directory: 'attachments/7/programme.pdf'",
)

NEWSLETTER_BODY = """\
Hello {{ member.first_name }},

Here is what happened at the club this month:

- The new season programme is online: twelve events, three of them new.
- Our volunteers repainted the community hall. Thank you all!
- The board is looking for a treasurer; reply to this message if you are interested.

You receive this newsletter as a member registered with {{ member.email }}.

Best regards,
The Emailer team
"""
NEWSLETTER_HTML = """\
<p>Hello {{ member.first_name }},</p>
<p>Here is what happened at the club this month:</p>
<ul>
  <li>The new season programme is online: <strong>twelve events</strong>, three of them new.</li>
  <li>Our volunteers repainted the community hall. Thank you all!</li>
  <li>The board is looking for a treasurer; reply to this message if you are interested.</li>
</ul>
<p>You receive this newsletter as a member registered with {{ member.email }}.</p>
<p>Best regards,<br>The Emailer team</p>
"""
FEES_BODY = """\
Dear {{ member.first_name }} {{ member.last_name }},

A friendly reminder that the annual membership fee (EUR 45) is due by the end of the month.
You can pay by bank transfer or at the front desk on Tuesday evenings.

If you have already paid, thank you, and please ignore this message.

The treasurer
"""
FAIR_BODY = """\
Hi {{ member.first_name }},

Thank you for making the spring fair such a success: over 400 visitors came by!
The photos are now online in the members' area.

See you soon,
The events team
"""
AGM_BODY = """\
Dear {{ member.first_name }},

The annual general meeting takes place on the first Thursday of next month at 19:30
in the community hall. On the agenda:

1. Report of the board and accounts for the year
2. Election of the treasurer
3. Membership fees for next year
4. Any other business

Please let us know whether you can attend by replying to this message.

On behalf of the board,
Olivia Bennett
"""
AGM_HTML = """\
<p>Dear {{ member.first_name }},</p>
<p>The <strong>annual general meeting</strong> takes place on the first Thursday of next month
at 19:30 in the community hall. On the agenda:</p>
<ol>
  <li>Report of the board and accounts for the year</li>
  <li>Election of the treasurer</li>
  <li>Membership fees for next year</li>
  <li>Any other business</li>
</ol>
<p>Please let us know whether you can attend by replying to this message.</p>
<p>On behalf of the board,<br>Olivia Bennett</p>
"""
WORKSHOP_BODY = """\
Hello {{ member.first_name }},

Places are still available for Saturday's first-aid workshop (09:30-12:30).
Bring comfortable clothes; coffee is on us.

Reply to this message to book your place.
"""
SUMMER_BODY = """\
Hello {{ member.first_name }},

The summer barbecue is back! Join us in the park behind the hall from 17:00.
Families welcome; vegetarian options available.

Cheers,
The events team
"""
RAFFLE_BODY = """\
Hello {{ member.first_name }},

The charity raffle has been postponed; a new date will follow in the next newsletter.
"""


@dataclass(frozen=True)
class SentBurstPlan:
    subject: str
    body: str
    days_ago: float
    html_body: str = ""
    # The one burst with deliveries in every status; addressed to chosen
    # recipients, so unsubscribed and inactive members show up as skipped.
    showcase: bool = False


# Oldest first: the not_found results of one burst suppress those members in the next ones.
SENT_BURSTS = (
    SentBurstPlan("Club newsletter #41: a new season begins", NEWSLETTER_BODY, 29, NEWSLETTER_HTML),
    SentBurstPlan("Reminder: annual membership fees are due", FEES_BODY, 22),
    SentBurstPlan("Thank you for the spring fair (photos inside)", FAIR_BODY, 15),
    SentBurstPlan("Club newsletter #42: volunteers wanted", NEWSLETTER_BODY, 8, NEWSLETTER_HTML),
    SentBurstPlan("Annual general meeting: agenda and RSVP", AGM_BODY, 2.5, AGM_HTML, showcase=True),
)
DRAFT_SUBJECT = "Club newsletter #43 (draft)"
SCHEDULED_SUBJECT = "Summer barbecue: save the date"
PAUSED_SUBJECT = "Last places for Saturday's first-aid workshop"
CANCELLED_SUBJECT = "Charity raffle postponed"
SAMPLE_SUBJECTS = (
    *(plan.subject for plan in SENT_BURSTS),
    DRAFT_SUBJECT,
    SCHEDULED_SUBJECT,
    PAUSED_SUBJECT,
    CANCELLED_SUBJECT,
)
PAUSE_REASON = (
    "Paused automatically after 5 connection errors in a row: "
    "Connection refused: [Errno 111] smtp.example.net:587"
)
# Sending is throttled to the provider's daily quota, so a burst to a few
# hundred members takes more than a day: this also spreads the dashboard's data.
SEND_WINDOW = datetime.timedelta(hours=30)


@dataclass
class Outcome:
    """A delivery about to be created, with the updated_at that auto_now would overwrite."""

    delivery: Delivery
    updated_at: datetime.datetime


# A few lists and segments, so that audiences can be tried (`create_sample_data`).
SAMPLE_LISTS = (
    ("Board", "The elected board: chair, treasurer, secretary.", 7),
    ("Volunteers", "Members who help at events.", 40),
    ("Newsletter readers", "Members who asked for the monthly newsletter.", 150),
)
SAMPLE_SEGMENTS = (
    (
        "Verified members",
        "Members who confirmed their address.",
        {"match": "all", "conditions": [{"field": "is_verified", "op": "is", "value": True}]},
    ),
    (
        "Birthdays this month",
        "For a birthday greeting.",
        {"match": "all", "conditions": [{"field": "birth_month", "op": "is", "value": None}]},
    ),
    (
        "Volunteers without a first name",
        "Whose records need completing.",
        {
            "match": "all",
            "conditions": [
                {"field": "list", "op": "in", "value": "Volunteers"},
                {"field": "first_name", "op": "empty"},
            ],
        },
    ),
)


@dataclass
class Summary:
    members: int = 0
    bursts: int = 0
    deliveries: int = 0
    lists: int = 0
    segments: int = 0
    statuses: dict[str, int] = field(default_factory=dict)


def sample_members() -> QuerySet[Member]:
    query = Q()
    for domain in SAMPLE_DOMAINS:
        query |= Q(email__iendswith=f"@{domain}")
    return Member.objects.filter(query)


def sample_bursts() -> QuerySet[EmailBurst]:
    return EmailBurst.objects.filter(subject__in=SAMPLE_SUBJECTS)


def sample_lists() -> QuerySet[MailingList]:
    return MailingList.objects.filter(name__in=[name for name, _d, _n in SAMPLE_LISTS])


def sample_segments() -> QuerySet[Segment]:
    return Segment.objects.filter(name__in=[name for name, _d, _r in SAMPLE_SEGMENTS])


def delete_sample_data() -> None:
    sample_bursts().delete()
    sample_segments().delete()
    # A list of that name someone filled with their own members stays.
    others = ListMembership.objects.exclude(member__in=sample_members())
    sample_lists().exclude(memberships__in=others).delete()
    # The sample's suppressed addresses (sample domains only).
    query = Q()
    for domain in SAMPLE_DOMAINS:
        query |= Q(email__endswith=f"@{domain}")
    Suppression.objects.filter(query).delete()
    # Deleting members runs the pre_delete signal that blanks their addresses on
    # deliveries of bursts that are not sample ones.
    sample_members().delete()
    services.bursts_recount()  # the daily outcomes of the deleted deliveries


def create_sample_data(count: int, rng: random.Random, now: datetime.datetime) -> Summary:
    members = create_members(count, rng, now)
    author = members[0]
    outcomes: list[Outcome] = []
    suppressed: set[int] = set()
    for plan in SENT_BURSTS:
        outcomes += create_sent_burst(plan, members, author, suppressed, rng, now)
    outcomes += create_paused_burst(members, author, rng, now)
    create_unsent_bursts(members, author, rng, now)
    save_outcomes(outcomes)
    suppress_not_found(outcomes)
    lists = create_lists(members, rng)
    segments = create_segments(lists, now)
    # Written as history, not sent: the counters are what a recount of them says.
    services.bursts_recount()
    statuses = {status.value: 0 for status in DeliveryStatus}
    for outcome in outcomes:
        statuses[outcome.delivery.status] += 1
    return Summary(
        members=len(members),
        bursts=sample_bursts().count(),
        deliveries=len(outcomes),
        statuses=statuses,
        lists=len(lists),
        segments=len(segments),
    )


def suppress_not_found(outcomes: list[Outcome]) -> None:
    """The addresses the sample's sends found not to exist are suppressed, as the
    engine does when it records a not_found: later bursts skip them."""
    addresses = {
        o.delivery.email.lower()
        for o in outcomes
        if o.delivery.status == DeliveryStatus.NOT_FOUND and o.delivery.email
    }
    Suppression.objects.bulk_create(
        [Suppression(email=email, reason=SuppressionReason.NOT_FOUND) for email in sorted(addresses)],
        ignore_conflicts=True,
    )


def create_lists(members: list[Member], rng: random.Random) -> dict[str, MailingList]:
    """The sample lists, each with a random choice of the sample members."""
    lists = {}
    for name, description, size in SAMPLE_LISTS:
        mailing_list = MailingList.objects.filter(name__iexact=name).first()
        if mailing_list is None:
            mailing_list = member_services.mailing_list_create(name=name, description=description)
        chosen = rng.sample(members, min(size, len(members)))
        member_services.list_members_add(list_id=mailing_list.pk, member_ids=[m.pk for m in chosen])
        lists[name] = mailing_list
    return lists


def create_segments(lists: dict[str, MailingList], now: datetime.datetime) -> list[Segment]:
    segments = []
    for name, description, rules in SAMPLE_SEGMENTS:
        conditions = []
        for condition in rules["conditions"]:
            condition = dict(condition)
            if condition["field"] == "list":
                condition["value"] = lists[condition["value"]].pk
            if condition["field"] == "birth_month":
                condition["value"] = now.month
            conditions.append(condition)
        rules = {"match": rules["match"], "conditions": conditions}
        if Segment.objects.filter(name__iexact=name).exists():
            continue  # someone's own segment of that name
        segments.append(member_services.segment_create(name=name, description=description, rules=rules))
    return segments


# --- members --------------------------------------------------------------------


def ascii_slug(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def unique_username(first: str, last: str, taken: set[str]) -> str:
    base = f"{ascii_slug(first)}.{ascii_slug(last)}"
    username, n = base, 1
    while username in taken:
        n += 1
        username = f"{base}{n}"
    taken.add(username)
    return username


def new_member(index: int, rng: random.Random, now: datetime.datetime, taken: set[str]) -> Member:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    username = unique_username(first, last, taken)
    member = Member(
        username=username,
        email=f"{username}@{SAMPLE_DOMAINS[index % len(SAMPLE_DOMAINS)]}",
        first_name=first,
        middle_name=rng.choice(MIDDLE_NAMES) if rng.random() < 0.15 else "",
        last_name=last,
        birth_date=datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(0, 56 * 365)),
        is_verified=True,
        is_staff=index < STAFF_COUNT,
        # Everyone joined before the oldest sent burst, so all of them were members then.
        date_joined=now - datetime.timedelta(days=rng.uniform(40, 3 * 365)),
    )
    # No password hashing: an unusable password is a random marker, which is
    # what makes 250 users cheap to create.
    member.set_unusable_password()
    return member


def mark_special_members(members: list[Member], rng: random.Random, now: datetime.datetime) -> None:
    """A few unsubscribed, inactive and unverified members, so filters and skips have something to show."""
    ordinary = range(STAFF_COUNT, len(members))
    unsubscribed_count, inactive_count = max(3, len(members) // 25), max(2, len(members) // 60)
    picked = rng.sample(ordinary, unsubscribed_count + inactive_count)
    for i in picked[:unsubscribed_count]:
        # From 3 to 60 days ago: before the showcase burst (so it skips them)
        # and after some older ones (so those still reached them).
        members[i].unsubscribed_at = now - datetime.timedelta(days=rng.uniform(3, 60))
    for i in picked[unsubscribed_count:]:
        members[i].is_active = False
    for i in rng.sample(ordinary, max(5, len(members) // 12)):
        members[i].is_verified = False


def create_members(count: int, rng: random.Random, now: datetime.datetime) -> list[Member]:
    taken = set(Member.objects.values_list("username", flat=True))
    members = [new_member(i, rng, now, taken) for i in range(count)]
    mark_special_members(members, rng, now)
    Member.objects.bulk_create(members, batch_size=500)
    # Reload for the primary keys, which not every backend returns from bulk_create.
    return list(sample_members().order_by("id"))


# --- bursts ---------------------------------------------------------------------


def skip_reason(member: Member, suppressed: set[int], started_at: datetime.datetime) -> str:
    if not member.is_active:
        return "Skipped: the member is inactive."
    if member.unsubscribed_at and member.unsubscribed_at <= started_at:
        return "Skipped: the member unsubscribed."
    if member.pk in suppressed:
        return "Skipped: suppressed, the last message to this address was not found."
    return ""


def pick_status(rng: random.Random) -> str:
    return rng.choices(
        (
            DeliveryStatus.SENT,
            DeliveryStatus.NOT_FOUND,
            DeliveryStatus.FAILED,
            DeliveryStatus.CONNECTION_ERROR,
            DeliveryStatus.OTHER_ERROR,
        ),
        weights=(90, 3, 3, 2, 2),
    )[0]


def statuses_for(count: int, rng: random.Random, *, showcase: bool) -> list[str]:
    statuses = [pick_status(rng) for _ in range(count)]
    if showcase:
        # Every status appears here, so that the report and its filters have each one to
        # show; two pending rows stand for messages a stopped worker left behind.
        forced = [
            DeliveryStatus.NOT_FOUND,
            DeliveryStatus.FAILED,
            DeliveryStatus.CONNECTION_ERROR,
            DeliveryStatus.OTHER_ERROR,
            DeliveryStatus.PENDING,
            DeliveryStatus.PENDING,
        ]
        for position, status in zip(rng.sample(range(count), len(forced)), forced, strict=True):
            statuses[position] = status
    return statuses


def outcome_for(
    burst: EmailBurst, member: Member, status: str, when: datetime.datetime, rng: random.Random
) -> Outcome:
    """One delivery with attempts and error text consistent with its status."""
    max_attempts = settings.EMAIL_MAX_ATTEMPTS
    # 60 s, then doubling: the whole retry schedule of a delivery that used every attempt.
    retry_span = datetime.timedelta(seconds=settings.EMAIL_RETRY_DELAY * (2 ** (max_attempts - 1) - 1))
    delivery = Delivery(burst=burst, member=member, email=member.email, status=status)
    finished = when
    if status == DeliveryStatus.SENT:
        delivery.attempts = rng.choices((1, 2, 3), weights=(92, 6, 2))[0]
        finished = when + datetime.timedelta(seconds=settings.EMAIL_RETRY_DELAY * (delivery.attempts - 1))
        delivery.sent_at = finished
    elif status == DeliveryStatus.NOT_FOUND:
        delivery.attempts = 1
        delivery.error_message = rng.choice(NOT_FOUND_ERRORS).format(email=member.email)
    elif status == DeliveryStatus.FAILED:
        message, attempts = rng.choice(FAILED_ERRORS)
        delivery.attempts = attempts or max_attempts
        delivery.error_message = message.format(max=max_attempts)
        finished = when + (retry_span if attempts is None else datetime.timedelta())
    elif status == DeliveryStatus.CONNECTION_ERROR:
        delivery.attempts = max_attempts
        delivery.error_message = rng.choice(CONNECTION_ERRORS)
        finished = when + retry_span
    elif status == DeliveryStatus.OTHER_ERROR:
        # Rendering and attachment failures happen before any SMTP try.
        delivery.error_message = rng.choice(OTHER_ERRORS)
    return Outcome(delivery, updated_at=finished)


def create_sent_burst(
    plan: SentBurstPlan,
    members: list[Member],
    author: Member,
    suppressed: set[int],
    rng: random.Random,
    now: datetime.datetime,
) -> list[Outcome]:
    started_at = now - datetime.timedelta(days=plan.days_ago)
    burst = EmailBurst.objects.create(
        subject=plan.subject,
        body=plan.body,
        html_body=plan.html_body,
        from_name="The Emailer club",
        all_members=not plan.showcase,
        status=BurstStatus.SENT,
        started_at=started_at,
        deliveries_ready=True,
        created_by=author,
    )
    if plan.showcase:
        burst.recipients.set(members)
        recipients = members
    else:
        # "All members" means active and subscribed when sending started.
        recipients = [
            m for m in members if m.is_active and not (m.unsubscribed_at and m.unsubscribed_at <= started_at)
        ]
    outcomes = sent_burst_outcomes(burst, recipients, suppressed, rng, showcase=plan.showcase)
    finished_at = max(o.updated_at for o in outcomes) + datetime.timedelta(minutes=1)
    EmailBurst.objects.filter(pk=burst.pk).update(
        created_at=started_at - datetime.timedelta(days=rng.uniform(1, 4)),
        finished_at=finished_at,
        updated_at=finished_at,
        deliveries_ready=True,
    )
    suppressed.update(o.delivery.member.pk for o in outcomes if o.delivery.status == DeliveryStatus.NOT_FOUND)
    return outcomes


def sent_burst_outcomes(
    burst: EmailBurst, recipients: list[Member], suppressed: set[int], rng: random.Random, *, showcase: bool
) -> list[Outcome]:
    started_at = burst.started_at
    reasons = {m.pk: skip_reason(m, suppressed, started_at) for m in recipients}
    to_send = [m for m in recipients if not reasons[m.pk]]
    outcomes = []
    for position, (member, status) in enumerate(
        zip(to_send, statuses_for(len(to_send), rng, showcase=showcase), strict=True)
    ):
        when = (
            started_at
            + SEND_WINDOW * position / len(to_send)
            + datetime.timedelta(seconds=rng.uniform(0, 30))
        )
        outcomes.append(outcome_for(burst, member, status, when, rng))
    for member in recipients:
        if reasons[member.pk]:
            skipped = Delivery(
                burst=burst,
                member=member,
                email=member.email,
                status=DeliveryStatus.SKIPPED,
                error_message=reasons[member.pk],
            )
            outcomes.append(Outcome(skipped, updated_at=started_at))
    return outcomes


def create_paused_burst(
    members: list[Member], author: Member, rng: random.Random, now: datetime.datetime
) -> list[Outcome]:
    started_at = now - datetime.timedelta(hours=3)
    burst = EmailBurst.objects.create(
        subject=PAUSED_SUBJECT,
        body=WORKSHOP_BODY,
        from_name="The Emailer club",
        reply_to="events@example.org",
        status=BurstStatus.PAUSED,
        pause_reason=PAUSE_REASON,
        started_at=started_at,
        deliveries_ready=True,
        created_by=author,
    )
    eligible = [m for m in members if m.is_active and m.unsubscribed_at is None and m.is_verified]
    recipients = rng.sample(eligible, min(80, len(eligible)))
    burst.recipients.set(recipients)
    done = len(recipients) * 3 // 5
    outcomes = []
    for position, member in enumerate(recipients):
        when = started_at + datetime.timedelta(seconds=20 * position)
        # The first ones went out; the last few sends before the pause hit the
        # refused connections; the rest wait for a resume.
        if position < done - 3:
            outcomes.append(outcome_for(burst, member, DeliveryStatus.SENT, when, rng))
        elif position < done:
            outcomes.append(outcome_for(burst, member, DeliveryStatus.CONNECTION_ERROR, when, rng))
        else:
            outcomes.append(
                Outcome(Delivery(burst=burst, member=member, email=member.email), updated_at=started_at)
            )
    paused_at = max(o.updated_at for o in outcomes)
    # Its deliveries all exist: resuming it sends the pending ones, nothing more.
    EmailBurst.objects.filter(pk=burst.pk).update(
        created_at=started_at - datetime.timedelta(hours=20), updated_at=paused_at, deliveries_ready=True
    )
    return outcomes


def create_unsent_bursts(
    members: list[Member], author: Member, rng: random.Random, now: datetime.datetime
) -> None:
    verified = [m for m in members if m.is_verified and m.is_active and m.unsubscribed_at is None]
    draft = EmailBurst.objects.create(
        subject=DRAFT_SUBJECT,
        body=NEWSLETTER_BODY,
        html_body=NEWSLETTER_HTML,
        from_name="The Emailer club",
        created_by=author,
    )
    # A draft tried on a handful of people first, as editors do.
    draft.recipients.set(rng.sample(verified, 12))
    in_three_days_at_9 = (now + datetime.timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    EmailBurst.objects.create(
        subject=SCHEDULED_SUBJECT,
        body=SUMMER_BODY,
        from_name="The Emailer club",
        all_members=True,
        status=BurstStatus.SCHEDULED,
        scheduled_at=in_three_days_at_9,
        created_by=author,
    )
    EmailBurst.objects.create(
        subject=CANCELLED_SUBJECT,
        body=RAFFLE_BODY,
        all_members=True,
        status=BurstStatus.CANCELLED,
        scheduled_at=now - datetime.timedelta(days=5),
        created_by=author,
    )


def save_outcomes(outcomes: list[Outcome]) -> None:
    """Create the deliveries, then give them the times the dashboard charts.

    auto_now and auto_now_add stamp every row with the current time, on
    bulk_create too. A queryset update leaves them alone, but bulk_update's
    CASE per row is slow, so each row's updated_at rides in next_attempt_at,
    a column the engine reads for pending rows only, and one UPDATE moves it
    across (SQL evaluates the right-hand sides on the old row).
    """
    for outcome in outcomes:
        outcome.delivery.next_attempt_at = outcome.updated_at
    deliveries = Delivery.objects.bulk_create([o.delivery for o in outcomes], batch_size=500)
    bursts = {d.burst for d in deliveries}
    Delivery.objects.filter(burst__in=bursts).update(updated_at=F("next_attempt_at"), next_attempt_at=None)
    for burst in bursts:
        # Deliveries are created when sending starts.
        Delivery.objects.filter(burst=burst).update(created_at=burst.started_at)
