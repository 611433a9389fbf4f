"""Shared pytest fixtures: a running CDM simulator on 127.0.0.1 (no network needed).

* ``simulator``: a started :class:`Simulator` with default settings except a fast
  ``time_scale`` (60: one simulated minute per second), stopped after the test;
* ``make_simulator``: a factory, ``make_simulator(jobs=3, rate_limit=5, ...)`` takes
  :class:`SimulatorSettings` fields and returns a started simulator, stopped after the test;
* ``manual_clock``: a :class:`ManualClock` starting at the real current time (so AK/SK
  signatures, checked against the wall clock, still verify);
* ``exporter_server``: one :class:`ExporterServer` per test module, serving whichever exporter
  a test mounts;
* ``restore_logging`` (autouse): the root logger as pytest left it after every test, so that a
  command run in-process (``check --log.level debug``) does not change what later tests log.

Under pytest-xdist (``scripts/test`` runs ``-n 2 --dist loadfile --no-loadscope-reorder``: each
worker takes one whole module at a time, the next when it is done) the modules that wait through
minutes of real time are handed out first (:data:`SLOWEST_MODULES`), so that none of them starts
last and keeps one worker busy alone while the other has nothing left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
from exporter_stack import ExporterServer

from cdm_exporter.simulator import ManualClock, Simulator, SimulatorSettings

FAST_TIME_SCALE = 60.0
#: the modules that take longest (minutes of real time each), slowest first
SLOWEST_MODULES = ("test_replicas.py", "test_faults.py", "test_live_prometheus.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, the slowest modules first; the order within a module is kept."""
    if not hasattr(config, "workerinput"):  # in one process the order does not matter
        return
    rank = {name: position for position, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In an xdist worker, captured output with lone surrogates escaped: a worker sends its reports
    as UTF-8 and dies on one (pytest-xdist issue 843), and ``test_logs`` logs one on purpose."""
    report = yield
    if hasattr(item.config, "workerinput"):
        report.sections = [
            (title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
            for title, text in report.sections
        ]
    return report


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorSettings(time_scale=FAST_TIME_SCALE)) as sim:
        yield sim


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def make(**settings: Any) -> Simulator:
        sim = Simulator(SimulatorSettings(**settings))
        sim.start("127.0.0.1", 0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture(scope="module")
def exporter_server() -> Iterator[ExporterServer]:
    server = ExporterServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Every test may reconfigure the root logger; put it back as pytest left it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filters = {h: list(h.filters) for h in handlers}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for handler, kept in filters.items():
        handler.filters[:] = kept
    logging.captureWarnings(False)
