"""Suppressions for the addresses today's rule skips (the member's last delivery that
went to SMTP was `not_found` at the member's current address), so that the new single
mechanism, a Suppression row, skips exactly the same members as before."""

from django.db import migrations
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Lower

BATCH = 1_000


def suppress_not_found(apps, schema_editor) -> None:
    Member = apps.get_model("members", "Member")
    Delivery = apps.get_model("campaigns", "Delivery")
    Suppression = apps.get_model("members", "Suppression")
    tried = (
        Delivery.objects.filter(member=OuterRef("pk"))
        .exclude(status__in=["pending", "skipped"])
        .order_by("-id")
    )
    # Only the few members who ever had a `not_found` (the partial index holds them).
    candidates = Delivery.objects.filter(status="not_found").values("member_id")
    rows = (
        Member.objects.filter(pk__in=candidates)
        .annotate(
            last_status=Subquery(tried.values("status")[:1]),
            last_email=Lower(Subquery(tried.values("email")[:1])),
        )
        .filter(last_status="not_found", last_email=Lower("email"))
        .values_list("last_email", flat=True)
        .iterator(chunk_size=BATCH)
    )
    batch: list = []
    for email in rows:
        batch.append(
            Suppression(
                email=email, reason="not_found", note="Last delivery was not found (before suppressions)."
            )
        )
        if len(batch) >= BATCH:
            Suppression.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    Suppression.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0005_suppression"),
        ("campaigns", "0011_bounce_events"),
    ]

    operations = [migrations.RunPython(suppress_not_found, migrations.RunPython.noop, elidable=True)]
