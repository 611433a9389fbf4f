"""The running exporter: one poller per configured target, collections, snapshots, reloads.

``collect()`` refreshes the targets in parallel within a deadline; each target's refresh is a
single flight on a thread of its own, so concurrent scrapes (``/metrics`` and ``/probe`` alike)
share one collection, and a scrape waiting for a hanging target holds no thread another target
needs. At most :data:`MAX_WAITERS_PER_TARGET` scrapes wait for one target's collection; more
concurrent ones are served what is known at once (they would get no fresher data by waiting).
A ``projects`` target is a :class:`ProjectDiscovery` (one poller per discovered project) in
place of a single poller.

A reload keeps the API budget's buckets (what was spent stays spent; discovered projects draw from
the same ones) and, when only the collection settings changed, each target's known state: the
new poller adopts what the old one knew of each job, so run counters go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import NamedTuple

from cdm_exporter.api.endpoints import Policy
from cdm_exporter.config import CollectionConfig, Config, TargetConfig
from cdm_exporter.polling.budget import Budgets, budget_identity
from cdm_exporter.polling.client_factory import (
    ClientFactory,
    ListerFactory,
    build_client,
    build_project_lister,
)
from cdm_exporter.polling.discovery import ProjectDiscovery
from cdm_exporter.polling.poller import TargetPoller
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import TargetView
from cdm_exporter.polling.telemetry import ApiTelemetry, TelemetrySnapshot
from cdm_exporter.singleflight import SingleFlight

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
    def __init__(self, poller: TargetPoller | ProjectDiscovery, telemetry: ApiTelemetry) -> None:
        self.poller = poller
        self.telemetry = telemetry
        self.flight: SingleFlight[None] = SingleFlight()
        self.waiters = 0  # scrapes waiting for this target's collection (under Exporter._lock)

    def views(self) -> tuple[TargetView, ...]:
        if isinstance(self.poller, ProjectDiscovery):
            return self.poller.views()
        return (self.poller.view(),)

    def adopt(self, old: _Target) -> None:
        """Take over what ``old`` (the same target before a reload) knows."""
        match self.poller, old.poller:  # equal targets: both discover projects, or neither
            case ProjectDiscovery() as new, ProjectDiscovery() as known:
                new.adopt(known)
            case TargetPoller() as new, TargetPoller() as known:
                new.adopt(known)


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        client_factory: ClientFactory = build_client,
        lister_factory: ListerFactory = build_project_lister,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        one_shot: bool = False,
        read_history: bool | None = None,
    ) -> None:
        """``one_shot``: for ``check``, which collects once and reports what failed: it may spend a
        whole minute's budget at once, reads no run history (its report does not show the last
        success) and logs failed calls and runs at debug level. ``read_history`` overrides the
        history part (``check --record`` reads it, so that a replay serves what ``serve`` needs)."""
        self._client_factory = client_factory
        self._lister_factory = lister_factory
        self._wall = wall
        self._mono = mono
        self._one_shot = one_shot
        self._read_history = not one_shot if read_history is None else read_history
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
            per_minute: dict[Policy, int] = {"job_status": budget.job_status, "common": budget.common}
            if self._budgets is None:
                self._budgets = Budgets(per_minute, clock=self._mono, full_minute=self._one_shot)
            elif not same_collection:
                # the same buckets at the new rates: fresh ones would forget the last minute's calls
                self._budgets.set_per_minute(per_minute)
                if (
                    self._collection is not None
                    and self._collection.budget_scope != config.collection.budget_scope
                ):
                    self._budgets.rescope()
            old = self._targets
            new: dict[str, _Target] = {}
            for target in config.targets:
                kept = old.get(target.name)
                if kept is not None and same_collection and kept.poller.target == target:
                    kept.poller.target = target  # equal, but may name its settings differently
                    new[target.name] = kept
                    continue
                if kept is not None and kept.poller.target == target:
                    # only the collection settings changed: carry the state and the call counts over
                    made = self._make_target(target, config.collection, self._budgets, kept.telemetry)
                    made.adopt(kept)
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
        if target.projects is not None:
            discovery = ProjectDiscovery(
                target,
                collection,
                client_factory=self._client_factory,
                lister_factory=self._lister_factory,
                budgets=budgets,
                observer=telemetry.observe,
                wall=self._wall,
                mono=self._mono,
                one_shot=self._one_shot,
                read_history=self._read_history,
            )
            return _Target(discovery, telemetry)
        client, identity = self._client_factory(target, collection, telemetry.observe)
        identity = budget_identity(identity, target.region, collection.budget_scope)
        poller = TargetPoller(
            target,
            collection,
            client,
            budgets,
            identity,
            wall=self._wall,
            mono=self._mono,
            one_shot=self._one_shot,
            read_history=self._read_history,
        )
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
        return target.flight.start(lambda: self._refresh(target, deadline), name="cdm-refresh")

    @staticmethod
    def _refresh(target: _Target, deadline: float) -> None:
        try:
            target.poller.refresh(deadline)
        except Exception:  # a bug in one target must not end the others' collection
            log.exception("collection failed", extra={"target": target.poller.target.name})

    def snapshot(self, targets: Sequence[str] | None = None) -> Snapshot:
        selected = self._select(targets)
        with self._lock:
            duration = self._durations.get(None if targets is None else ",".join(targets))
        return Snapshot(
            targets=tuple(view for t in selected for view in t.views()),
            telemetry=TelemetrySnapshot.merge(t.telemetry.snapshot() for t in selected),
            scrape_duration=duration,
            discoveries=tuple(
                t.poller.discovery() for t in selected if isinstance(t.poller, ProjectDiscovery)
            ),
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
