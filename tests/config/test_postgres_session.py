"""PostgreSQL sessions as the settings open them."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_postgres_sessions_run_without_jit(require_postgres):
    # JIT compiled each 50,000-row batch of delivery creation anew: 350 ms of 390.
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
