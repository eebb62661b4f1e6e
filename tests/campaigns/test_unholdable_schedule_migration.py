"""A schedule stored beyond year 9999 (possible before send_at was checked) is
removed by a migration, so no list keeps answering 500."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection

from campaigns.models import BurstStatus, EmailBurst

migration = importlib.import_module("campaigns.migrations.0005_clear_unholdable_schedules")


@pytest.mark.django_db
def test_it_turns_a_burst_scheduled_after_year_9999_back_into_a_draft(require_postgres):
    burst = EmailBurst.objects.create(subject="Far", body="b")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_emailburst SET status = 'scheduled', scheduled_at = %s::timestamptz WHERE id = %s",
            ["10000-01-01 04:30:00+00", burst.pk],
        )
    with connection.schema_editor() as editor:
        migration.clear(None, editor)
    burst.refresh_from_db()
    assert burst.status == BurstStatus.DRAFT
    assert burst.scheduled_at is None
    assert "9999" in burst.pause_reason
