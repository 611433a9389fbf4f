"""The running exporter: one poller per configured target, collections, snapshots, reloads.

``collect()`` refreshes the targets in parallel within a deadline; each target's refresh is a
single flight, so concurrent scrapes (``/metrics`` and ``/probe`` alike) share one collection.
Between scrapes a pacer thread goes on spending the budgets as they refill (``pace()``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Literal

from cdm_exporter.config import CollectionConfig, Config, TargetConfig
from cdm_exporter.polling.budget import Budgets
from cdm_exporter.polling.client_factory import ClientFactory, build_client
from cdm_exporter.polling.poller import TargetPoller
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.telemetry import ApiTelemetry, TelemetrySnapshot
from cdm_exporter.singleflight import FlightTimeout, SingleFlight

log = logging.getLogger(__name__)

#: the pacer looks again after at least this long, even when a call could be sent at once
PACER_MIN_SLEEP_SECONDS = 0.01


Pacing = Literal["thread", "caller", "off"]


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
        pacing: Pacing = "thread",
    ) -> None:
        """``pacing``: how calls go on between scrapes. ``thread``: a pacer thread, which waits in
        real time; ``caller``: the caller calls :meth:`pace` (with an injected clock); ``off``:
        only the scrapes call the API (a one-shot ``check``, tests of the scrapes alone)."""
        self._client_factory = client_factory
        self._wall = wall
        self._mono = mono
        self._pacing = pacing
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
        self.apply(config)
        self._closed = False
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
            if not same_collection or self._budgets is None:
                budget = config.collection.budget_per_minute
                self._budgets = Budgets(
                    {"job_status": budget.job_status, "common": budget.common}, clock=self._mono
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
        poller = TargetPoller(
            target,
            collection,
            client,
            budgets,
            identity,
            wall=self._wall,
            mono=self._mono,
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
        futures = [self._pool.submit(self._refresh_one, t, deadline) for t in selected]
        wait(futures, timeout=max(0.0, deadline - self._mono()))
        with self._lock:
            self._durations[None if targets is None else ",".join(targets)] = self._mono() - started
            self.collections += 1
        self._wake.set()  # the pacer goes on from this scrape's plan

    def pace(self) -> tuple[list[Future[None]], float | None]:
        """Start the calls every target's budgets allow now between scrapes; returns them and
        when to look again (None: not before the next scrape). The pacer thread calls it; a
        test or benchmark with an injected clock calls it itself."""
        started: list[Future[None]] = []
        looks: list[float] = []
        for target in self._select(None):
            try:
                futures, look = target.poller.pace()
            except RuntimeError:  # the target was closed by a reload meanwhile
                continue
            started += futures
            if look is not None:
                looks.append(look)
        return started, min(looks, default=None)

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
            status_series=self.config.collection.status_series,
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
        self._closed = True
        self._wake.set()
        for target in self._select(None):
            target.poller.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
