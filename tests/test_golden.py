"""A golden exposition: fixed simulator seed, fixed clock, the whole metric contract at once.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and
review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from sim_targets import password_auth, sim_target

from cdm_exporter.config import Config
from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import ManualClock, Simulator, SimulatorSettings

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "seed7.prom"
#: latency is real time even with a fixed clock
NONDETERMINISTIC = ("cdm_api_request_duration_seconds",)


def exposition() -> str:
    clock = ManualClock(1_700_000_000.0)
    settings = SimulatorSettings(clusters=3, jobs=5, seed=7, rate_limit=0, clock=clock)
    with Simulator(settings) as sim:
        target = sim_target(sim, "golden", auth=password_auth(sim))
        exporter = Exporter(Config(targets=(target,)), wall=clock, mono=clock, pacing="off")
        try:
            for _ in range(3):  # clusters and lists, then statuses, then run history
                exporter.collect(30.0)
                clock.advance(15.0)
            registry = CollectorRegistry()
            registry.register(CdmCollector(exporter.snapshot))
            text = generate_latest(registry).decode()
        finally:
            exporter.close()
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith(NONDETERMINISTIC))


def test_exposition_matches_the_golden_file() -> None:
    text = exposition()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
