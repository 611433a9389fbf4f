"""One API budget for every replica with the same credential: rolling windows in Redis.

Each credential and policy has one sorted set of the calls of the last minute (scored by Redis'
own clock, ``TIME``, so the replicas' clocks do not matter), under
``cdm-exporter:budget:<hash of the credential's identity>:<policy>``, whatever the key prefix:
CDM counts per IAM user, so every exporter using that user shares it. A Lua script admits a
call atomically: it drops the calls older than a minute and records this one only while the set
holds fewer than the limit. The token bucket's pacing stays in each replica; only the one that
leads polls, so only its pacing matters.

**Redis unreachable.** A replica cut off from Redis cannot see what the others send, so:

1. it sends nothing until every call it could not see has left the rolling minute: one minute,
   plus one lease period during which the others still counted it live, after its last
   successful Redis call (or after its start, if it never reached Redis);
2. then it sends at most ``limit / replicas`` (``--storage.redis-replicas``) per rolling minute,
   counting its own calls of that minute, whichever way they went;
3. when Redis answers again, it adds its calls of the last minute to the shared window (all of
   them: a Redis restarted without persistence forgot those it had) *before* its heartbeat says
   it is back, and uses the shared window again.

Replicas still on Redis keep the promise with them: the admission script lowers the limit by
one share for each of the expected replicas whose heartbeat has lapsed (it may be polling on its
share). So, whatever the replicas see of Redis, all of them together stay within the limit in
any rolling minute, provided ``--storage.redis-replicas`` is at least the number of replicas.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from cdm_exporter.polling.budget import COUNTED_WINDOW_SECONDS, BudgetKey, RollingWindow
from cdm_exporter.polling.persistence import StoreError
from cdm_exporter.storage import window_name
from cdm_exporter.storage.redis_link import RedisLink

#: the key of a budget window, whatever the prefix: the API counts per user, not per deployment
BUDGET_KEY = "cdm-exporter:budget:{}"
#: a cached count of the shared window is used for this long by ``room``
CACHE_SECONDS = 5.0

# KEYS[1] the window (calls scored in ms), KEYS[2] the replicas' heartbeats (scored by when each
# stops counting as live). ARGV: limit, share, expected replicas, this replica, the member for
# this call ('' to only count), then pairs (ms, member) of calls made without Redis.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 6, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - WINDOW_MS)
local live = redis.call('ZCOUNT', KEYS[2], now, '+inf')
local mine = redis.call('ZSCORE', KEYS[2], ARGV[4])
if mine and tonumber(mine) >= now then
  live = live - 1
end
local missing = tonumber(ARGV[3]) - 1 - live
if missing < 0 then
  missing = 0
end
local limit = tonumber(ARGV[1]) - tonumber(ARGV[2]) * missing
local count = redis.call('ZCARD', KEYS[1])
local admitted = 0
if ARGV[5] ~= '' and count + 1 <= limit then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  count = count + 1
  admitted = 1
end
redis.call('PEXPIRE', KEYS[1], 120000)
return {admitted, count, limit}
""".replace("WINDOW_MS", str(int(COUNTED_WINDOW_SECONDS * 1000)))


class SharedWindow:
    """One credential's and policy's rolling minute, shared in Redis, with its fallback."""

    def __init__(self, windows: SharedWindows, key: BudgetKey) -> None:
        self._w = windows
        self._key = BUDGET_KEY.format(window_name(key))
        self._lock = threading.Lock()
        # this replica's calls of the last minute: (wall clock, member), whichever way they went
        self._own: deque[tuple[float, str]] = deque()
        self._synced_epoch = -1  # the link's epoch when all of them were last known in Redis
        self._last: tuple[str, bool] | None = None  # the newest call's member, and if it went to Redis
        self._cached: tuple[float, float, float] | None = None  # (count, limit, monotonic time)
        self._limit = 0.0  # the last limit asked about, for sync()

    # --- RollingWindow -----------------------------------------------------------------------------

    def take(self, limit: float) -> bool:
        with self._lock:
            self._limit = limit
            now = self._w.wall()
            self._prune(now)
            member = self._w.member()
            if not self._w.link.down:
                try:
                    admitted = self._admit(limit, member)
                except StoreError:
                    pass  # fall back below
                else:
                    if admitted:
                        self._own.append((now, member))
                        self._last = (member, True)
                    return admitted
            if not self._fallback_room(limit) >= 1:
                return False
            self._own.append((now, member))
            self._last = (member, False)
            return True

    def give_back(self) -> None:
        with self._lock:
            if self._last is None:
                return
            member, shared = self._last
            self._last = None
            if self._own and self._own[-1][1] == member:
                self._own.pop()
            if not shared:
                return
        # best effort: a call left in the window only makes the budget a little stricter
        with contextlib.suppress(StoreError):
            self._w.link.run("budget refund", lambda client: client.zrem(self._key, member))

    def room(self, limit: float) -> float:
        with self._lock:
            self._limit = limit
            self._prune(self._w.wall())
            if self._w.link.down:
                return self._fallback_room(limit)
            cached = self._cached
            if cached is None or self._w.mono() - cached[2] > CACHE_SECONDS:
                return limit  # not known lately: take() asks Redis
            count, shared_limit, _ = cached
            return min(limit, shared_limit) - count

    # --- Redis -----------------------------------------------------------------------------------

    def _admit(self, limit: float, member: str) -> bool:
        """Ask Redis to admit a call (``member`` "" only counts). When the link went down since
        this replica's calls were last known there (Redis may have restarted empty, or they were
        made without it), they are all added first, in the same script."""
        epoch = self._w.link.epoch
        unsynced = self._own if epoch != self._synced_epoch else ()
        args: list[str | int] = [int(limit), self._w.share(limit), self._w.expected, self._w.me, member]
        args += itertools.chain.from_iterable((int(at * 1000), name) for at, name in unsynced)
        admitted, count, shared_limit = self._w.link.run(
            "budget", lambda _: self._w.script(keys=[self._key, self._w.replicas_key], args=args)
        )
        self._synced_epoch = epoch
        self._cached = (float(count), float(shared_limit), self._w.mono())
        return bool(admitted)

    def sync(self) -> None:
        """Refresh the cached count, first adding this replica's calls when they may be missing
        from Redis (raises ``StoreError``); the background thread does it before each heartbeat."""
        with self._lock:
            if self._limit > 0:
                self._admit(self._limit, "")

    # --- without Redis -----------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        while self._own and self._own[0][0] <= now - COUNTED_WINDOW_SECONDS:
            self._own.popleft()

    def _fallback_room(self, limit: float) -> float:
        link = self._w.link
        since = link.last_contact if link.last_contact is not None else link.started
        if self._w.mono() < since + self._w.period + COUNTED_WINDOW_SECONDS:
            return 0.0  # calls this replica could not see may still be in the rolling minute
        return self._w.share(limit) - len(self._own)


class SharedWindows:
    """The :class:`~cdm_exporter.polling.budget.WindowStore` of the Redis store."""

    def __init__(
        self,
        link: RedisLink,
        *,
        me: str,
        replicas_key: str,
        expected: int,
        period: float,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        if expected < 1:
            raise ValueError("expected replicas must be at least 1")
        self.link = link
        self.me = me
        self.replicas_key = replicas_key
        self.expected = expected
        self.period = period
        self.wall = wall
        self.mono = mono
        self.script = link.client.register_script(_ADMIT)
        self._counter = itertools.count()
        self._windows: dict[BudgetKey, SharedWindow] = {}
        self._lock = threading.Lock()

    def share(self, limit: float) -> int:
        """What one replica may send per rolling minute without Redis."""
        return math.floor(limit / self.expected)

    def member(self) -> str:
        return f"{self.me}:{next(self._counter)}"

    def window(self, key: BudgetKey) -> RollingWindow:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = SharedWindow(self, key)
            return window

    def sync(self) -> None:
        """Every window's calls made without Redis into Redis (raises ``StoreError``)."""
        with self._lock:
            windows = list(self._windows.values())
        for window in windows:
            window.sync()
