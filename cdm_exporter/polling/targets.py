"""The running exporter: one poller per configured target, collections, snapshots, reloads.

``collect()`` refreshes the targets in parallel within a deadline; each target's refresh is a
single flight on a thread of its own, so concurrent scrapes (``/metrics`` and ``/probe`` alike)
share one collection, and a scrape waiting for a hanging target holds no thread another target
needs. At most :data:`MAX_WAITERS_PER_TARGET` scrapes wait for one target's collection; more
concurrent ones are served what is known at once (they would get no fresher data by waiting).
A ``projects`` target is a :class:`ProjectDiscovery` (one poller per discovered project) in
place of a single poller. Between scrapes a pacer thread goes on spending the budgets as they
refill (``pace()``).

A reload keeps the API budget's buckets (what was spent stays spent; discovered projects draw from
the same ones) and, when only the collection settings changed, each target's known state: the
new poller adopts what the old one knew of each job, so run counters go on.

With a state store (:mod:`cdm_exporter.polling.persistence`), what the targets knew is read back
before the first scrape, written in the background, and the budget's windows live in the store;
a ``projects`` target stores its discovery results and its projects' pollers' state as well. A
replica that does not lead (Redis: another one holds the lease) does not poll: its scrapes serve
the state the leader shares.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Literal, NamedTuple

from cdm_exporter.api.endpoints import Policy
from cdm_exporter.config import CollectionConfig, Config, TargetConfig
from cdm_exporter.polling.budget import Budgets, budget_identity
from cdm_exporter.polling.client_factory import (
    ClientFactory,
    ListerFactory,
    build_client,
    build_project_lister,
)
from cdm_exporter.polling.discovery import DISCOVERY_KIND, ProjectDiscovery
from cdm_exporter.polling.persistence import RecordItem, RecordKey, RecordSource, StateStore, StateSync
from cdm_exporter.polling.poller import Paced, TargetPoller, pace_each
from cdm_exporter.polling.records import Record
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import TargetView
from cdm_exporter.polling.telemetry import ApiTelemetry, TelemetrySnapshot
from cdm_exporter.singleflight import SingleFlight

log = logging.getLogger(__name__)

#: scrapes that may wait for one target's collection at the same time
MAX_WAITERS_PER_TARGET = 4
#: the kinds of record the targets store: their pollers' (``TargetPoller.records``) and project
#: discovery's (``ProjectDiscovery.records``)
POLLER_KINDS = frozenset({"target", "cluster", "job"})
TARGET_KINDS = POLLER_KINDS | {DISCOVERY_KIND}
#: with a state store, a leader that no scrape reached for this long polls on its own (replicas
#: behind a Service: the scrapes may all go to a follower)
IDLE_POLL_SECONDS = 30.0

#: the pacer looks again after at least this long, even when a call could be sent at once
PACER_MIN_SLEEP_SECONDS = 0.01


Pacing = Literal["thread", "caller", "off"]


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
        store: StateStore | None = None,
        store_interval: float = 5.0,
        record_sources: Mapping[str, RecordSource] | None = None,
        pacing: Pacing = "thread",
    ) -> None:
        """``one_shot``: for ``check``, which collects once and reports what failed: it reads no
        run history (its report does not show the last success) and logs failed calls and runs at
        debug level. ``read_history`` overrides the history part (``check --record`` reads it, so
        that a replay serves what ``serve`` needs). ``pacing``: how calls go on between scrapes.
        ``thread``: a pacer thread, which waits in real time; ``caller``: the caller calls
        :meth:`pace` (with an injected clock); ``off``: only the scrapes call the API (a one-shot
        ``check``, tests of the scrapes alone)."""
        self._client_factory = client_factory
        self._lister_factory = lister_factory
        self._store = store
        self._wall = wall
        self._mono = mono
        self._one_shot = one_shot
        self._read_history = not one_shot if read_history is None else read_history
        self._pacing = pacing
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        self._collection: CollectionConfig | None = None
        self._budgets: Budgets | None = None
        self._closed = False
        self._durations: dict[str | None, float] = {}
        self.collections = 0  # completed collect() calls, for /-/ready and tests
        self.config = config
        self._last_collection: float | None = None
        # a leader no scrape reached polls on its own, one collection at a time
        self._idle_poll = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdm-idle-poll")
        self._idle_polled: Future[None] | None = None
        self._record_sources: dict[str, RecordSource] = {}
        for kind, source in (record_sources or {}).items():
            self.add_record_source(kind, source)
        self.apply(config)
        self._sync: StateSync | None = None
        if store is not None:
            self._sync = StateSync(store, self, interval=store_interval, on_tick=self._poll_if_idle)
            self._sync.restore()
            self._sync.start()
        self._wake = threading.Event()  # a scrape came, or close(): the pacer looks again
        self._pacer: threading.Thread | None = None
        if pacing == "thread":
            self._pacer = threading.Thread(target=self._pace_loop, name="cdm-pacer", daemon=True)
            self._pacer.start()

    # --- configuration -------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        """Use ``config`` from now on; targets whose settings did not change keep their state."""
        with self._lock:
            same_collection = self._collection == config.collection
            budget = config.collection.budget_per_minute
            per_minute: dict[Policy, int] = {"job_status": budget.job_status, "common": budget.common}
            if self._budgets is None:
                self._budgets = Budgets(
                    per_minute,
                    clock=self._mono,
                    windows=self._store.windows if self._store is not None else None,
                )
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
                paced=self._pacing != "off",
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
            paced=self._pacing != "off",
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
        for target in selected if self.polls else ():  # a follower serves the leader's shared state
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
                self._last_collection = started
        self._wake.set()  # the pacer goes on from this scrape's plan

    @property
    def polls(self) -> bool:
        """Whether this process polls the API (``cdm_exporter_leader``): it leads, or it is cut
        off from the replicas' shared store and polls alone on its share of the budget."""
        return self._store is None or self._store.role() != "follower"

    def _poll_if_idle(self) -> None:
        with self._lock:
            last = self._last_collection
        due = last is None or self._mono() - last >= IDLE_POLL_SECONDS
        running = self._idle_polled is not None and not self._idle_polled.done()
        if self.polls and not self._closed and due and not running:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                timeout = self.config.collection.default_scrape_timeout
                self._idle_polled = self._idle_poll.submit(self.collect, timeout)

    # --- stored state --------------------------------------------------------------------------

    def add_record_source(self, kind: str, source: RecordSource) -> None:
        """Store more than the targets' state: ``source`` produces the records whose key starts
        with ``kind`` and takes them back. Before the store is read, so at construction:
        ``Exporter(..., record_sources={kind: source})``."""
        if kind in TARGET_KINDS:
            raise ValueError(f"{kind!r} records are the targets'")
        self._record_sources[kind] = source

    def records(self) -> Iterable[RecordItem]:
        """Every target's records (a ``projects`` target's: its discovery results and its
        projects' pollers'), and those of the other record sources, for the state store."""
        for target in self._select(None):
            yield from target.poller.records()
        for source in list(self._record_sources.values()):
            yield from source.records()

    def restore(self, records: Mapping[RecordKey, Record | None], *, complete: bool) -> None:
        """Hand stored records to their targets (``key[1]`` names the target; a discovered
        project's poller is named ``<target>/<project>``), and other kinds to their record
        sources."""
        by_target: dict[str, dict[RecordKey, Record | None]] = {}
        by_kind: dict[str, dict[RecordKey, Record | None]] = {}
        for key, record in records.items():
            if key[0] in TARGET_KINDS and len(key) >= 2:
                by_target.setdefault(key[1], {})[key] = record
            else:
                by_kind.setdefault(key[0], {})[key] = record
        for kind, source in list(self._record_sources.items()):
            if kind in by_kind or complete:
                source.restore(by_kind.get(kind, {}), complete=complete)
        unreadable = 0
        for target in self._select(None):
            name = target.poller.target.name
            if isinstance(target.poller, ProjectDiscovery):
                prefix = name + "/"
                mine = {
                    key: record
                    for owner, held in by_target.items()
                    if owner == name or owner.startswith(prefix)
                    for key, record in held.items()
                }
            else:
                mine = by_target.get(name, {})
            if mine or complete:
                unreadable += target.poller.restore(mine, complete=complete)
        if unreadable:
            log.warning(
                "stored records could not be read; what they held is fetched from the API again",
                extra={"records": unreadable},
            )

    def _start_refresh(self, target: _Target, deadline: float) -> Future[None] | None:
        if self._closed:
            return None
        return target.flight.start(lambda: self._refresh(target, deadline), name="cdm-refresh")

    def pace(self) -> Paced:
        """Start the calls every target's budgets allow now between scrapes; returns them and
        when to look again (None: not before the next scrape). The pacer thread calls it; a
        test or benchmark with an injected clock calls it itself."""
        if self._closed or not self.polls:  # a follower serves the leader's shared state
            return [], None
        return pace_each(target.poller.pace for target in self._select(None))

    def _pace_loop(self) -> None:
        while not self._closed:
            self._wake.clear()  # before looking: a scrape that comes meanwhile is not missed
            try:
                _, look = self.pace()
            except Exception:
                log.exception("pacing failed")
                look = self._mono() + 1.0
            timeout = None if look is None else max(PACER_MIN_SLEEP_SECONDS, look - self._mono())
            self._wake.wait(timeout)

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
            storage_up=None if self._store is None else self._store.up(),
            leader=self.polls,
            status_series=self.config.collection.status_series,
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
        """Stop polling; with a state store, write what is known one last time and close it."""
        self._closed = True
        self._wake.set()
        if self._sync is not None:
            self._sync.stop()
        self._idle_poll.shutdown(wait=False, cancel_futures=True)
        for target in self._select(None):
            target.poller.close()
        if self._store is not None:
            self._store.close()
