"""Bounds on how long PostgreSQL may keep a caller waiting, for one block of work.

The backend (common.db.postgresql) applies DATABASE_TIMEOUT to every connection; these
narrow it for a probe that must answer in time, or lift the statement limit for long
maintenance work. On SQLite both are no-ops: there is no server to stall.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DatabaseError, connections

# The monotonic time by which the enclosing `database_budget` blocks must be done.
_deadline: ContextVar[float | None] = ContextVar("database_deadline", default=None)


def current_budget() -> float | None:
    """Seconds left before the tightest enclosing `database_budget` runs out, or None."""
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@contextmanager
def database_budget(seconds: float) -> Iterator[None]:
    """In this block, connecting to PostgreSQL and the waits for its answers give up once
    `seconds` have passed in all (or sooner, inside a tighter enclosing budget). For
    /api/health/, which must answer within its deadline even when the database stalls."""
    outer = _deadline.get()
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def statements_unbounded(using: str = "default") -> Iterator[None]:
    """Lift the statement limit (the server's statement_timeout and the client's stall
    cut) on this connection for a block of long maintenance work, such as recounting
    every delivery; connecting keeps its timeout. The limit is back after the block."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    previous = getattr(raw, "stall_timeout", None)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
    raw.stall_timeout = None
    try:
        yield
    finally:
        raw.stall_timeout = previous
        if not raw.closed and connection.is_usable():
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")  # the session's own, from its options
        try:
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")  # back to the value set at connect
        except DatabaseError:
            # The connection broke (or its transaction failed): never leave it unbounded.
            raw.close()
