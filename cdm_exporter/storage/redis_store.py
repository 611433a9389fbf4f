"""The state store shared by replicas: Redis (``--storage.redis-url``).

Keys, under a prefix (``--storage.redis-prefix``, one per Deployment):

* ``<prefix>:lease`` and ``<prefix>:replicas``: which replica polls, and which are live
  (:mod:`cdm_exporter.storage.lease`);
* ``<prefix>:state`` (a hash of records), ``<prefix>:state:generation`` (a counter) and
  ``<prefix>:state:changes`` (each record's key scored by the generation that last changed it):
  the leader's known state. The leader writes what changed with one Lua script that first checks
  it still holds the lease (a replica that lost it cannot overwrite the new leader's state); the
  followers read the keys changed since the generation they last read;
* ``cdm-exporter:budget:...``: the shared budget, whatever the prefix
  (:mod:`cdm_exporter.storage.shared_budget`).

A background thread, every tenth of the lease period, renews or seeks the lease; every quarter
period it brings this replica's budget calls into Redis and writes its heartbeat. Roles: the
lease holder is the ``leader``; a replica that reaches Redis without the lease is a
``follower``; one that cannot reach Redis is ``alone``: it polls on its share of the budget.
``cdm_exporter_storage_up`` is whether the last Redis call worked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import redis

from cdm_exporter.polling.persistence import Changes, Role, StoreError
from cdm_exporter.polling.records import Record
from cdm_exporter.storage.lease import RENEW_SHARE, Lease
from cdm_exporter.storage.redis_link import RedisLink
from cdm_exporter.storage.shared_budget import SharedWindows

log = logging.getLogger(__name__)

# KEYS: lease, state hash, changes, generation. ARGV: this replica, the number n of records
# written, n pairs (key, value), then the keys removed.
_SAVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local generation = redis.call('INCR', KEYS[4])
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  redis.call('HSET', KEYS[2], ARGV[3 + 2 * i], ARGV[4 + 2 * i])
  redis.call('ZADD', KEYS[3], generation, ARGV[3 + 2 * i])
end
for i = 3 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('ZADD', KEYS[3], generation, ARGV[i])
end
return generation
"""


def replica_name() -> str:
    """This process's name among the replicas: the host (a pod's name), the process, and some
    randomness (a restarted process is another replica)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisStore:
    """A :class:`~cdm_exporter.polling.persistence.StateStore` in Redis, shared by replicas."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "cdm-exporter",
        lease_period: float = 15.0,
        replicas: int = 2,
        me: str | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.me = me or replica_name()
        self._link = RedisLink(client, mono=mono)
        self._mono = mono
        self._lease = Lease(
            self._link,
            key=f"{prefix}:lease",
            replicas_key=f"{prefix}:replicas",
            me=self.me,
            period=lease_period,
            mono=mono,
        )
        self._windows = SharedWindows(
            self._link,
            me=self.me,
            replicas_key=f"{prefix}:replicas",
            expected=replicas,
            period=lease_period,
            wall=wall,
            mono=mono,
        )
        self._state = f"{prefix}:state"
        self._changes = f"{prefix}:state:changes"
        self._generation = f"{prefix}:state:generation"
        self._save = client.register_script(_SAVE)
        self._heartbeat_at = float("-inf")
        self._stop = threading.Event()
        self._tick()  # the role is known before the first scrape
        self._thread = threading.Thread(target=self._run, name="redis-lease", daemon=True)
        self._thread.start()

    # --- the background thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._lease.tick_interval):
            try:
                self._tick()
            except Exception:  # the thread must live on
                log.exception("Redis store: periodic work failed")

    def _tick(self) -> None:
        try:
            now = self._mono()
            if now - self._heartbeat_at >= self._lease.period * RENEW_SHARE or self._link.down:
                self._windows.sync()  # this replica's calls are in Redis before it says it is live
                self._lease.heartbeat()
                self._heartbeat_at = now
            self._lease.tick()
        except StoreError:
            pass  # the link logged it; storage_up says it

    # --- StateStore ------------------------------------------------------------------------------

    @property
    def windows(self) -> SharedWindows:
        return self._windows

    def role(self) -> Role:
        if self._lease.held():
            return "leader"
        return "follower" if self._link.ok else "alone"

    def up(self) -> bool:
        return self._link.ok

    def load(self, since: int = 0) -> Changes:
        def complete(client: redis.Redis) -> Any:
            pipe = client.pipeline(transaction=True)
            pipe.get(self._generation)
            pipe.hgetall(self._state)
            return pipe.execute()

        if since > 0:
            current = int(self._link.run("state read", lambda client: client.get(self._generation)) or 0)
            if current == since:
                return Changes(since, {}, complete=False)
            if current > since:
                return self._changes_since(since)
            # the generation went back: Redis lost its data; read everything there is
        generation, values = self._link.run("state read", complete)
        return Changes(int(generation or 0), _parse(values), complete=True)

    def _changes_since(self, since: int) -> Changes:
        changed: list[Any] = self._link.run(
            "state read",
            lambda client: client.zrangebyscore(self._changes, f"({since}", "+inf", withscores=True),
        )
        if not changed:
            return Changes(since, {}, complete=False)
        keys = [str(key) for key, _ in changed]
        values: list[Any] = self._link.run("state read", lambda client: client.hmget(self._state, keys))
        found = {key: str(value) for key, value in zip(keys, values, strict=True) if value is not None}
        records = _parse(found)
        records.update({key: None for key in keys if key not in found})
        return Changes(int(max(float(score) for _, score in changed)), records, complete=False)

    def save(self, upserts: Mapping[str, Record], deletes: Collection[str]) -> None:
        args: list[str | int] = [self.me, len(upserts)]
        for key, record in upserts.items():
            args += [key, json.dumps(record, separators=(",", ":"))]
        args += list(deletes)
        keys = [self._lease.key, self._state, self._changes, self._generation]
        generation = self._link.run("state write", lambda _: self._save(keys=keys, args=args))
        if generation == -1:
            raise StoreError("this replica no longer holds the lease; it did not write")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._lease.period)
        with contextlib.suppress(StoreError):
            self._lease.release()
        self._link.close()


def _parse(values: Mapping[str, str]) -> dict[str, Record | None]:
    records: dict[str, Record | None] = {}
    unreadable = 0
    for key, value in values.items():
        try:
            record = json.loads(value)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(record, dict):
            records[key] = record
        else:
            unreadable += 1
    if unreadable:
        log.warning("shared records are not JSON objects; skipped", extra={"records": unreadable})
    return records
