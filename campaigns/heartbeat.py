"""What the consumers are busy with, kept where `/api/health/` can read it.

Every consumer process keeps one entry in huey's key-value store (the storage
the web process reaches too, Redis or SQLite): when it was last seen, and the
chunk tasks its workers are running with their start times. A daemon thread
refreshes "last seen" every BEAT_EVERY seconds whatever the workers are doing,
so a chunk that has run for longer than WORKER_STUCK_AFTER in a live consumer
is stuck, not dead; the entry of a consumer that died stops being refreshed,
its chunks are no longer counted (their leases expire and others take the
deliveries back), and the periodic task forgets it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from huey.contrib.djhuey import HUEY

logger = logging.getLogger(__name__)

KEY_PREFIX = "emailer:consumer:"
BEAT_EVERY = 10.0
ALIVE_WITHIN = 3 * BEAT_EVERY
FORGET_AFTER = 3600.0


@dataclass
class _Process:
    pid: int
    key: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Held from snapshot to write: a beat's older snapshot must never land after a
    # chunk's newer one (it would show a finished chunk as running).
    publishing: threading.Lock = field(default_factory=threading.Lock)
    chunks: dict[str, tuple[int, float]] = field(default_factory=dict)
    beating: bool = False


_process: _Process | None = None
_process_lock = threading.Lock()


def _current() -> _Process:
    global _process
    pid = os.getpid()
    with _process_lock:
        if _process is None or _process.pid != pid:  # first use, or a forked worker process
            _process = _Process(
                pid=pid, key=f"{KEY_PREFIX}{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"
            )
        return _process


def start() -> None:
    """Publish this process's entry from now on (idempotent: every worker's start-up calls it)."""
    process = _current()
    with process.lock:
        if process.beating:
            return
        process.beating = True
    threading.Thread(target=_beat, args=(process,), name="emailer-heartbeat", daemon=True).start()


def _beat(process: _Process) -> None:
    while True:
        _publish(process)
        time.sleep(BEAT_EVERY)


def _publish(process: _Process) -> None:
    with process.publishing:
        with process.lock:
            chunks = [
                {"burst_id": burst_id, "started": started} for burst_id, started in process.chunks.values()
            ]
        try:
            HUEY.put(process.key, {"seen": time.time(), "chunks": chunks})
        except Exception:  # the queue unreachable: health says so; never fail a chunk for it
            logger.warning("could not publish the consumer heartbeat", exc_info=True)


@contextmanager
def busy(*, burst_id: int) -> Iterator[None]:
    """Around one chunk task: published while it runs."""
    process = _current()
    if not process.beating:  # not a consumer (immediate mode, a management command): nobody asks
        yield
        return
    token = uuid.uuid4().hex
    with process.lock:
        process.chunks[token] = (burst_id, time.time())
    _publish(process)
    try:
        yield
    finally:
        with process.lock:
            process.chunks.pop(token, None)
        _publish(process)


def _entries() -> Iterator[tuple[str, dict[str, Any]]]:
    for key, raw in HUEY.all_results().items():
        if not str(key).startswith(KEY_PREFIX):
            continue
        try:
            entry = HUEY.serializer.deserialize(raw)
        except Exception:
            continue
        if isinstance(entry, dict):
            yield str(key), entry


@dataclass(frozen=True)
class WorkersReport:
    status: Literal["ok", "stuck"]
    consumers: int  # live consumer processes
    busy_chunks: int
    oldest_chunk_seconds: float | None  # the longest-running chunk task, if any


def workers_report(*, now: float | None = None) -> WorkersReport:
    """Raises when the queue's storage cannot be read."""
    now = time.time() if now is None else now
    consumers = busy_chunks = 0
    oldest: float | None = None
    for _key, entry in _entries():
        if now - float(entry.get("seen", 0)) > ALIVE_WITHIN:
            continue  # dead: its chunks are nobody's work any more
        consumers += 1
        for chunk in entry.get("chunks", ()):
            busy_chunks += 1
            age = max(0.0, now - float(chunk.get("started", now)))
            oldest = age if oldest is None else max(oldest, age)
    stuck = oldest is not None and oldest > settings.WORKER_STUCK_AFTER
    return WorkersReport(
        status="stuck" if stuck else "ok",
        consumers=consumers,
        busy_chunks=busy_chunks,
        oldest_chunk_seconds=round(oldest, 1) if oldest is not None else None,
    )


def forget_dead(*, now: float | None = None) -> int:
    """Remove the entries of consumers not seen for FORGET_AFTER seconds."""
    now = time.time() if now is None else now
    gone = [key for key, entry in _entries() if now - float(entry.get("seen", 0)) > FORGET_AFTER]
    for key in gone:
        HUEY.delete(key)
    return len(gone)
