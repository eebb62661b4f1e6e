"""huey tasks: thin wrappers that take ids and call the services."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task, on_startup

from campaigns import heartbeat, services
from campaigns.bounces import imap

logger = logging.getLogger(__name__)
LAST_PERIODIC_KEY = "emailer:last-periodic-run"


# The chunk and delivery tasks return nothing: huey would keep each result in its
# store, where nobody reads them (and /api/health/ reads that store).


@db_task()
def create_deliveries(burst_id: int) -> None:
    services.burst_create_deliveries(burst_id=burst_id)


# Retried after a failure (the database or Redis away for a moment): the retry first
# writes what the failed chunk journaled, then goes on; the periodic recovery is the
# safety net for longer outages.
@db_task(retries=3, retry_delay=5)
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


BOUNCE_POLL_LOCK = "emailer:bounce-mailbox-poll"


@db_periodic_task(crontab(minute="*"))
def poll_bounce_mailbox() -> dict | None:
    """Read the bounce mailbox (BOUNCE_IMAP_URL). The lock keeps a slow poll and the next
    minute's from reading the same messages at once on two workers."""
    if not settings.BOUNCE_IMAP:
        return None
    with HUEY.lock_task(BOUNCE_POLL_LOCK):
        try:
            report = imap.mailbox_poll(record=services.mail_event_record)
        except Exception as exc:  # the server is down, or the connection dropped: next minute
            # The exception names the host at most, never the password.
            logger.warning("bounce mailbox poll failed (%s): %s", type(exc).__name__, exc)
            return None
    if report.seen:
        logger.info("bounce mailbox %s: %s", report.mailbox, report.as_dict())
    return report.as_dict()


@on_startup()
def publish_heartbeat() -> None:
    heartbeat.start()


@on_startup()
def release_bounce_poll_lock() -> None:
    # huey's locks never expire: a worker killed mid-poll would stop the polling
    # for good. Two polls overlapping after a restart is harmless (each message is
    # recorded once; a message already moved is skipped).
    HUEY.flush_locks(BOUNCE_POLL_LOCK)


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
