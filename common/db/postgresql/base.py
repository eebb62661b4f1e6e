"""Django's PostgreSQL backend whose connections never wait forever.

libpq's `connect_timeout` bounds connecting and the server's `statement_timeout` bounds
a statement the server is running, but neither helps when the server or the network
stalls with the connection open: the server never sees the query, psycopg waits for an
answer that never comes, and a web worker hangs for good. Here each wait for an answer
(a statement sent and its whole result read, a commit, a rollback) gives up after the
connection's `stall_timeout` (OPTIONS["stall_timeout"], set from DATABASE_TIMEOUT in
config/settings.py; None waits as long as it takes). The connection is then closed and
the call raises OperationalError: Django discards the connection at the end of the
request and the next one connects afresh, so recovery needs no restart.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg import errors

from common.db.limits import current_budget, database_budget

# psycopg's own default: how often a wait wakes up to notice Ctrl-C.
_WAIT_INTERVAL = 0.1
# A reused connection's health check (CONN_HEALTH_CHECKS) is a SELECT 1 the server answers
# in milliseconds: waiting little for it keeps a stalled server's cost to a request at
# this plus the connect timeout, not a full stall timeout more.
PING_TIMEOUT = 2.0


def _tightest(*limits: float | None) -> float | None:
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None


class TimedConnection(psycopg.Connection):
    """A psycopg connection whose waits for the server give up after `stall_timeout`."""

    stall_timeout: float | None = None

    def wait(self, gen: Any, interval: float = _WAIT_INTERVAL, timeout: float | None = None) -> Any:
        if timeout is None:
            timeout = _tightest(self.stall_timeout, current_budget())
        try:
            return super().wait(gen, interval, timeout)
        except errors._WaitTimeout:
            # The server said nothing in time. The connection is in an unknown state (a
            # statement half sent, an answer half read): close it, so that Django's
            # is_usable() says so at once and nothing waits on it again.
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {timeout:g} s; the connection was closed"
            ) from None


class _Driver:
    """psycopg as the backend sees it (its errors, types, version), connecting with
    TimedConnection."""

    def __getattr__(self, name: str) -> Any:
        return getattr(psycopg, name)

    @staticmethod
    def connect(*args: Any, **kwargs: Any) -> TimedConnection:
        return TimedConnection.connect(*args, **kwargs)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Driver()

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        params.pop("stall_timeout", None)  # ours, not libpq's
        budget = current_budget()
        if budget is not None:
            # libpq's connect_timeout is whole seconds, at least 2.
            limit = max(2, math.floor(budget))
            given = int(float(params.get("connect_timeout") or 0))
            params["connect_timeout"] = min(given, limit) if given > 0 else limit
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> TimedConnection:
        connection = super().get_new_connection(conn_params)
        connection.stall_timeout = self.settings_dict["OPTIONS"].get("stall_timeout")
        return connection

    def is_usable(self) -> bool:
        with database_budget(PING_TIMEOUT):
            return super().is_usable()
