from django.apps import AppConfig
from django.db.models.signals import pre_delete


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from campaigns.signals import forget_address_on_delete
        from members.models import Member

        pre_delete.connect(forget_address_on_delete, sender=Member, dispatch_uid="campaigns.forget_address")
