from django.db.models.signals import pre_delete
from django.dispatch import receiver

from members.models import Member


@receiver(pre_delete, sender=Member)
def forget_address_on_delete(sender, instance: Member, **kwargs) -> None:
    """Past deliveries stay for the statistics, without the member's address."""
    from django.utils import timezone

    from campaigns.models import Delivery, DeliveryStatus

    Delivery.objects.filter(member=instance, status=DeliveryStatus.PENDING, claim_token="").update(
        status=DeliveryStatus.SKIPPED,
        error_message="Skipped: the member was deleted",
        updated_at=timezone.now(),
    )
    Delivery.objects.filter(member=instance).update(email="")
