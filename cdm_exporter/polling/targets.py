"""The running exporter: one poller per configured target, collections, snapshots, reloads.

``collect()`` refreshes the targets in parallel within a deadline; each target's refresh is a
single flight, so concurrent scrapes (``/metrics`` and ``/probe`` alike) share one collection.

With a state store (:mod:`cdm_exporter.polling.persistence`), what the targets knew is read back
before the first scrape, written in the background, and the budget's windows live in the store.
A replica that does not lead (Redis: another one holds the lease) does not poll: its scrapes serve
the state the leader shares.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from cdm_exporter.config import CollectionConfig, Config, TargetConfig
from cdm_exporter.polling.budget import Budgets
from cdm_exporter.polling.client_factory import ClientFactory, build_client
from cdm_exporter.polling.persistence import RecordItem, RecordKey, RecordSource, StateStore, StateSync
from cdm_exporter.polling.poller import TargetPoller
from cdm_exporter.polling.records import Record
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.telemetry import ApiTelemetry, TelemetrySnapshot
from cdm_exporter.singleflight import FlightTimeout, SingleFlight

log = logging.getLogger(__name__)

#: the kinds of record the targets' pollers store (``TargetPoller.records``)
POLLER_KINDS = frozenset({"target", "cluster", "job"})
#: with a state store, a leader that no scrape reached for this long polls on its own (replicas
#: behind a Service: the scrapes may all go to a follower)
IDLE_POLL_SECONDS = 30.0


class UnknownTarget(KeyError):
    """``/probe`` asked for a target name that is not configured."""


class _Target:
    def __init__(self, poller: TargetPoller, telemetry: ApiTelemetry) -> None:
        self.poller = poller
        self.telemetry = telemetry
        self.flight: SingleFlight[None] = SingleFlight()


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        client_factory: ClientFactory = build_client,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        full_minute_budget: bool = False,
        store: StateStore | None = None,
        store_interval: float = 5.0,
        record_sources: Mapping[str, RecordSource] | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._store = store
        self._wall = wall
        self._mono = mono
        self._full_minute_budget = full_minute_budget
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        self._collection: CollectionConfig | None = None
        self._budgets: Budgets | None = None
        # one worker per target and concurrent scrape: a scrape joining another's collection waits
        # in its worker, and must never queue the collection it waits for behind itself
        # (threads are started only as needed)
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="cdm-target")
        self._durations: dict[str | None, float] = {}
        self.collections = 0  # completed collect() calls, for /-/ready and tests
        self.config = config
        self._last_collection: float | None = None
        self._record_sources: dict[str, RecordSource] = {}
        for kind, source in (record_sources or {}).items():
            self.add_record_source(kind, source)
        self.apply(config)
        self._sync: StateSync | None = None
        if store is not None:
            self._sync = StateSync(store, self, interval=store_interval, on_tick=self._poll_if_idle)
            self._sync.restore()
            self._sync.start()

    # --- configuration -------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        """Use ``config`` from now on; targets whose settings did not change keep their state."""
        with self._lock:
            same_collection = self._collection == config.collection
            if not same_collection or self._budgets is None:
                budget = config.collection.budget_per_minute
                self._budgets = Budgets(
                    {"job_status": budget.job_status, "common": budget.common},
                    clock=self._mono,
                    full_minute=self._full_minute_budget,
                    windows=self._store.windows if self._store is not None else None,
                )
            old = self._targets
            new: dict[str, _Target] = {}
            for target in config.targets:
                kept = old.get(target.name)
                if kept is not None and same_collection and kept.poller.target == target:
                    new[target.name] = kept
                else:
                    new[target.name] = self._make_target(target, config.collection, self._budgets)
            closing = [t for name, t in old.items() if new.get(name) is not t]
            self._targets = new
            self._collection = config.collection
            self.config = config
        for gone in closing:
            gone.poller.close()

    def _make_target(self, target: TargetConfig, collection: CollectionConfig, budgets: Budgets) -> _Target:
        telemetry = ApiTelemetry()
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
        if self.polls:  # a follower serves the leader's shared state
            futures = [self._pool.submit(self._refresh_one, t, deadline) for t in selected]
            wait(futures, timeout=max(0.0, deadline - self._mono()))
        with self._lock:
            self._durations[None if targets is None else ",".join(targets)] = self._mono() - started
            self.collections += 1
            self._last_collection = started

    @property
    def polls(self) -> bool:
        """Whether this process polls the API (``cdm_exporter_leader``): it leads, or it is cut
        off from the replicas' shared store and polls alone on its share of the budget."""
        return self._store is None or self._store.role() != "follower"

    def _poll_if_idle(self) -> None:
        with self._lock:
            last = self._last_collection
        if self.polls and (last is None or self._mono() - last >= IDLE_POLL_SECONDS):
            self._pool.submit(self.collect, self.config.collection.default_scrape_timeout)

    # --- stored state --------------------------------------------------------------------------

    def add_record_source(self, kind: str, source: RecordSource) -> None:
        """Store more than the pollers' state: ``source`` produces the records whose key starts
        with ``kind`` and takes them back (project discovery's results, say). Before the store
        is read, so at construction: ``Exporter(..., record_sources={kind: source})``."""
        if kind in POLLER_KINDS:
            raise ValueError(f"{kind!r} records are the pollers'")
        self._record_sources[kind] = source

    def records(self) -> Iterable[RecordItem]:
        """Every target's records, and those of the other record sources, for the state store."""
        for target in self._select(None):
            yield from target.poller.records()
        for source in list(self._record_sources.values()):
            yield from source.records()

    def restore(self, records: Mapping[RecordKey, Record | None], *, complete: bool) -> None:
        """Hand stored records to the pollers of their targets (``key[1]`` names the target), and
        other kinds to their record sources."""
        by_target: dict[str, dict[RecordKey, Record | None]] = {}
        by_kind: dict[str, dict[RecordKey, Record | None]] = {}
        for key, record in records.items():
            if key[0] in POLLER_KINDS and len(key) >= 2:
                by_target.setdefault(key[1], {})[key] = record
            else:
                by_kind.setdefault(key[0], {})[key] = record
        for kind, source in list(self._record_sources.items()):
            if kind in by_kind or complete:
                source.restore(by_kind.get(kind, {}), complete=complete)
        unreadable = 0
        for target in self._select(None):
            mine = by_target.get(target.poller.target.name)
            if mine is not None or complete:
                unreadable += target.poller.restore(mine or {}, complete=complete)
        if unreadable:
            log.warning(
                "stored records could not be read; what they held is fetched from the API again",
                extra={"records": unreadable},
            )

    def _refresh_one(self, target: _Target, deadline: float) -> None:
        try:
            target.flight.do(lambda: target.poller.refresh(deadline), deadline - self._mono())
        except FlightTimeout:
            pass  # another scrape's collection outlives our deadline: serve what is known
        except Exception:
            log.exception("collection failed", extra={"target": target.poller.target.name})

    def snapshot(self, targets: Sequence[str] | None = None) -> Snapshot:
        selected = self._select(targets)
        with self._lock:
            duration = self._durations.get(None if targets is None else ",".join(targets))
        return Snapshot(
            targets=tuple(t.poller.view() for t in selected),
            telemetry=TelemetrySnapshot.merge(t.telemetry.snapshot() for t in selected),
            scrape_duration=duration,
            storage_up=None if self._store is None else self._store.up(),
            leader=self.polls,
        )

    def ready(self) -> tuple[bool, str]:
        """Ready when a collection ran and at least one target authenticated at its last call."""
        selected = self._select(None)
        if not selected:
            return False, "no targets configured"
        states = {t.poller.target.name: t.poller.authenticated for t in selected}
        if all(v is None for v in states.values()):
            return False, "no target has authenticated yet"
        if not any(states.values()):
            return False, "authentication failed for every target: " + ", ".join(sorted(states))
        return True, "ready"

    def close(self) -> None:
        """Stop polling; with a state store, write what is known one last time and close it."""
        if self._sync is not None:
            self._sync.stop()
        for target in self._select(None):
            target.poller.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            self._store.close()
