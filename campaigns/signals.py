"""Deliveries outlive their member: when a member is deleted, their past
deliveries stay for the statistics, without the address."""

from __future__ import annotations

from campaigns.engine.recording import pending_finish
from campaigns.models import Delivery, DeliveryStatus
from members.models import Member


def forget_address_on_delete(sender: type[Member], instance: Member, **kwargs) -> None:
    """pre_delete of a Member: a delivery nobody holds yet is skipped, and every
    delivery forgets the address."""
    unheld = Delivery.objects.filter(member=instance, claim_token="")
    for burst_id in list(unheld.filter(status=DeliveryStatus.PENDING).values_list("burst_id", flat=True)):
        pending_finish(
            unheld, burst_id=burst_id, status=DeliveryStatus.SKIPPED, error="Skipped: the member was deleted"
        )
    Delivery.objects.filter(member=instance).update(email="")
