"""Taking a burst's deliveries for one worker, atomically, and giving back what
it did not finish.

A claimed delivery carries the worker's token and a lease; once the lease has
expired anyone may take it again (the recovery task does), so a dead worker
loses nothing and two live workers never hold one delivery.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.engine.recording import pending_finish
from campaigns.models import BurstStatus, Delivery, DeliveryStatus, EmailBurst

CANCELLED = "Burst cancelled"


def _available(burst_id: int, now: datetime) -> Q:
    return (
        Q(burst_id=burst_id, status=DeliveryStatus.PENDING)
        & (Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )


def claim(*, burst_id: int, token: str, limit: int) -> int:
    """Atomically take up to `limit` deliveries of a burst; returns how many."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT)
    available = Delivery.objects.filter(_available(burst_id, now)).order_by("id")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            ids = list(available.select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
            if not ids:
                return 0
            return Delivery.objects.filter(id__in=ids).update(claim_token=token, lease_expires_at=lease)
        # SQLite: one conditional UPDATE; writers are serialised, so only one wins each row.
        return Delivery.objects.filter(id__in=available.values("id")[:limit]).update(
            claim_token=token, lease_expires_at=lease
        )


def release(*, token: str) -> int:
    return Delivery.objects.filter(claim_token=token, status=DeliveryStatus.PENDING).update(
        claim_token="", lease_expires_at=None
    )


def release_leftovers(*, burst_id: int, token: str) -> None:
    """What a chunk still holds when it ends: skipped when the burst was cancelled
    meanwhile (nobody will send them), else free for the next chunk."""
    status = EmailBurst.objects.filter(pk=burst_id).values_list("status", flat=True).first()
    if status == BurstStatus.CANCELLED:
        pending_finish(
            Delivery.objects.filter(claim_token=token),
            burst_id=burst_id,
            status=DeliveryStatus.SKIPPED,
            error=CANCELLED,
        )
    else:
        release(token=token)
