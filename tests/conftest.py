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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from exporter_stack import ExporterServer

from cdm_exporter.simulator import ManualClock, Simulator, SimulatorSettings

FAST_TIME_SCALE = 60.0


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
