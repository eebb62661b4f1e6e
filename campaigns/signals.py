"""Deliveries outlive their member: when a member is deleted, their past
deliveries stay for the statistics, without the address."""

from __future__ import annotations

from campaigns.models import Delivery
from members.models import Member


def forget_address_on_delete(sender: type[Member], instance: Member, **kwargs) -> None:
    """pre_delete of a Member: every delivery forgets the address. A delivery still
    waiting is left to the chunk that claims it, which skips it ("the member was
    deleted") and counts it: moving counters here, inside whatever transaction
    deletes members (an admin bulk delete spans many bursts), could deadlock with
    the workers, who lock a burst before a day's outcomes."""
    Delivery.objects.filter(member=instance).update(email="")
