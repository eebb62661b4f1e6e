"""A member deactivated loses every refresh token issued before (issue 15): whatever
deactivates them (the admin, the API, a script), their tokens are blacklisted."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_save
from django.dispatch import receiver

from members.models import Member


@receiver(pre_save, sender=Member, dispatch_uid="members_void_tokens_on_deactivation")
def void_tokens_on_deactivation(sender: type[Member], instance: Member, **kwargs: Any) -> None:
    if instance.pk is None or instance.is_active:
        return
    was_active = Member.objects.filter(pk=instance.pk, is_active=True).exists()
    if was_active:
        from members.services import member_tokens_void

        member_tokens_void(member_id=instance.pk)
