"""factory-boy factories for the tests' data: members and staff, bursts, deliveries,
attachments.

Bursts come two ways:

- `BurstFactory` writes the row as given, any status, schedule or flag: for the tests
  that need a burst *in* a state (admin pages, API answers, the state table) without
  walking it there.
- `DraftBurstFactory` goes through `services.burst_create`, so its templates, sender
  and recipients are checked as staff's are; the tests of sending start from it.

Many rows at once (hundreds to tens of thousands) go in with `bulk_create`:
`MemberFactory.create_bulk(n)` and `DeliveryFactory.create_for(burst, members)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import factory
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, make_password
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from factory.django import DjangoModelFactory

from campaigns import services
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailAttachment, EmailBurst
from members.models import Member

BULK_BATCH = 2000
STAFF_APPS = ("campaigns", "members")
SEND_PERMISSION = "send_emailburst"


# --- members ---------------------------------------------------------------------------------


class MemberFactory(DjangoModelFactory):
    """A subscribed member; without `password` one that cannot sign in."""

    class Meta:
        model = Member
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"member{n}")
    email = factory.LazyAttribute(lambda m: f"{m.username}@example.test")
    first_name = "Test"
    last_name = "Member"
    password = None

    @classmethod
    def _create(cls, model_class: type[Member], *args: Any, **fields: Any) -> Member:
        # Through the manager, as sign-up does: the address's domain lower-cased, the
        # password hashed (unusable when None).
        return model_class.objects.create_user(*args, **fields)

    @classmethod
    def create_bulk(cls, n: int, *, prefix: str | None = None, **fields: Any) -> list[Member]:
        """`n` members in one INSERT per 2,000. With `prefix` their usernames and
        addresses are `{prefix}00`, `{prefix}01`... (`@example.test`), in that order:
        give each call its own prefix."""
        members = cls.build_batch(n, **fields)
        for i, member in enumerate(members):
            if prefix is not None:
                member.username = f"{prefix}{i:02d}"
                member.email = f"{prefix}{i:02d}@example.test"
            member.email = Member.objects.normalize_email(member.email)
            # "!" is an unusable password, as create_user(password=None) stores, without
            # the random suffix that costs a third of the time here
            member.password = (
                UNUSABLE_PASSWORD_PREFIX if member.password is None else make_password(member.password)
            )
        return Member.objects.bulk_create(members, batch_size=BULK_BATCH)


def _grant(user: Member, apps: Sequence[str], exclude: Sequence[str]) -> None:
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=apps).exclude(codename__in=exclude)
    )


class StaffFactory(MemberFactory):
    """Staff with every campaigns and members permission, sending included.
    `StaffFactory(permissions__apps=["campaigns"])` narrows them to one app."""

    is_staff = True

    @factory.post_generation
    def permissions(user: Member, create: bool, extracted: Any, **options: Any) -> None:
        if create:
            _grant(user, options.get("apps", STAFF_APPS), options.get("exclude", ()))


class EditorFactory(MemberFactory):
    """Staff who may view and edit bursts and members but not send them."""

    is_staff = True

    @factory.post_generation
    def permissions(user: Member, create: bool, extracted: Any, **options: Any) -> None:
        if create:
            _grant(user, options.get("apps", STAFF_APPS), (SEND_PERMISSION,))


class SuperuserFactory(MemberFactory):
    is_staff = True
    is_superuser = True


# --- bursts ----------------------------------------------------------------------------------


class BurstFactory(DjangoModelFactory):
    """A burst row exactly as given (`status`, `scheduled_at`, `deliveries_ready`...);
    `recipients=[...]` chooses its members."""

    class Meta:
        model = EmailBurst
        skip_postgeneration_save = True

    subject = "Hello {{ member.first_name }}"
    body = "Dear {{ member.first_name }},\nnews."

    @factory.post_generation
    def recipients(burst: EmailBurst, create: bool, extracted: Iterable[Member] | None, **_: Any) -> None:
        if create and extracted:
            _choose([burst], extracted)

    @classmethod
    def create_bulk(cls, n: int, *, recipients: Iterable[Member] = (), **fields: Any) -> list[EmailBurst]:
        """`n` bursts in one INSERT per 2,000, each choosing `recipients`; a field given as
        `factory.Iterator([...])` varies from one burst to the next."""
        bursts = EmailBurst.objects.bulk_create(cls.build_batch(n, **fields), batch_size=BULK_BATCH)
        _choose(bursts, recipients)
        return bursts


def _choose(bursts: Sequence[EmailBurst], members: Iterable[Member]) -> None:
    through = EmailBurst.recipients.through
    ids = [m.pk for m in members]
    through.objects.bulk_create(
        [through(emailburst_id=b.pk, member_id=i) for b in bursts for i in ids], batch_size=5 * BULK_BATCH
    )


class DraftBurstFactory(factory.Factory):
    """A draft made by `services.burst_create`: a broken template, a bad address or an
    unknown recipient is refused (InvalidInput) as it is for staff."""

    class Meta:
        model = EmailBurst

    subject = "Hello {{ member.first_name }}"
    body = "Dear {{ member.first_name }},\nnews."
    sender = "news@example.org"
    recipients = ()

    @classmethod
    def _create(cls, model_class: type[EmailBurst], *, recipients: Iterable[Member], **fields: Any):
        return services.burst_create(recipient_ids=[m.pk for m in recipients], **fields)

    @classmethod
    def _build(cls, model_class: type[EmailBurst], *args: Any, **fields: Any):
        raise TypeError("DraftBurstFactory only creates: the service validates and saves in one step")


# --- deliveries ------------------------------------------------------------------------------

_UNTRIED = (DeliveryStatus.PENDING, DeliveryStatus.SKIPPED)


class DeliveryFactory(DjangoModelFactory):
    """One recipient's delivery as the engine leaves it for its `status`: tried once
    unless pending or skipped, `sent_at` when sent, an SMTP reply when failed."""

    class Meta:
        model = Delivery

    burst = factory.SubFactory(BurstFactory, status=BurstStatus.SENDING, deliveries_ready=True)
    member = factory.SubFactory(MemberFactory)
    email = factory.LazyAttribute(lambda d: d.member.email if d.member else "")
    status = DeliveryStatus.PENDING
    attempts = factory.LazyAttribute(lambda d: 0 if d.status in _UNTRIED else 1)
    error_message = factory.LazyAttribute(
        lambda d: "554 5.7.1 Rejected (at RCPT)" if d.status == DeliveryStatus.FAILED else ""
    )
    sent_at = factory.LazyAttribute(lambda d: timezone.now() if d.status == DeliveryStatus.SENT else None)

    @classmethod
    def create_for(
        cls,
        burst: EmailBurst,
        members: Iterable[Member],
        *,
        status: str | Callable[[int], str] = DeliveryStatus.PENDING,
        ready: bool = True,
        spread_days: int = 1,
        **fields: Any,
    ) -> list[Delivery]:
        """A delivery of `burst` for each member, in one INSERT per 2,000; `status` is
        one status or `status(i)` for the i-th member. `ready=True` marks the burst's
        deliveries as all created (as `burst_create_deliveries` does at its end);
        `spread_days=3` dates the outcomes over today and the two days before, as the
        dashboard's charts count them."""
        status_of = status if callable(status) else (lambda i: status)
        rows = [
            cls.build(burst=burst, member=m, status=status_of(i), **fields) for i, m in enumerate(members)
        ]
        created = Delivery.objects.bulk_create(rows, batch_size=BULK_BATCH)
        if spread_days > 1:
            # auto_now overrides updated_at on insert: move every n-th row back n days.
            now = timezone.now()
            ids = list(Delivery.objects.filter(burst=burst).order_by("id").values_list("id", flat=True))
            for days in range(1, spread_days):
                Delivery.objects.filter(id__in=ids[days::spread_days]).update(
                    updated_at=now - timedelta(days=days)
                )
        if ready and not burst.deliveries_ready:
            EmailBurst.objects.filter(pk=burst.pk).update(deliveries_ready=True)
            burst.deliveries_ready = True
        counters_repair()
        burst.refresh_from_db()
        return created

    @classmethod
    def _create(cls, model_class: type[Delivery], *args: Any, **fields: Any) -> Delivery:
        delivery = super()._create(model_class, *args, **fields)
        counters_repair()
        return delivery


def counters_repair() -> list[str]:
    """Rows written behind the services' back (factories, a test's own UPDATE): the
    burst counters and daily outcomes are recounted, as `recount_bursts` does."""
    return services.bursts_recount()


# --- attachments -----------------------------------------------------------------------------


class AttachmentFactory(factory.Factory):
    """A file attached by `services.attachment_add`, within its size and count limits."""

    class Meta:
        model = EmailAttachment

    burst = factory.SubFactory(DraftBurstFactory)
    filename = "agenda.txt"
    data = b"1. Welcome\n"
    content_type = "text/plain"

    @classmethod
    def _create(
        cls,
        model_class: type[EmailAttachment],
        *,
        burst: EmailBurst,
        filename: str,
        data: bytes,
        content_type: str,
    ) -> EmailAttachment:
        upload = SimpleUploadedFile(filename, data, content_type=content_type)
        return services.attachment_add(burst_id=burst.pk, uploaded_file=upload)

    @classmethod
    def _build(cls, model_class: type[EmailAttachment], *args: Any, **fields: Any):
        raise TypeError("AttachmentFactory only creates: the service stores the file")
