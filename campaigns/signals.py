"""Deliveries outlive their member: when a member is deleted, their past
deliveries stay for the statistics, without the address."""

from __future__ import annotations

from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus
from members.models import Member


def forget_address_on_delete(sender: type[Member], instance: Member, **kwargs) -> None:
    """pre_delete of a Member: a delivery nobody holds yet is skipped, and every
    delivery forgets the address."""
    Delivery.objects.filter(member=instance, status=DeliveryStatus.PENDING, claim_token="").update(
        status=DeliveryStatus.SKIPPED,
        error_message="Skipped: the member was deleted",
        updated_at=timezone.now(),
    )
    Delivery.objects.filter(member=instance).update(email="")
