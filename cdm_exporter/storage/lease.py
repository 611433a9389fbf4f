"""Which replica polls the API: a lease in Redis that expires, and the replicas' heartbeats.

The lease is one key (``<prefix>:lease``) holding the id of the replica that polls, set with
``SET NX PX`` and renewed by a Lua compare-and-set (only its holder can extend or release it).
With a lease period ``P`` (``--storage.lease-period``):

* the key lives ``0.9 P`` after each renewal; the holder renews every ``P / 4`` and counts itself
  the leader only until ``0.75 P`` after the start of its last renewal that worked, so it stops
  polling before Redis lets anyone else take over;
* the others try to take it every ``P / 10``: when the leader dies, another replica leads within
  ``P`` (``0.9 P`` for the key to expire, ``0.1 P`` for the next try); a leader that stops
  cleanly releases it, and the next try takes it.

Heartbeats (``<prefix>:replicas``, a sorted set of replica ids scored by when each stops
counting as live, ``P`` after it last wrote) tell the shared budget how many replicas are on Redis
(:mod:`cdm_exporter.storage.shared_budget`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cdm_exporter.storage.redis_link import RedisLink

log = logging.getLogger(__name__)

#: the key lives this share of the lease period after each renewal
TTL_SHARE = 0.9
#: a holder counts itself the leader this share of the period after its last renewal began
HELD_SHARE = 0.75
#: the holder renews every this share of the period
RENEW_SHARE = 0.25
#: the others try to take it every this share of the period
ACQUIRE_SHARE = 0.1

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]))
return 1
"""


class Lease:
    """The lease of one replica (``me``), renewed or sought by :meth:`tick`."""

    def __init__(
        self,
        link: RedisLink,
        *,
        key: str,
        replicas_key: str,
        me: str,
        period: float,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link = link
        self.key = key
        self.replicas_key = replicas_key
        self.me = me
        self.period = period
        self._mono = mono
        self._held_until = 0.0  # monotonic: until when this replica counts itself the leader
        self._renewed_at = float("-inf")
        self._lock = threading.Lock()
        client = link.client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = client.register_script(_HEARTBEAT)

    def held(self) -> bool:
        with self._lock:
            return self._mono() < self._held_until

    @property
    def tick_interval(self) -> float:
        return self.period * ACQUIRE_SHARE

    def heartbeat(self) -> None:
        """Count this replica as live for one period (raises ``StoreError``)."""
        ms = int(self.period * 1000)
        self._link.run("heartbeat", lambda _: self._heartbeat(keys=[self.replicas_key], args=[self.me, ms]))

    def tick(self) -> None:
        """Renew the lease when held and due, else try to take it (raises ``StoreError``)."""
        started = self._mono()
        ttl_ms = int(self.period * TTL_SHARE * 1000)
        if self.held():
            if started - self._renewed_at < self.period * RENEW_SHARE:
                return
            renewed = self._link.run(
                "lease renewal", lambda _: self._renew(keys=[self.key], args=[self.me, ttl_ms])
            )
            if renewed:
                self._got(started)
            else:
                with self._lock:
                    self._held_until = 0.0
                log.warning(
                    "lease lost to another replica; serving the shared state", extra={"replica": self.me}
                )
            return
        taken = self._link.run("lease", lambda client: client.set(self.key, self.me, nx=True, px=ttl_ms))
        if not taken and self._renewed_at > float("-inf"):
            # held before, and the renewals fell behind (a stalled process): it may still be ours
            taken = self._link.run("lease", lambda _: self._renew(keys=[self.key], args=[self.me, ttl_ms]))
        if taken:
            self._got(started)
            log.info("this replica polls the API (lease taken)", extra={"replica": self.me})

    def _got(self, started: float) -> None:
        with self._lock:
            self._renewed_at = started
            self._held_until = started + self.period * HELD_SHARE

    def release(self) -> None:
        """Give the lease up (a clean stop), so that another replica takes over at once."""
        if not self.held():
            return
        with self._lock:
            self._held_until = 0.0
        self._link.run("lease release", lambda _: self._release(keys=[self.key], args=[self.me]))
