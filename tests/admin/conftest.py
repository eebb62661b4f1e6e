"""Fixtures for the admin tests: logged-in clients and bulk data builders."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst
from members.models import Member
from tests.admin.browser import chromium_browser, page  # noqa: F401  (browser fixtures)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def root_client(client: Client, superuser: Member) -> Client:
    client.force_login(superuser)
    return client


@pytest.fixture
def editor(db) -> Member:
    """A staff user who may view and edit bursts and members but not send."""
    user = Member.objects.create_user(
        username="eddie.editor", email="eddie@example.test", password="editor-pass-1234", is_staff=True
    )
    perms = Permission.objects.filter(content_type__app_label__in=["campaigns", "members"]).exclude(
        codename="send_emailburst"
    )
    user.user_permissions.set(perms)
    return user


@pytest.fixture
def editor_client(editor: Member) -> Client:
    client = Client()
    client.force_login(editor)
    return client


def make_members(n: int, *, prefix: str = "m", **fields: Any) -> list[Member]:
    start = Member.objects.count()
    members = [
        Member(
            username=f"{prefix}{start + i}",
            email=f"{prefix}{start + i}@example.test",
            first_name=f"First{i}",
            last_name=f"Last{i}",
            password="!",
            **fields,
        )
        for i in range(n)
    ]
    Member.objects.bulk_create(members, batch_size=2000)
    return list(Member.objects.filter(username__startswith=prefix).order_by("-pk")[:n])


def make_burst(
    subject: str = "Spring news",
    *,
    status: str = BurstStatus.DRAFT,
    recipients: Iterable[Member] = (),
    all_members: bool = False,
    **fields: Any,
) -> EmailBurst:
    burst = EmailBurst.objects.create(
        subject=subject,
        body=fields.pop("body", "Hello {{ member.first_name }}"),
        status=status,
        all_members=all_members,
        **fields,
    )
    ids = [m.pk for m in recipients]
    if ids:
        through = EmailBurst.recipients.through
        through.objects.bulk_create(
            [through(emailburst_id=burst.pk, member_id=i) for i in ids], batch_size=5000
        )
    return burst


def add_deliveries(
    burst: EmailBurst,
    members: Iterable[Member],
    status_for: Callable[[int], str] = lambda i: DeliveryStatus.SENT,
) -> None:
    now = timezone.now()
    rows = []
    for i, m in enumerate(members):
        status = status_for(i)
        rows.append(
            Delivery(
                burst=burst,
                member=m,
                email=m.email,
                status=status,
                attempts=0 if status in (DeliveryStatus.PENDING, DeliveryStatus.SKIPPED) else 1,
                error_message="554 5.7.1 Rejected (at RCPT)" if status == DeliveryStatus.FAILED else "",
                sent_at=now if status == DeliveryStatus.SENT else None,
                created_at=now,
                updated_at=now,
            )
        )
    Delivery.objects.bulk_create(rows, batch_size=2000)
    # auto_now overrides updated_at on insert: spread the outcomes over three days.
    for days in (1, 2):
        ids = list(Delivery.objects.filter(burst=burst).order_by("id").values_list("id", flat=True)[days::3])
        Delivery.objects.filter(id__in=ids).update(updated_at=now - timedelta(days=days))
    burst.deliveries_ready = True
    burst.save(update_fields=["deliveries_ready"])
