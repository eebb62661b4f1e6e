"""Burst services: the only way bursts change.

The admin, the API and the huey tasks all call these keyword-only functions.
Every change of a burst's status goes through `burst_transition`, on the locked
row, which checks the move against `campaigns.states.BURST_TRANSITIONS`. The
sending engine reports what a chunk did; `chunk_process` decides what follows.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import EmptyResultSet, ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Lower, TruncDate
from django.urls import reverse
from django.utils import timezone

from campaigns import selectors
from campaigns.engine import mime, recording
from campaigns.engine import tokens as engine_tokens
from campaigns.engine.chunk import DONE, ChunkResult, chunk_send
from campaigns.engine.claiming import CANCELLED, release_leftovers
from campaigns.engine.recovery import journals_replay
from campaigns.engine.smtp import SmtpSession
from campaigns.models import (
    MAIL_EVENT_RAW_LIMIT,
    MAIL_EVENT_RAW_MARKER,
    BurstStatus,
    DailyOutcome,
    Delivery,
    DeliveryStatus,
    EmailAttachment,
    EmailBurst,
    MailEvent,
    MailEventKind,
    MatchedBy,
    counter_field,
)
from campaigns.states import BurstAction, burst_action_target
from campaigns.templating import TemplateProblem
from campaigns.validation import burst_validate
from common.errors import (
    Conflict,
    Forbidden,
    IllegalState,
    InvalidInput,
    NotFound,
    ServiceError,
    ServiceUnavailable,
    TooLarge,
)
from members.models import MailingList, Member, Segment, Suppression, SuppressionReason
from members.services import members_unsubscribe

# Bursts up to this many recipients get their deliveries created in the request;
# larger ones in a task so that the caller returns at once.
INLINE_DELIVERY_LIMIT = 1000
# Deliveries are created this many recipients per statement; the first batch is
# small, so that the first chunk can start at once.
FIRST_BATCH = 1000
CREATE_BATCH = 50_000
RETRYABLE_STATUSES = frozenset(
    {DeliveryStatus.CONNECTION_ERROR, DeliveryStatus.FAILED, DeliveryStatus.OTHER_ERROR}
)
DEFAULT_RETRY_STATUSES = (DeliveryStatus.CONNECTION_ERROR, DeliveryStatus.FAILED)
SEND_PERMISSION = "campaigns.send_emailburst"
# A schedule further ahead is refused: nobody means it, and far enough ahead it
# cannot be stored (beyond the year 9999 in UTC).
SCHEDULE_MAX_YEARS = 5


# --- validation -------------------------------------------------------------------------


def _valid_address(field_name: str, value: str) -> str:
    """Validate, and return the address in the ASCII form headers and SMTP need."""
    try:
        EmailValidator()(value)
    except ValidationError:
        raise InvalidInput(f"{field_name}: enter a valid email address", field=field_name) from None
    local, _, domain = value.rpartition("@")
    if not local.isascii():
        raise InvalidInput(f"{field_name}: the part before @ must be ASCII", field=field_name)
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise InvalidInput(f"{field_name}: the domain is not a valid domain name", field=field_name) from None


def schedule_limit(*, now: datetime) -> datetime:
    """The latest time a burst may be scheduled for: SCHEDULE_MAX_YEARS after now."""
    try:
        return now.replace(year=now.year + SCHEDULE_MAX_YEARS)
    except ValueError:  # 29 February, and the target year is not a leap year
        return now.replace(year=now.year + SCHEDULE_MAX_YEARS, day=28)


def send_at_check(*, send_at: datetime, field_name: str = "send_at") -> datetime:
    """Refuse a schedule time that is naive, cannot be held once converted to UTC,
    is past, or is more than SCHEDULE_MAX_YEARS ahead; return it in UTC.

    `9999-12-31T23:30:00-05:00` is year 10000 in UTC: SQLite's adapter cannot
    convert it and PostgreSQL stores it, after which every list reading the row fails.
    """
    try:
        if send_at.utcoffset() is None:
            raise InvalidInput(f"{field_name} must include a time zone", field=field_name)
        in_utc = send_at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(
            f"{field_name} is out of range: in UTC it must fall between the years 1 and 9999",
            field=field_name,
        ) from None
    now = timezone.now()
    if in_utc <= now:
        raise InvalidInput(f"{field_name} must be in the future", field=field_name)
    limit = schedule_limit(now=now)
    if in_utc > limit:
        raise InvalidInput(
            f"{field_name} must be at most {SCHEDULE_MAX_YEARS} years ahead "
            f"(until {limit:%Y-%m-%d %H:%M} UTC)",
            field=field_name,
        )
    return in_utc


def _check_recipient_ids(ids: Sequence[int]) -> list[int]:
    wanted = sorted(set(ids))
    found = set(Member.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise InvalidInput(f"unknown member ids: {', '.join(map(str, unknown))}", field="recipients")
    return wanted


# --- create, update, delete -------------------------------------------------------------------


def _name(value: str) -> str:
    """A burst's name: one line, at most 200 characters."""
    value = " ".join((value or "").split())
    if len(value) > 200:
        raise InvalidInput("name must be at most 200 characters", field="name")
    return value


def burst_create(
    *,
    subject: str,
    body: str,
    html_body: str = "",
    sender: str = "",
    from_name: str = "",
    reply_to: str = "",
    recipient_ids: Sequence[int] = (),
    all_members: bool = False,
    created_by: Member | None = None,
    name: str = "",
    lists: Sequence[int] = (),
    segments: Sequence[int] = (),
    exclude_lists: Sequence[int] = (),
    exclude_segments: Sequence[int] = (),
) -> EmailBurst:
    name = _name(name)
    audience = _audience_check(
        all_members=all_members,
        lists=lists,
        segments=segments,
        exclude_lists=exclude_lists,
        exclude_segments=exclude_segments,
    )
    burst_validate(subject=subject, body=body, html_body=html_body, from_name=from_name)
    sender = _valid_address("sender", sender or settings.SENDER_EMAIL)
    if reply_to:
        reply_to = _valid_address("reply_to", reply_to)
    ids = _check_recipient_ids(recipient_ids)
    with transaction.atomic():
        burst = EmailBurst.objects.create(
            name=name,
            subject=subject,
            body=body,
            html_body=html_body,
            sender=sender,
            from_name=from_name,
            reply_to=reply_to,
            all_members=all_members,
            created_by=created_by,
        )
        if ids:
            burst.recipients.set(ids)
        _audience_set(burst, audience)
    return burst


AUDIENCE_FIELDS = ("lists", "segments", "exclude_lists", "exclude_segments")


def _audience_check(*, all_members: bool, **ids: Sequence[int] | None) -> dict[str, list[int]]:
    """The audience's list and segment ids, checked: they exist, and none goes with
    all_members (every member already)."""
    clean: dict[str, list[int]] = {}
    for field, values in ids.items():
        if values is None:
            continue
        model = MailingList if "list" in field else Segment
        wanted = sorted(set(values))
        found = set(model.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        unknown = [i for i in wanted if i not in found]
        if unknown:
            what = "list" if model is MailingList else "segment"
            raise InvalidInput(f"unknown {what} ids: {', '.join(map(str, unknown))}", field=field)
        clean[field] = wanted
    if all_members and any(clean.values()):
        raise InvalidInput(
            "all_members already mails every member: give no lists, segments or exclusions with it",
            field="all_members",
        )
    return clean


def _audience_set(burst: EmailBurst, audience: dict[str, list[int]]) -> None:
    for field, ids in audience.items():
        getattr(burst, field).set(ids)


UPDATABLE = ("name", "subject", "body", "html_body", "sender", "from_name", "reply_to", "all_members")


def burst_change_allowed(*, burst: EmailBurst, actor: Member | None) -> bool:
    """Whether `actor` may change or delete the burst as it stands: a scheduled burst
    is already set to go, so changing or cancelling what will be sent
    needs the send permission; a draft only the model's change permission, which the
    admin and the API check themselves. `actor=None` is the system itself."""
    return actor is None or burst.status != BurstStatus.SCHEDULED or actor.has_perm(SEND_PERMISSION)


SCHEDULED_CHANGE_REFUSED = f"Changing or deleting a scheduled burst needs the {SEND_PERMISSION} permission."


def burst_change_check(*, burst_id: int, actor: Member) -> None:
    """Raise Forbidden unless `actor` may change the burst now: the API calls it before
    reading the request body. The services check again under the row lock."""
    burst = EmailBurst.objects.only("status").filter(pk=burst_id).first()
    if burst is not None and not burst_change_allowed(burst=burst, actor=actor):
        raise Forbidden(SCHEDULED_CHANGE_REFUSED)


def _changeable(burst_id: int, actor: Member | None, illegal: str) -> EmailBurst:
    """The burst, locked, once it is a draft or scheduled and `actor` may change it.
    `illegal` is the 409 message, with `{status}` for the burst's status."""
    burst = _locked(burst_id)
    if not burst.is_editable:
        raise IllegalState(illegal.format(status=burst.status))
    if not burst_change_allowed(burst=burst, actor=actor):
        raise Forbidden(SCHEDULED_CHANGE_REFUSED)
    return burst


def burst_update(*, burst_id: int, actor: Member | None = None, **fields: Any) -> EmailBurst:
    unknown = set(fields) - set(UPDATABLE) - {"recipient_ids", *AUDIENCE_FIELDS}
    if unknown:
        raise InvalidInput(f"cannot update {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    with transaction.atomic():
        burst = _changeable(
            burst_id, actor, "Only a draft or scheduled burst can be changed; this one is {status}."
        )
        for name in UPDATABLE:
            if name in fields:
                setattr(burst, name, fields[name] if fields[name] is not None else "")
        burst.sender = burst.sender or settings.SENDER_EMAIL
        burst.name = _name(burst.name)
        burst_validate(
            subject=burst.subject, body=burst.body, html_body=burst.html_body, from_name=burst.from_name
        )
        burst.sender = _valid_address("sender", burst.sender)
        if burst.reply_to:
            burst.reply_to = _valid_address("reply_to", burst.reply_to)
        audience = _audience_check(
            all_members=burst.all_members,
            **{field: fields[field] if field in fields else _ids(burst, field) for field in AUDIENCE_FIELDS},
        )
        burst.save()
        if "recipient_ids" in fields:
            burst.recipients.set(_check_recipient_ids(fields["recipient_ids"] or []))
        _audience_set(burst, {field: audience[field] for field in AUDIENCE_FIELDS if field in fields})
    return burst


def _ids(burst: EmailBurst, field: str) -> list[int]:
    return list(getattr(burst, field).values_list("pk", flat=True))


def burst_delete(*, burst_id: int, actor: Member | None = None) -> None:
    with transaction.atomic():
        burst = _changeable(
            burst_id, actor, "Only a draft or scheduled burst can be deleted; this one is {status}."
        )
        burst.delete()


def burst_duplicate(*, burst_id: int, created_by: Member | None = None) -> EmailBurst:
    original = EmailBurst.objects.get(pk=burst_id)
    with transaction.atomic():
        copy = EmailBurst.objects.create(
            name=_name(f"{original.display_name} (copy)"[:200]),
            subject=original.subject,
            body=original.body,
            html_body=original.html_body,
            sender=original.sender,
            from_name=original.from_name,
            reply_to=original.reply_to,
            all_members=original.all_members,
            created_by=created_by or original.created_by,
        )
        for field in AUDIENCE_FIELDS:
            getattr(copy, field).set(_ids(original, field))
        through = EmailBurst.recipients.through
        through.objects.bulk_create(
            through(emailburst_id=copy.pk, member_id=m)
            for m in original.recipients.values_list("pk", flat=True).iterator(chunk_size=5000)
        )
        for att in original.attachments.all():
            EmailAttachment.objects.create(
                burst=copy,
                file=att.file.name,
                filename=att.filename,
                content_type=att.content_type,
                size=att.size,
            )
    return copy


def _bytes(n: int) -> str:
    """A size for people: `25 MiB`, `300 bytes`, `1.5 KiB (1536 bytes)`."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= scale:
            rounded = f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
            return rounded if n % scale == 0 else f"{rounded} ({n} bytes)"
    return f"{n} bytes"


def attachment_limits_check(*, count: int, total: int) -> None:
    """Refuse a burst's attachments beyond ATTACHMENT_MAX_COUNT files (422) or
    ATTACHMENT_MAX_TOTAL bytes in all (413); `count` and `total` include the new ones."""
    max_count, max_total = settings.ATTACHMENT_MAX_COUNT, settings.ATTACHMENT_MAX_TOTAL
    if count > max_count:
        raise InvalidInput(
            f"a burst may have at most {max_count} attachments (ATTACHMENT_MAX_COUNT)", field="file"
        )
    if total > max_total:
        raise TooLarge(
            f"a burst's attachments may total at most {_bytes(max_total)} (ATTACHMENT_MAX_TOTAL); "
            f"with the new file they would total {_bytes(total)}",
            field="file",
        )


def attachment_add(*, burst_id: int, uploaded_file, actor: Member | None = None) -> EmailAttachment:
    """Attach a file to a draft or scheduled burst, within the per-file, per-burst count
    and per-burst total limits. The limits are checked under the burst's row lock, so
    concurrent uploads cannot pass them together."""
    size = uploaded_file.size
    if size > settings.ATTACHMENT_MAX_SIZE:
        raise TooLarge(
            f"an attachment may be at most {_bytes(settings.ATTACHMENT_MAX_SIZE)} (ATTACHMENT_MAX_SIZE)",
            field="file",
        )
    with transaction.atomic():
        burst = _changeable(
            burst_id,
            actor,
            "Attachments can only be added to a draft or scheduled burst; this one is {status}.",
        )
        present = EmailAttachment.objects.filter(burst_id=burst.pk).aggregate(
            count=Count("id"), total=Coalesce(Sum("size"), Value(0))
        )
        attachment_limits_check(count=present["count"] + 1, total=present["total"] + size)
        attachment = EmailAttachment(
            burst=burst,
            filename=(uploaded_file.name or "attachment").rsplit("/", 1)[-1][:255],
            content_type=getattr(uploaded_file, "content_type", None) or "application/octet-stream",
            size=size,
        )
        attachment.file.save(attachment.filename, uploaded_file, save=False)
        attachment.save()
        EmailBurst.objects.filter(pk=burst.pk).update(updated_at=timezone.now())
    return attachment


def attachment_delete(*, attachment_id: int, actor: Member | None = None) -> None:
    """Remove an attachment (and its file) from a draft or scheduled burst."""
    with transaction.atomic():
        attachment = EmailAttachment.objects.select_related("burst").filter(pk=attachment_id).first()
        if attachment is None:
            raise NotFound(f"attachment {attachment_id} does not exist", field="id")
        burst = _changeable(
            attachment.burst_id,
            actor,
            "Attachments can only be removed from a draft or scheduled burst; this one is {status}.",
        )
        name = attachment.file.name
        storage = attachment.file.storage
        attachment.delete()
        EmailBurst.objects.filter(pk=burst.pk).update(updated_at=timezone.now())
        # The file goes only once the row is gone for good; duplicates may share it.
        if name and not EmailAttachment.objects.filter(file=name).exists():
            transaction.on_commit(lambda: storage.delete(name))


# --- deliveries ---------------------------------------------------------------------------------


def burst_create_deliveries(*, burst_id: int) -> int:
    """Create the burst's deliveries in the database, batch by batch (idempotent),
    then mark them ready.

    Each batch is one `INSERT … SELECT` over a range of member ids, so no recipient
    passes through Python; its chunk tasks are enqueued as it commits, so sending
    overlaps creation (the first batch is small, to start at once). The burst can
    only finish once `deliveries_ready` is set at the end."""
    from campaigns import tasks

    burst = EmailBurst.objects.get(pk=burst_id)
    if burst.deliveries_ready:
        return 0
    created, after, size = 0, 0, FIRST_BATCH
    while after is not None:
        end = selectors.recipient_range_end(burst, after=after, size=size)
        with transaction.atomic():
            added = _deliveries_insert(burst, after=after, end=end)
            for _ in range(math.ceil(added[DeliveryStatus.PENDING] / settings.EMAIL_CHUNK_SIZE)):
                transaction.on_commit(lambda: tasks.send_chunk(burst_id))
        created += sum(added.values())
        after, size = end, CREATE_BATCH
    with transaction.atomic():
        EmailBurst.objects.filter(pk=burst_id).update(deliveries_ready=True)
        transaction.on_commit(lambda: burst_finish_if_done(burst_id=burst_id))
    return created


def _deliveries_insert(burst: EmailBurst, *, after: int, end: int | None) -> Counter[str]:
    """Insert the deliveries of recipients with ids in (after, end] that do not have
    one yet, count them on the burst; returns how many were added, by status."""
    now = timezone.now()
    recipients = selectors.burst_recipients(burst, within=(after, end))
    rows = (
        recipients.annotate(
            r_id=F("pk"), r_email=F("email"), r_reason=selectors.skip_reason_expression(burst_id=burst.pk)
        )
        .order_by()
        .values_list("r_id", "r_email", "r_reason")
    )
    inner, inner_params = rows.query.sql_with_params()
    # The status from the reason in an outer SELECT: in the same SELECT, Django would
    # repeat the reason's expression (two suppression look-ups per member).
    select = (
        "SELECT %s, r.r_id, r.r_email, CASE WHEN r.r_reason = '' THEN %s ELSE %s END, r.r_reason, 0, '', %s, %s "
        # WHERE: SQLite would read ON CONFLICT as a join's ON. ORDER BY: deliveries get
        # their ids, and so are sent, in member order, whatever plan the database picks.
        f"FROM ({inner}) AS r WHERE true ORDER BY r.r_id"
    )
    stamp = connection.ops.adapt_datetimefield_value(now)  # as the ORM writes it (SQLite: text)
    params = (burst.pk, DeliveryStatus.PENDING, DeliveryStatus.SKIPPED, stamp, stamp, *inner_params)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    columns = (
        "burst_id, member_id, email, status, error_message, attempts, claim_token, created_at, updated_at"
    )
    insert = f"INSERT INTO {table} ({columns}) {select} ON CONFLICT (burst_id, member_id) DO NOTHING"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The commit does not wait for the WAL flush (most of a batch's time here):
            # only a crash of PostgreSQL itself can lose the last batch, which the
            # recovery then creates again. Counted as inserted: rows an earlier,
            # crashed run had added are not returned.
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.execute(
                f"WITH added AS ({insert} RETURNING status) SELECT status, count(*) FROM added GROUP BY status",
                params,
            )
            added = Counter(dict(cursor.fetchall()))
        else:
            cursor.execute(insert, params)
            if not cursor.rowcount:
                return Counter()
            # The rows this statement added carry its timestamp; an earlier run's do not.
            added = Counter(
                dict(
                    Delivery.objects.filter(burst_id=burst.pk, member_id__gt=after, created_at=now)
                    .filter(**({"member_id__lte": end} if end is not None else {}))
                    .order_by()
                    .values_list("status")
                    .annotate(n=Count("id"))
                )
            )
    recording.tally(burst_id=burst.pk, changes=added)
    recording.daily_add({(recording.outcome_day(now), DeliveryStatus.SKIPPED): added[DeliveryStatus.SKIPPED]})
    return added


def burst_dispatch(*, burst_id: int, delay: float | None = None) -> int:
    """Enqueue enough chunk tasks for the burst's available deliveries."""
    from campaigns import tasks

    now = timezone.now()
    waiting = Delivery.objects.filter(
        Q(burst_id=burst_id, status=DeliveryStatus.PENDING)
        & (Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    ).count()
    chunks = math.ceil(waiting / settings.EMAIL_CHUNK_SIZE)
    for _ in range(chunks):
        if delay:
            tasks.send_chunk.schedule((burst_id,), delay=delay)
        else:
            tasks.send_chunk(burst_id)
    if not chunks:
        burst_finish_if_done(burst_id=burst_id)
    return chunks


# --- the state machine -----------------------------------------------------------------------------


def _locked(burst_id: int) -> EmailBurst:
    try:
        return EmailBurst.objects.select_for_update().get(pk=burst_id)
    except EmailBurst.DoesNotExist:
        raise NotFound(f"email burst {burst_id} does not exist", field="id") from None


def burst_transition(*, burst: EmailBurst, action: BurstAction, **changes: Any) -> EmailBurst:
    """The one function that changes a burst's status: move the burst by `action` as
    BURST_TRANSITIONS says (IllegalState when the table has no such move), set the
    other fields in `changes`, and save them. `burst` must be locked by the caller's
    transaction (`select_for_update`), so that no other move happens in between."""
    burst.status = burst_action_target(status=burst.status, action=action)
    for name, value in changes.items():
        setattr(burst, name, value)
    burst.save(update_fields=["status", *changes, "updated_at"])
    return burst


def _queue_check() -> None:
    """Refuse to start what the task queue must carry while it does not answer: the
    burst would read "sending" with nothing queued until the recovery, minutes later."""
    from campaigns import tasks

    if not tasks.queue_ping():
        raise ServiceUnavailable("task queue")


def burst_send(*, burst_id: int) -> EmailBurst:
    """Start sending now: validate, create deliveries (or a task that does), enqueue chunks."""
    _queue_check()
    with transaction.atomic():
        burst = _locked(burst_id)
        # Refused for its state before its content is looked at.
        burst_action_target(status=burst.status, action=BurstAction.SEND)
        burst_validate(
            subject=burst.subject, body=burst.body, html_body=burst.html_body, from_name=burst.from_name
        )
        # Rows may predate today's validation: check what goes into headers again.
        sender = _valid_address("sender", burst.sender)
        reply_to = _valid_address("reply_to", burst.reply_to) if burst.reply_to else burst.reply_to
        count = selectors.burst_recipients(burst).count()
        if not count:
            raise InvalidInput("the burst has no recipients", field="recipients")
        burst_transition(
            burst=burst,
            action=BurstAction.SEND,
            sender=sender,
            reply_to=reply_to,
            connection_failures=0,
            started_at=timezone.now(),
            finished_at=None,
            pause_reason="",
            deliveries_ready=False,
        )
        if count <= INLINE_DELIVERY_LIMIT:
            burst_create_deliveries(burst_id=burst.pk)
            burst.deliveries_ready = True
        else:
            from campaigns import tasks

            transaction.on_commit(lambda: tasks.create_deliveries(burst.pk))
    return burst


def burst_schedule(*, burst_id: int, send_at: datetime) -> EmailBurst:
    send_at = send_at_check(send_at=send_at)
    with transaction.atomic():
        burst = _locked(burst_id)
        burst_validate(
            subject=burst.subject, body=burst.body, html_body=burst.html_body, from_name=burst.from_name
        )
        burst_transition(burst=burst, action=BurstAction.SCHEDULE, scheduled_at=send_at)
        from campaigns import tasks

        transaction.on_commit(lambda: tasks.enqueue_scheduled(burst_id=burst.pk, send_at=send_at))
    return burst


def burst_send_if_due(*, burst_id: int, slot: datetime | None = None) -> bool:
    """Start a scheduled burst whose time has come, exactly once.

    `slot` is the scheduled time a delayed task was created for: a burst that was
    rescheduled or cancelled since then is left alone. A burst that cannot start
    (no recipients left, a template that no longer compiles) is held: paused with
    the reason."""
    with transaction.atomic():
        burst = EmailBurst.objects.select_for_update().filter(pk=burst_id).first()
        if burst is None or burst.status != BurstStatus.SCHEDULED or burst.scheduled_at is None:
            return False
        if slot is not None and abs((burst.scheduled_at - slot).total_seconds()) > 0.001:
            return False
        if burst.scheduled_at > timezone.now():
            return False
        try:
            burst_send(burst_id=burst_id)
        except InvalidInput as exc:
            burst_transition(
                burst=burst,
                action=BurstAction.HOLD,
                pause_reason=f"Could not start at the scheduled time: {exc.message}",
            )
            return False
    return True


def burst_pause(*, burst_id: int, reason: str = "Paused by staff", allow_paused: bool = False) -> EmailBurst:
    """Pause a sending burst. `allow_paused`: a burst that is no longer sending is left
    as it is instead of refused (a fault noticed after staff paused or cancelled it)."""
    with transaction.atomic():
        burst = _locked(burst_id)
        if allow_paused and burst.status != BurstStatus.SENDING:
            return burst
        burst_transition(burst=burst, action=BurstAction.PAUSE, pause_reason=reason[:2000])
    return burst


def burst_resume(*, burst_id: int) -> EmailBurst:
    _queue_check()
    with transaction.atomic():
        burst = _locked(burst_id)
        burst_transition(
            burst=burst,
            action=BurstAction.RESUME,
            pause_reason="",
            connection_failures=0,
            started_at=burst.started_at or timezone.now(),
        )
        if burst.deliveries_ready:
            # Transient failures waiting for their retry time may go now.
            Delivery.objects.filter(
                burst_id=burst.pk, status=DeliveryStatus.PENDING, next_attempt_at__isnull=False
            ).update(next_attempt_at=None)
            transaction.on_commit(lambda: burst_dispatch(burst_id=burst.pk))
        else:
            from campaigns import tasks

            transaction.on_commit(lambda: tasks.create_deliveries(burst.pk))
    return burst


def burst_cancel(*, burst_id: int) -> EmailBurst:
    with transaction.atomic():
        burst = _locked(burst_id)
        burst_transition(burst=burst, action=BurstAction.CANCEL, finished_at=timezone.now())
        # Messages in flight finish with their real outcome; the worker holding
        # them marks the rest of its chunk skipped when it notices.
        now = timezone.now()
        recording.pending_finish(
            Delivery.objects.filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)),
            burst_id=burst.pk,
            status=DeliveryStatus.SKIPPED,
            error=CANCELLED,
        )
    return burst


def burst_retry(*, burst_id: int, statuses: Iterable[str] = DEFAULT_RETRY_STATUSES) -> int:
    _queue_check()
    wanted = set(statuses) or set(DEFAULT_RETRY_STATUSES)
    if DeliveryStatus.NOT_FOUND in wanted:
        raise InvalidInput(
            "not_found deliveries are never retried: the address does not exist", field="statuses"
        )
    bad = wanted - RETRYABLE_STATUSES
    if bad:
        raise InvalidInput(
            f"cannot retry {', '.join(sorted(bad))}; retryable: {', '.join(sorted(RETRYABLE_STATUSES))}",
            field="statuses",
        )
    with transaction.atomic():
        burst = _locked(burst_id)
        target = burst_action_target(status=burst.status, action=BurstAction.RETRY)
        count = _deliveries_requeue(burst_id=burst.pk, statuses=wanted)
        if count and target != burst.status:
            # A sent burst is back at work; it finishes again when they are done.
            burst_transition(burst=burst, action=BurstAction.RETRY, finished_at=None)
        if count and burst.status == BurstStatus.SENDING:
            transaction.on_commit(lambda: burst_dispatch(burst_id=burst.pk))
    return count


def _deliveries_requeue(*, burst_id: int, statuses: set[str]) -> int:
    """Put the burst's deliveries in `statuses` back to pending, taking them off the
    counters of their status and of the day they got it. The burst is locked."""
    chosen = Delivery.objects.filter(burst_id=burst_id, status__in=statuses)
    by_day = list(
        chosen.annotate(day=TruncDate("updated_at", tzinfo=timezone.get_default_timezone()))
        .order_by()
        .values_list("day", "status")
        .annotate(n=Count("id"))
    )
    count = chosen.update(
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=None,
        claim_token="",
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    changes: Counter[str] = Counter()
    for _day, status, n in by_day:
        changes[status] -= n
        changes[DeliveryStatus.PENDING] += n
    recording.tally(burst_id=burst_id, changes=changes)
    recording.daily_add({(day, status): -n for day, status, n in by_day})
    return count


def burst_finish_if_done(*, burst_id: int, thorough: bool = False) -> bool:
    """Mark a sending burst sent once all of its deliveries exist and none is pending.

    The pending counter answers at once after every chunk; `thorough` (the periodic
    recovery) looks at the deliveries themselves, so that a counter edited by hand
    cannot keep a burst sending for ever (it is repaired on the way)."""
    finishing = EmailBurst.objects.filter(pk=burst_id, status=BurstStatus.SENDING, deliveries_ready=True)
    pending = Delivery.objects.filter(burst_id=burst_id, status=DeliveryStatus.PENDING)
    # Looked at without a lock first: most calls (after every chunk) find work left.
    candidate = finishing.exclude(Exists(pending)) if thorough else finishing.filter(count_pending=0)
    if not candidate.exists():
        return False
    with transaction.atomic():
        burst = finishing.select_for_update().first()
        # Checked again under the lock: a retry may have re-queued deliveries meanwhile.
        if burst is None or pending.exists():
            return False
        if burst.count_pending:
            _burst_recount(burst_id)
        burst_transition(burst=burst, action=BurstAction.FINISH, finished_at=timezone.now())
    return True


def chunk_process(*, burst_id: int) -> ChunkResult:
    """Send one chunk of the burst, then act on what the engine reports: pause the
    burst for a whole-burst fault, finish it when its last delivery is done, and
    queue chunks for when its transient failures may be tried again."""
    started = timezone.now()
    result = chunk_send(burst_id=burst_id)
    if result.claimed:
        # The burst's rate counts sending time only: add the part of this chunk's
        # [started, ended] not yet counted (chunks overlap, and the waits between
        # them for retries are not sending), under the burst's lock.
        ended = timezone.now()
        with transaction.atomic():
            burst = EmailBurst.objects.select_for_update().only("sending_seconds", "busy_until")
            burst = burst.filter(pk=burst_id).first()
            if burst is not None:
                counted_until = max(started, burst.busy_until) if burst.busy_until else started
                burst.sending_seconds += max(0.0, (ended - counted_until).total_seconds())
                burst.busy_until = max(ended, burst.busy_until or ended)
                burst.save(update_fields=["sending_seconds", "busy_until"])
    if result.fault:
        try:
            burst_pause(burst_id=burst_id, reason=result.fault, allow_paused=True)
        finally:
            release_leftovers(burst_id=burst_id, token=result.token)
    elif result.stopped == DONE:
        burst_finish_if_done(burst_id=burst_id)
    if result.retry_at:
        from campaigns import tasks

        # One delayed chunk task per retry slot; the periodic recovery is the safety net.
        earliest = min(result.retry_at)
        delay = max(0.0, (earliest - timezone.now()).total_seconds()) + 0.5
        for _ in range(math.ceil(len(result.retry_at) / settings.EMAIL_CHUNK_SIZE) or 1):
            tasks.send_chunk.schedule((burst_id,), delay=delay)
    return result


# --- counters -------------------------------------------------------------------------------------------


def bursts_recount(*, burst_ids: Iterable[int] | None = None) -> list[str]:
    """Recount the delivery counters of bursts (all, or `burst_ids`) and, for all
    bursts, the daily outcomes; repair what differs. Returns one line per change.

    Safe while bursts send: each burst is recounted under its row lock, which
    every status writer takes first, and the daily outcomes under a table lock."""
    bursts = EmailBurst.objects.order_by("pk")
    if burst_ids is not None:
        bursts = bursts.filter(pk__in=list(burst_ids))
    changes = []
    for burst_id in list(bursts.values_list("pk", flat=True)):
        changes += _burst_recount(burst_id)
    if burst_ids is None:
        changes += _daily_recount()
    return changes


def _burst_recount(burst_id: int) -> list[str]:
    with transaction.atomic():
        burst = EmailBurst.objects.select_for_update().only(*selectors.COUNTER_FIELDS).get(pk=burst_id)
        actual = selectors.delivery_counts(burst_id=burst_id)
        wrong = {s: n for s, n in actual.items() if burst.counts[s] != n}
        if wrong:
            EmailBurst.objects.filter(pk=burst_id).update(**{counter_field(s): n for s, n in wrong.items()})
        events = selectors.delivery_event_counts(burst_id=burst_id)
        events_wrong = {f: n for f, n in events.items() if getattr(burst, f) != n}
        if events_wrong:
            EmailBurst.objects.filter(pk=burst_id).update(**events_wrong)
    lines = [f"burst {burst_id}: {s} {burst.counts[s]} -> {n}" for s, n in wrong.items()]
    return lines + [f"burst {burst_id}: {f} {getattr(burst, f)} -> {n}" for f, n in events_wrong.items()]


def _daily_recount() -> list[str]:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Writers add to a day after their deliveries: they wait here, then add
            # to the recounted figure what the recount could not see yet.
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(DailyOutcome._meta.db_table)
                cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        actual = selectors.daily_outcome_recount()
        stored = {
            (day, status): n for day, status, n in DailyOutcome.objects.values_list("day", "status", "count")
        }
        lines = []
        for key in sorted(set(actual) | set(stored)):
            before, after = stored.get(key, 0), actual.get(key, 0)
            if before != after:
                day, status = key
                DailyOutcome.objects.update_or_create(day=day, status=status, defaults={"count": after})
                lines.append(f"{day} {status}: {before} -> {after}")
    return lines


# --- test message -------------------------------------------------------------------------------------------

TEST_SEND_MAX_ADDRESSES = 10
TEST_SUBJECT_PREFIX = "[TEST] "


class MailServerUnavailable(ServiceError):
    """The SMTP server cannot be reached, or refuses us whatever the address (our
    login, our sender). Nothing to do with the addresses asked for: the API answers 503."""


@dataclass(frozen=True)
class BurstTestReport:
    """What a test send did: the addresses the server accepted, those it refused (address
    -> its reply), and the member the messages were rendered for."""

    sent_to: list[str]
    refused: dict[str, str]
    rendered_for: Member


def _test_addresses(emails: Sequence[str]) -> list[str]:
    """1 to 10 valid addresses in the ASCII form SMTP needs, each once (in any case)."""
    unique: dict[str, str] = {}
    for typed in emails:
        value = str(typed).strip()
        shown = value if len(value) <= 80 else value[:80] + "…"
        try:
            address = mime.encode_recipient(_valid_address("emails", value))
        except InvalidInput as exc:
            reason = exc.message.removeprefix("emails: ")
            raise InvalidInput(f"emails: {shown}: {reason}", field="emails") from None
        except (ValueError, UnicodeError):  # valid to Django, but not one plain SMTP address
            raise InvalidInput(f"emails: {shown}: enter one plain email address", field="emails") from None
        unique.setdefault(address.lower(), address)
    if not unique:
        raise InvalidInput("emails: enter at least one address", field="emails")
    if len(unique) > TEST_SEND_MAX_ADDRESSES:
        raise InvalidInput(
            f"emails: at most {TEST_SEND_MAX_ADDRESSES} addresses per test, not {len(unique)}", field="emails"
        )
    return list(unique.values())


def _test_member(member_id: int | None, actor: Member) -> Member:
    if member_id is None:
        return actor
    member = selectors.preview_member(member_id=member_id)
    if member is None:
        raise InvalidInput(f"member: there is no member with id {member_id}", field="member")
    return member


def _test_messages(burst: EmailBurst, member: Member, addresses: list[str]) -> list[tuple[str, bytes]]:
    prepared = mime.prepare_burst(burst)
    if prepared.attachment_error:
        raise InvalidInput(prepared.attachment_error, field="attachments")
    row = {
        name: getattr(member, name)
        for name in ("email", "first_name", "middle_name", "last_name", "username")
    }
    # The link of the test page: whoever follows it (or whose mail client posts to it)
    # unsubscribes nobody, least of all the member the test was rendered for.
    context = mime.context_for(
        burst_subject=burst.subject,
        member=row,
        member_id=member.pk,
        unsubscribe_link=settings.SITE_URL + reverse("unsubscribe_test"),
    )
    messages = []
    for address in addresses:
        try:
            message = prepared.build(
                delivery_id=0,
                to_email=address,
                to_name="",
                context=context,
                subject_prefix=TEST_SUBJECT_PREFIX,
                message_id=mime.fresh_message_id(burst_id=burst.pk, sender=prepared.envelope_from),
                unsubscribe_mailto=False,
            )
        except TemplateProblem as exc:  # a template limit hit for this member's data
            raise InvalidInput(exc.message, field=exc.field) from None
        messages.append((address, message))
    return messages


def _server_problem(error: str) -> str:
    return f"The mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT} is not available: {error}"


def _test_deliver(sender: str, messages: list[tuple[str, bytes]]) -> tuple[list[str], dict[str, str]]:
    """Send on one connection; what the server refused is kept per address."""
    sent: list[str] = []
    refused: dict[str, str] = {}
    with SmtpSession() as smtp:
        for index, (address, message) in enumerate(messages):
            outcome = smtp.deliver(sender, address, message)
            if outcome.status == DeliveryStatus.SENT:
                sent.append(address)
            elif outcome.burst_fault or outcome.status == DeliveryStatus.CONNECTION_ERROR:
                problem = _server_problem(outcome.burst_fault or outcome.error)
                if not sent and not refused:
                    raise MailServerUnavailable(problem)
                refused.update({rest: problem for rest, _message in messages[index:]})
                break
            else:
                refused[address] = outcome.error
    return sent, refused


def burst_send_test(
    *, burst_id: int, emails: Sequence[str], member_id: int | None = None, actor: Member
) -> BurstTestReport:
    """Send the burst as `member_id` (default: `actor`, the person asking) would get it to
    1-10 typed addresses, on one SMTP connection: subject prefixed "[TEST] ", a new
    Message-ID for every message, and an unsubscribe link to a page that only says it was
    a test. The burst, its deliveries and its counters are not touched.

    Raises InvalidInput (bad addresses, unknown member, broken templates, or every address
    refused), MailServerUnavailable (no usable connection, login or sender refused)."""
    burst = EmailBurst.objects.filter(pk=burst_id).first()
    if burst is None:
        raise NotFound("No such email burst")
    addresses = _test_addresses(emails)
    member = _test_member(member_id, actor)
    burst_validate(
        subject=burst.subject, body=burst.body, html_body=burst.html_body, from_name=burst.from_name
    )
    messages = _test_messages(burst, member, addresses)
    sent, refused = _test_deliver(burst.sender, messages)
    if not sent:
        reasons = "; ".join(f"{address} ({reply})" for address, reply in refused.items())
        raise InvalidInput(
            f"emails: the mail server accepted none of the addresses: {reasons}", field="emails"
        )
    return BurstTestReport(sent_to=sent, refused=refused, rendered_for=member)


# --- recovery -----------------------------------------------------------------------------------------------


def deliveries_recover(*, stale_after: float | None = None) -> dict[str, int]:
    """Take back expired leases, restart stalled bursts, finish forgotten ones.

    Runs every minute and when a consumer starts. Only *expired* leases are taken
    back, so a worker that is alive and renewing its lease is never robbed."""
    from campaigns import tasks

    # First what dead chunks on this host journaled: what they sent is not sent again.
    replayed = journals_replay()
    now = timezone.now()
    recovered = Delivery.objects.filter(status=DeliveryStatus.PENDING, lease_expires_at__lt=now).update(
        claim_token="", lease_expires_at=None
    )
    # A cancelled burst's deliveries that a dead worker held: nobody will send them.
    report = {"replayed": replayed, "recovered": recovered, "dispatched": 0, "created": 0, "finished": 0}
    report["skipped"] = 0
    for cancelled in list(
        EmailBurst.objects.filter(status=BurstStatus.CANCELLED, count_pending__gt=0).values_list(
            "pk", flat=True
        )
    ):
        report["skipped"] += recording.pending_finish(
            Delivery.objects.filter(lease_expires_at__isnull=True),
            burst_id=cancelled,
            status=DeliveryStatus.SKIPPED,
            error=CANCELLED,
        )
    stale = now - timezone.timedelta(
        seconds=stale_after if stale_after is not None else settings.EMAIL_CLAIM_TIMEOUT
    )
    for burst in EmailBurst.objects.filter(status=BurstStatus.SENDING).only(
        "pk", "deliveries_ready", "updated_at"
    ):
        if not burst.deliveries_ready:
            if burst.updated_at < stale:
                tasks.create_deliveries(burst.pk)
                report["created"] += 1
            continue
        if burst_finish_if_done(burst_id=burst.pk, thorough=True):
            report["finished"] += 1
            continue
        due = Delivery.objects.filter(
            Q(burst_id=burst.pk, status=DeliveryStatus.PENDING, lease_expires_at__isnull=True)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        )
        busy = Delivery.objects.filter(
            burst_id=burst.pk, status=DeliveryStatus.PENDING, lease_expires_at__isnull=False
        ).exists()
        if due.exists() and not busy:
            report["dispatched"] += burst_dispatch(burst_id=burst.pk)
    return report


def bursts_dispatch_due() -> int:
    """Start every scheduled burst whose time has come (the delayed task's safety net)."""
    started = 0
    for pk in EmailBurst.objects.filter(
        status=BurstStatus.SCHEDULED, scheduled_at__lte=timezone.now()
    ).values_list("pk", flat=True):
        started += burst_send_if_due(burst_id=pk)
    return started


def member_unsubscribe(*, member_id: int) -> bool:
    """Idempotent: returns True when this call unsubscribed the member."""
    return bool(
        Member.objects.filter(pk=member_id, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now()
        )
    )


def burst_draft_for_members(*, members: QuerySet[Member], created_by: Member | None = None) -> EmailBurst:
    """A new draft addressed to these members (the members list's action): chosen in
    one `INSERT … SELECT`; its subject and body are for staff to write before sending."""
    with transaction.atomic():
        burst = EmailBurst.objects.create(
            name=f"Draft of {timezone.localtime():%Y-%m-%d %H:%M} to selected members",
            subject="",
            body="",
            created_by=created_by,
        )
        through = EmailBurst.recipients.through
        try:
            select, params = (
                members.order_by().annotate(mid=F("pk")).values_list("mid").distinct().query.sql_with_params()
            )
        except EmptyResultSet:  # nobody chosen
            return burst
        table = connection.ops.quote_name(through._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (emailburst_id, member_id) SELECT %s, m.mid FROM ({select}) AS m",
                [burst.pk, *params],
            )
    return burst


# --- bounces and complaints (SPEC 13) ------------------------------------------------------------------
# Every intake (IMAP, webhooks, upload, command) parses a report into a ParsedEvent
# (campaigns.bounces.parse) and hands it here: one MailEvent per reported recipient,
# matched to the delivery it is about, then the policy.

SOFT_BOUNCE_WINDOW = 5  # the address's last sent deliveries looked at
SOFT_BOUNCE_LIMIT = 3  # soft bounces among them that suppress the address
_BOUNCES = frozenset({MailEventKind.HARD_BOUNCE, MailEventKind.SOFT_BOUNCE})


@dataclass(frozen=True)
class _Match:
    delivery: Delivery | None
    matched_by: str


def _raw_text(raw: bytes | str) -> str:
    """The report as text for storage: undecodable bytes replaced, NULs dropped
    (PostgreSQL text cannot hold them), cut at MAIL_EVENT_RAW_LIMIT with a marker."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.replace("\x00", "")
    if len(text) > MAIL_EVENT_RAW_LIMIT:
        text = text[:MAIL_EVENT_RAW_LIMIT] + MAIL_EVENT_RAW_MARKER
    return text


def _event_key(dedup_key: str, email: str, several: bool) -> str:
    """One key per recipient of a report; a long one is hashed to fit the column."""
    key = f"{dedup_key}|{email}" if several else dedup_key
    return key if len(key) <= 255 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _token_deliveries(tokens: Sequence[str]) -> list[Delivery]:
    """The deliveries named by the tokens that carry a valid signature; a forged or
    garbled token names nobody."""
    verify = getattr(engine_tokens, "delivery_id_from_token", None)
    if verify is None:
        return []
    ids = set()
    for token in tokens:
        try:
            ids.add(verify(token))
        except signing.BadSignature:
            continue
    return list(Delivery.objects.filter(pk__in=ids).order_by("pk")) if ids else []


def _pick(candidates: list[Delivery], email: str, only_recipient: bool) -> Delivery | None:
    """The candidate sent to `email`; or, for a report about one recipient, the one
    candidate there is (the address may have been forwarded or rewritten)."""
    for delivery in candidates:
        if delivery.email.lower() == email:
            return delivery
    return candidates[0] if only_recipient and len(candidates) == 1 else None


def _match(email: str, *, by_token: list[Delivery], by_relay: list[Delivery], only_recipient: bool) -> _Match:
    if delivery := _pick(by_token, email, only_recipient):
        return _Match(delivery, MatchedBy.TOKEN)
    if delivery := _pick(by_relay, email, only_recipient):
        return _Match(delivery, MatchedBy.RELAY_ID)
    # lower(email): the members' case-insensitive unique index answers it.
    if email and Member.objects.alias(email_lower=Lower("email")).filter(email_lower=email).exists():
        return _Match(None, MatchedBy.ADDRESS)
    return _Match(None, MatchedBy.NONE)


def _suppress(*, email: str, reason: str, event: MailEvent, note: str = "") -> None:
    """Suppress the address unless it already is (the first reason stays)."""
    email = email.strip().lower()
    if email:
        Suppression.objects.get_or_create(
            email=email, defaults={"reason": reason, "event": event, "note": note}
        )


def _soft_bounces_add_up(delivery: Delivery) -> bool:
    """SOFT_BOUNCE_LIMIT of the address's last SOFT_BOUNCE_WINDOW sent deliveries had a
    soft bounce (through the member's deliveries: (member, -id) is indexed)."""
    if delivery.member_id is None:
        return False
    recent = Delivery.objects.filter(
        member_id=delivery.member_id, status=DeliveryStatus.SENT, email__iexact=delivery.email
    ).order_by("-id")[:SOFT_BOUNCE_WINDOW]
    soft = MailEvent.objects.filter(kind=MailEventKind.SOFT_BOUNCE, delivery_id__in=recent.values("pk"))
    return soft.values("delivery_id").distinct().count() >= SOFT_BOUNCE_LIMIT


def _mark_delivery(delivery: Delivery, kind: str, when: datetime) -> None:
    """bounced_at / complained_at (the first report's time) and the burst's counters;
    the burst's row locked first, like every counter writer."""
    stamp = "complained_at" if kind == MailEventKind.COMPLAINT else "bounced_at"
    recording.burst_lock(delivery.burst_id)
    if Delivery.objects.filter(pk=delivery.pk, **{f"{stamp}__isnull": True}).update(**{stamp: when}):
        recording.tally(burst_id=delivery.burst_id, changes={stamp.removesuffix("_at"): 1})


def _apply_policy(event: MailEvent, delivery: Delivery) -> None:
    kind = event.kind
    if kind in _BOUNCES or kind == MailEventKind.COMPLAINT:
        _mark_delivery(delivery, kind, event.occurred_at or event.received_at)
    if kind == MailEventKind.HARD_BOUNCE:
        _suppress(email=delivery.email, reason=SuppressionReason.HARD_BOUNCE, event=event)
    elif kind == MailEventKind.SOFT_BOUNCE and _soft_bounces_add_up(delivery):
        note = f"{SOFT_BOUNCE_LIMIT} soft bounces among the last {SOFT_BOUNCE_WINDOW} messages sent."
        _suppress(email=delivery.email, reason=SuppressionReason.HARD_BOUNCE, event=event, note=note)
    elif kind == MailEventKind.COMPLAINT:
        if delivery.member_id is not None:
            members_unsubscribe(members=Member.objects.filter(pk=delivery.member_id))
        _suppress(email=delivery.email, reason=SuppressionReason.COMPLAINT, event=event)


def _record_one(
    recipient: Any, parsed: Any, *, match: _Match, source: str, raw: str, key: str
) -> MailEvent | None:
    if MailEvent.objects.filter(dedup_key=key).exists():
        return None  # a replay: recorded before
    delivery = match.delivery
    try:
        with transaction.atomic():
            event = MailEvent.objects.create(
                kind=recipient.kind,
                source=source[:40],
                delivery=delivery,
                member_id=delivery.member_id if delivery else None,
                # A complaint whose reporter hid the address names it by its token.
                email=(recipient.email or (delivery.email if delivery else ""))[:254],
                diagnostic=_diagnostic(recipient.status, recipient.diagnostic),
                raw=raw,
                dedup_key=key,
                matched_by=match.matched_by,
                occurred_at=parsed.occurred_at,
            )
            if delivery is not None:  # only a token or relay id match ever acts
                _apply_policy(event, delivery)
    except IntegrityError:
        return None  # the same report recorded meanwhile by another intake
    return event


def _diagnostic(status: str, text: str) -> str:
    """The status code, then the text, the code named once ("4.2.2 Mailbox full")."""
    if status and status not in text:
        return f"{status} {text}".strip()
    return text or status


@dataclass(frozen=True)
class _Unparsed:
    email: str = ""
    kind: str = MailEventKind.UNPARSED
    status: str = ""
    diagnostic: str = ""


def mail_event_record(*, parsed: Any, source: str, raw: bytes | str, dedup_key: str) -> list[MailEvent]:
    """Record a parsed report (a `campaigns.bounces.parse.ParsedEvent`) and apply the
    policy: a hard bounce suppresses the address, soft bounces do after
    SOFT_BOUNCE_LIMIT of the last SOFT_BOUNCE_WINDOW, a complaint unsubscribes the
    member and suppresses the address, blocked and delayed are recorded only.

    Only a report matched to one of our deliveries by a valid delivery token or by
    the relay's message id acts; one matched by address alone is kept and changes
    nothing. Returns the events recorded now: none for a replay of `dedup_key`."""
    recipients = list(parsed.recipients) or [_Unparsed()]
    only_recipient = len(recipients) == 1
    by_token = _token_deliveries(parsed.delivery_tokens)
    relay_ids = [rid for rid in parsed.relay_ids if rid]
    by_relay = (
        list(Delivery.objects.filter(relay_message_id__in=relay_ids).order_by("pk")) if relay_ids else []
    )
    text = _raw_text(raw)
    events = []
    for recipient in recipients:
        email = recipient.email.strip().lower()
        match = _match(email, by_token=by_token, by_relay=by_relay, only_recipient=only_recipient)
        key = _event_key(dedup_key, email, several=not only_recipient)
        if event := _record_one(recipient, parsed, match=match, source=source, raw=text, key=key):
            events.append(event)
    return events


def suppression_add(
    *, email: str, reason: str = SuppressionReason.MANUAL, actor: Member | None, note: str = ""
) -> Suppression:
    """Suppress an address by hand; Conflict when it already is."""
    address = _valid_address("email", email.strip()).lower()
    if reason not in SuppressionReason.values:
        raise InvalidInput(f"reason: one of {', '.join(SuppressionReason.values)}", field="reason")
    try:
        with transaction.atomic():
            return Suppression.objects.create(email=address, reason=reason, note=note, created_by=actor)
    except IntegrityError:
        raise Conflict(f"{address} is already suppressed.", field="email") from None


def suppression_remove(*, suppression_id: int) -> None:
    """Make the address mailable again."""
    deleted, _ = Suppression.objects.filter(pk=suppression_id).delete()
    if not deleted:
        raise NotFound("No such suppression.")
