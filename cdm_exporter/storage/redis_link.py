"""One Redis connection and whether it works: every Redis call of a replica goes through here.

A failed call marks the link down (``cdm_exporter_storage_up 0``, one warning) and raises
:class:`~cdm_exporter.polling.persistence.StoreError`; the next call that works marks it up again
(one info line). :attr:`RedisLink.last_contact` is when a call last worked: a replica cut off
from Redis knows from it how long others may have counted on it (the shared budget's fallback).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cdm_exporter.polling.persistence import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")


def connect(
    url: str,
    *,
    password: str | None,
    timeout: float,
    ca_file: str | None = None,
) -> redis.Redis:
    """A client for ``url`` (``redis://`` or ``rediss://`` for TLS) that gives up after ``timeout``
    seconds and never retries on its own: the caller decides what a failure means."""
    extra: dict[str, object] = {}
    if ca_file is not None:
        extra["ssl_ca_certs"] = ca_file
    client: redis.Redis = redis.Redis.from_url(
        url,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **extra,
    )
    return client


class RedisLink:
    def __init__(self, client: redis.Redis, *, mono: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._mono = mono
        self._lock = threading.Lock()
        self._ok: bool | None = None  # None before the first call
        self.last_contact: float | None = None  # monotonic time a call last worked
        self.started = mono()
        self.epoch = 0  # how often the link went down: what was in Redis before may be gone

    @property
    def ok(self) -> bool:
        """The last call worked."""
        return bool(self._ok)

    @property
    def down(self) -> bool:
        """The last call failed (before any call, the link is neither ok nor down)."""
        return self._ok is False

    def run(self, what: str, call: Callable[[redis.Redis], T]) -> T:
        """``call(client)``; a Redis or network error becomes :class:`StoreError`."""
        try:
            result = call(self.client)
        except (redis.RedisError, OSError) as error:
            self._failed(what, error)
            raise StoreError(f"Redis {what}: {type(error).__name__}: {error}") from None
        self._worked()
        return result

    def _worked(self) -> None:
        with self._lock:
            was, self._ok = self._ok, True
            self.last_contact = self._mono()
        if was is False:
            log.info("Redis reachable again; sharing state and budget with the other replicas")

    def _failed(self, what: str, error: BaseException) -> None:
        with self._lock:
            was, self._ok = self._ok, False
            if was is not False:
                self.epoch += 1
        if was is not False:
            log.warning(
                "Redis unreachable; each replica polls alone on its share of the budget, "
                "after a minute without calls",
                extra={"during": what, "error": f"{type(error).__name__}: {error}"},
            )

    def close(self) -> None:
        self.client.close()
