"""huey tasks: thin wrappers that take ids and call the services."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import close_old_connections
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task, on_startup

from campaigns import heartbeat, services

logger = logging.getLogger(__name__)
LAST_PERIODIC_KEY = "emailer:last-periodic-run"


# The chunk and delivery tasks return nothing: huey would keep each result in its
# store, where nobody reads them (and /api/health/ reads that store).


@db_task()
def create_deliveries(burst_id: int) -> None:
    services.burst_create_deliveries(burst_id=burst_id)


@db_task()
def send_chunk(burst_id: int) -> None:
    with heartbeat.busy(burst_id=burst_id):
        services.chunk_process(burst_id=burst_id)


@db_task()
def send_scheduled(burst_id: int, slot: str) -> None:
    services.burst_send_if_due(burst_id=burst_id, slot=datetime.fromisoformat(slot))


def enqueue_scheduled(*, burst_id: int, send_at: datetime) -> None:
    send_scheduled.schedule((burst_id, send_at.isoformat()), eta=send_at)


@db_periodic_task(crontab(minute="*"))
def periodic_maintenance() -> dict:
    started = services.bursts_dispatch_due()
    report = services.deliveries_recover()
    report["scheduled_started"] = started
    report["consumers_forgotten"] = heartbeat.forget_dead()
    HUEY.put(LAST_PERIODIC_KEY, timezone.now().isoformat())
    if any(report.values()):
        logger.info("periodic maintenance: %s", report)
    return report


@on_startup()
def publish_heartbeat() -> None:
    heartbeat.start()


@on_startup()
def recover_on_start() -> None:
    # A consumer that starts after a crash takes back expired leases at once
    # instead of waiting for the next periodic tick.
    close_old_connections()
    try:
        services.deliveries_recover()
    except Exception:  # never keep a worker from starting
        logger.exception("recovery at start-up failed")
    finally:
        close_old_connections()


def last_periodic_run() -> datetime | None:
    try:
        value = HUEY.get(LAST_PERIODIC_KEY, peek=True)
        return datetime.fromisoformat(value) if value else None
    except Exception:  # an unreachable queue is reported by queue_ping
        return None


def queue_ping() -> bool:
    try:
        HUEY.storage.queue_size()
        return True
    except Exception:
        return False
