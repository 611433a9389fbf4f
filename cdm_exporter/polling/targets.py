"""The running exporter: one poller per configured target, collections, snapshots, reloads.

``collect()`` refreshes the targets in parallel within a deadline; each target's refresh is a
single flight on a thread of its own, so concurrent scrapes (``/metrics`` and ``/probe`` alike)
share one collection, and a scrape waiting for a hanging target holds no thread another target
needs. At most :data:`MAX_WAITERS_PER_TARGET` scrapes wait for one target's collection; more
concurrent ones are served what is known at once (they would get no fresher data by waiting).

A reload keeps the API budget's buckets (what was spent stays spent) and, when only the collection
settings changed, each target's known state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import NamedTuple

from cdm_exporter.config import CollectionConfig, Config, TargetConfig
from cdm_exporter.polling.budget import Budgets
from cdm_exporter.polling.client_factory import ClientFactory, build_client
from cdm_exporter.polling.poller import TargetPoller
from cdm_exporter.polling.singleflight import SingleFlight
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.telemetry import ApiTelemetry, TelemetrySnapshot

log = logging.getLogger(__name__)

#: scrapes that may wait for one target's collection at the same time
MAX_WAITERS_PER_TARGET = 4


class UnknownTarget(KeyError):
    """``/probe`` asked for a target name that is not configured."""


class Readiness(NamedTuple):
    """``/-/ready``'s answer: ``summary`` names no target; ``failing`` does, for those allowed to know."""

    ok: bool
    summary: str
    failing: tuple[str, ...] = ()


class _Target:
    def __init__(self, poller: TargetPoller, telemetry: ApiTelemetry) -> None:
        self.poller = poller
        self.telemetry = telemetry
        self.flight = SingleFlight()
        self.waiters = 0  # scrapes waiting for this target's collection (under Exporter._lock)


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        client_factory: ClientFactory = build_client,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        full_minute_budget: bool = False,
    ) -> None:
        self._client_factory = client_factory
        self._wall = wall
        self._mono = mono
        self._full_minute_budget = full_minute_budget
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        self._collection: CollectionConfig | None = None
        self._budgets: Budgets | None = None
        self._closed = False
        self._durations: dict[str | None, float] = {}
        self.collections = 0  # completed collect() calls, for /-/ready and tests
        self.config = config
        self.apply(config)

    # --- configuration -------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        """Use ``config`` from now on; targets whose settings did not change keep their state."""
        with self._lock:
            same_collection = self._collection == config.collection
            budget = config.collection.budget_per_minute
            per_minute = {"job_status": budget.job_status, "common": budget.common}
            if self._budgets is None:
                self._budgets = Budgets(per_minute, clock=self._mono, full_minute=self._full_minute_budget)
            elif not same_collection:
                # the same buckets at the new rates: fresh ones would forget the last minute's calls
                self._budgets.set_per_minute(per_minute)
            old = self._targets
            new: dict[str, _Target] = {}
            for target in config.targets:
                kept = old.get(target.name)
                if kept is not None and same_collection and kept.poller.target == target:
                    new[target.name] = kept
                    continue
                if kept is not None and kept.poller.target == target:
                    # only the collection settings changed: carry the state and the call counts over
                    made = self._make_target(target, config.collection, self._budgets, kept.telemetry)
                    made.poller.adopt(kept.poller)
                else:
                    made = self._make_target(target, config.collection, self._budgets)
                new[target.name] = made
            closing = [t for name, t in old.items() if new.get(name) is not t]
            self._targets = new
            self._collection = config.collection
            self.config = config
        for gone in closing:
            gone.poller.close()

    def _make_target(
        self,
        target: TargetConfig,
        collection: CollectionConfig,
        budgets: Budgets,
        telemetry: ApiTelemetry | None = None,
    ) -> _Target:
        telemetry = telemetry or ApiTelemetry()
        client, identity = self._client_factory(target, collection, telemetry.observe)
        poller = TargetPoller(target, collection, client, budgets, identity, wall=self._wall, mono=self._mono)
        return _Target(poller, telemetry)

    @property
    def target_names(self) -> list[str]:
        with self._lock:
            return list(self._targets)

    def _select(self, names: Sequence[str] | None) -> list[_Target]:
        with self._lock:
            if names is None:
                return list(self._targets.values())
            missing = [n for n in names if n not in self._targets]
            if missing:
                raise UnknownTarget(missing[0])
            return [self._targets[n] for n in names]

    # --- collecting ----------------------------------------------------------------------------

    def collect(self, timeout: float, targets: Sequence[str] | None = None) -> None:
        """Refresh the selected targets (all by default), returning within ``timeout`` seconds."""
        started = self._mono()
        deadline = started + max(0.0, timeout)
        selected = self._select(targets)
        waiting: list[tuple[_Target, Future[None]]] = []
        for target in selected:
            future = self._start_refresh(target, deadline)
            with self._lock:
                if future is None or target.waiters >= MAX_WAITERS_PER_TARGET:
                    continue  # closed, or enough scrapes wait for it already: serve what is known
                target.waiters += 1
            waiting.append((target, future))
        try:
            wait([future for _, future in waiting], timeout=max(0.0, deadline - self._mono()))
        finally:
            with self._lock:
                for target, _ in waiting:
                    target.waiters -= 1
                self._durations[None if targets is None else ",".join(targets)] = self._mono() - started
                self.collections += 1

    def _start_refresh(self, target: _Target, deadline: float) -> Future[None] | None:
        if self._closed:
            return None
        return target.flight.start(lambda: target.poller.refresh(deadline), name="cdm-refresh")

    def snapshot(self, targets: Sequence[str] | None = None) -> Snapshot:
        selected = self._select(targets)
        with self._lock:
            duration = self._durations.get(None if targets is None else ",".join(targets))
        return Snapshot(
            targets=tuple(t.poller.view() for t in selected),
            telemetry=TelemetrySnapshot.merge(t.telemetry.snapshot() for t in selected),
            scrape_duration=duration,
        )

    def ready(self) -> Readiness:
        """Ready when a collection ran and at least one target authenticated at its last call."""
        selected = self._select(None)
        if not selected:
            return Readiness(False, "no targets configured")
        states = {t.poller.target.name: t.poller.authenticated for t in selected}
        failing = tuple(sorted(name for name, ok in states.items() if ok is False))
        if all(v is None for v in states.values()):
            return Readiness(False, "no target has authenticated yet")
        if not any(states.values()):
            return Readiness(False, f"authentication failed for every target ({len(states)})", failing)
        return Readiness(True, "ready", failing)

    def close(self) -> None:
        self._closed = True
        for target in self._select(None):
            target.poller.close()
