from django.contrib import admin
from unfold.admin import ModelAdmin, TabularInline

from campaigns.models import Delivery, EmailAttachment, EmailBurst


class AttachmentInline(TabularInline):
    model = EmailAttachment
    extra = 0
    fields = ("file", "filename", "content_type", "size")
    readonly_fields = ("size",)


@admin.register(EmailBurst)
class EmailBurstAdmin(ModelAdmin):
    list_display = (
        "subject",
        "status",
        "all_members",
        "scheduled_at",
        "started_at",
        "finished_at",
        "created_at",
    )
    list_filter = ("status", "all_members")
    search_fields = ("subject",)
    autocomplete_fields = ("recipients",)
    readonly_fields = ("status", "pause_reason", "started_at", "finished_at", "created_by", "created_at")
    inlines = [AttachmentInline]

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Delivery)
class DeliveryAdmin(ModelAdmin):
    list_display = ("id", "burst", "email", "status", "attempts", "sent_at", "updated_at")
    list_filter = ("status",)
    search_fields = ("email",)
    list_select_related = ("burst",)
    raw_id_fields = ("burst", "member")
    show_full_result_count = False
