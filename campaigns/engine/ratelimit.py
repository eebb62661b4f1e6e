"""A global send rate (EMAIL_RATE_LIMIT, messages per second) shared by all workers.

With Redis every worker on every machine books its send slot in one Redis key
(a GCRA-style "next free slot" kept by a Lua script, so booking is atomic).
Without Redis the same bookkeeping lives in a file under an exclusive lock,
which holds for every process on this host.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import tempfile
import time
from functools import lru_cache

from django.conf import settings

logger = logging.getLogger(__name__)

_LUA = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local interval = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt < t then nxt = t end
redis.call('SET', KEYS[1], tostring(nxt + interval * count), 'PX', 60000)
return tostring(nxt - t)
"""


class RateLimiter:
    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second

    def acquire(self, count: int = 1) -> None:
        """Block until `count` messages may leave."""
        wait = self._book(count)
        if wait > 0:
            time.sleep(wait)

    def _book(self, count: int) -> float:
        raise NotImplementedError


class RedisRateLimiter(RateLimiter):
    # While Redis is away the chunk waits (its outcomes are journaled, its lease runs
    # for minutes) rather than giving up its deliveries after a blip.
    OUTAGE_WAIT = 60.0

    def __init__(self, per_second: float, url: str, key: str) -> None:
        import redis

        super().__init__(per_second)
        timeout = settings.REDIS_TIMEOUT
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.script = self.client.register_script(_LUA)
        self.key = key
        self.errors = (redis.ConnectionError, redis.TimeoutError)

    def _book(self, count: int) -> float:
        deadline = time.monotonic() + self.OUTAGE_WAIT
        while True:
            try:
                return float(self.script(keys=[self.key], args=[self.interval, count]))
            except self.errors as exc:
                if time.monotonic() >= deadline:
                    raise
                logger.warning("rate limit: Redis is not answering (%s); trying again", exc)
                time.sleep(1.0)


class FileRateLimiter(RateLimiter):
    def __init__(self, per_second: float, path: str) -> None:
        super().__init__(per_second)
        self.path = path

    def _book(self, count: int) -> float:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 8, 0)
            nxt = struct.unpack("d", raw)[0] if len(raw) == 8 else 0.0
            now = time.time()
            nxt = max(nxt, now)
            os.pwrite(fd, struct.pack("d", nxt + self.interval * count), 0)
            return nxt - now
        finally:
            os.close(fd)


class Unlimited(RateLimiter):
    def __init__(self) -> None:
        self.interval = 0.0

    def acquire(self, count: int = 1) -> None:
        return None


@lru_cache(maxsize=4)
def _limiter(rate: float | None, redis_url: str, name: str) -> RateLimiter:
    if not rate:
        return Unlimited()
    if redis_url:
        return RedisRateLimiter(rate, redis_url, key=f"{name}:email-rate")
    path = os.path.join(tempfile.gettempdir(), f"{name}-email-rate.lock")
    return FileRateLimiter(rate, path)


def get_rate_limiter() -> RateLimiter:
    return _limiter(settings.EMAIL_RATE_LIMIT, settings.REDIS_URL, settings.HUEY_NAME)
