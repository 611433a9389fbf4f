"""Failures are logged once per class and target, with the API's request id, never per job."""

from __future__ import annotations

import logging

import pytest
from sim_targets import sim_target

from cdm_exporter.api.errors import ServerError
from cdm_exporter.config import Config
from cdm_exporter.polling.failure_log import FailureLog
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_failure_is_logged_repeats_are_counted_and_recovery_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    failures = FailureLog(logging.getLogger("t"), "prod", repeat_after=600, clock=clock)
    error = ServerError("job_status", "boom", status=503, request_id="req-1")
    with caplog.at_level(logging.INFO, "t"):
        for _ in range(5):
            failures.failed("job_status", error)
        assert [r.getMessage() for r in caplog.records] == ["API call failed"]
        fields = vars(caplog.records[0])
        assert [fields[k] for k in ("target", "kind", "status", "request_id")] == [
            "prod",
            "server",
            503,
            "req-1",
        ]
        clock.now = 601
        failures.failed("job_status", error)
        assert vars(caplog.records[-1])["repeats_since_last_log"] == 4
        failures.recovered("job_status")
        assert caplog.records[-1].getMessage() == "API calls work again"
        assert failures.failing() == []


def test_a_forgotten_scope_is_dropped_without_a_recovery_line(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(logging.getLogger("t"), "prod", clock=Clock())
    error = ServerError("list_jobs", "boom", status=500)
    failures.failed("list_jobs@a", error)
    failures.failed("list_jobs@b", error)
    caplog.clear()
    with caplog.at_level(logging.INFO, "t"):
        failures.forget("list_jobs@a")
    assert caplog.records == []
    assert failures.failing() == [("list_jobs@b", "server")]


def test_a_fault_on_every_job_logs_one_line_per_target_not_per_job(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    with Simulator(SimulatorSettings(clusters=1, jobs=8, rate_limit=0, clock=clock)) as sim:
        exporter = Exporter(Config(targets=(sim_target(sim),)), wall=clock, mono=clock, pacing="off")
        try:
            exporter.collect(10)
            sim.add_fault(Fault(endpoint="job_status", status=500))
            with caplog.at_level(logging.WARNING, "cdm_exporter.polling.poller"):
                for _ in range(3):
                    clock.advance(15)
                    exporter.collect(10)
            calls = exporter.snapshot().telemetry.requests[("job_status", "500")]
        finally:
            exporter.close()
    failed = [r for r in caplog.records if r.getMessage() == "API call failed"]
    assert calls >= 8  # every job failed, on every scrape
    assert len(failed) == 1
    fields = vars(failed[0])
    assert fields["endpoint"] == "job_status" and fields["status"] == 500
    assert fields["request_id"]  # the simulator sends X-Request-Id
