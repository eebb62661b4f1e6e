"""Database plumbing shared by every app: the PostgreSQL backend with timeouts
(common.db.postgresql) and the helpers that bound or lift them for a block of work."""

from __future__ import annotations

from common.db.limits import database_budget, statements_unbounded

__all__ = ["database_budget", "statements_unbounded"]
