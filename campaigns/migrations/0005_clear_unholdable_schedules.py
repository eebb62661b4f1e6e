"""Bursts scheduled beyond year 9999 in UTC (possible before send_at was checked)
cannot be read back by Python: every list that included one answered 500. Such a
schedule can never be honoured; the burst goes back to draft with the reason kept."""

from django.db import migrations

FIX = """
UPDATE campaigns_emailburst
SET status = 'draft',
    scheduled_at = NULL,
    pause_reason = 'The schedule was beyond what can be stored (after the year 9999) and was removed.'
WHERE scheduled_at >= '10000-01-01'::timestamptz
"""


def clear(apps, schema_editor):
    # Only PostgreSQL could store such a value; SQLite refused it at save.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FIX)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0004_delivery_claim_index")]

    operations = [migrations.RunPython(clear, migrations.RunPython.noop)]
