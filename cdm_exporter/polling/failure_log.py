"""Logs each class of API failure once per target, not once per job per scrape.

A broken credential or an outage would otherwise write a line for every job on every scrape.
The first failure of a (scope, kind) pair is logged as a warning (or at the level the caller
gives: a stopped cluster's job list is expected to fail); repeats are counted and
summarised at most every ``repeat_after`` seconds; the first success after a failure in a scope
logs a recovery line; a scope that is gone (a deleted cluster) is forgotten silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cdm_exporter.api.errors import CdmError


@dataclass
class _Failing:
    first_logged: float
    suppressed: int = 0


class FailureLog:
    def __init__(
        self,
        logger: logging.Logger,
        target: str,
        *,
        repeat_after: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._target = target
        self._repeat_after = repeat_after
        self._clock = clock
        self._failing: dict[tuple[str, str], _Failing] = {}
        self._lock = threading.Lock()

    def failed(
        self,
        scope: str,
        error: CdmError,
        *,
        message: str = "API call failed",
        level: int = logging.WARNING,
        **fields: object,
    ) -> None:
        """Log ``error`` unless its (scope, kind) was logged within ``repeat_after``; ``fields``
        (a hint, the state that explains the failure) go into the line, ``None`` ones left out."""
        key = (scope, error.kind)
        now = self._clock()
        with self._lock:
            entry = self._failing.get(key)
            if entry is not None and now - entry.first_logged < self._repeat_after:
                entry.suppressed += 1
                return
            suppressed = entry.suppressed if entry is not None else 0
            self._failing[key] = _Failing(now)
        self._log.log(
            level,
            message,
            extra={
                "target": self._target,
                "scope": scope,
                "endpoint": error.endpoint,
                "kind": error.kind,
                "status": error.status,
                "code": error.code,
                "request_id": error.request_id,
                "error": error.message,
                **fields,
                "repeats_since_last_log": suppressed or None,
            },
        )

    def recovered(self, scope: str) -> None:
        with self._lock:
            if not self._failing:
                return
            gone = [key for key in self._failing if key[0] == scope]
            for key in gone:
                del self._failing[key]
        for _, kind in gone:
            self._log.info(
                "API calls work again", extra={"target": self._target, "endpoint": scope, "kind": kind}
            )

    def forget(self, scope: str) -> None:
        """``scope`` no longer exists (a deleted cluster): drop its failures without a recovery
        line, since it will never recover and its entry would stay for the process's life."""
        with self._lock:
            for key in [key for key in self._failing if key[0] == scope]:
                del self._failing[key]

    def failing(self) -> list[tuple[str, str]]:
        """The (scope, kind) pairs currently failing; for ``check`` and tests."""
        with self._lock:
            return sorted(self._failing)
