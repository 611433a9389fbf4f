"""The exposition written in slices is byte for byte the encoder's, and a scrape's memory stays small."""

from __future__ import annotations

import gzip
import tracemalloc

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.process_collector import ProcessCollector
from prometheus_server import promtool_check_metrics, require_prometheus_tools

from cdm_exporter.api.models import Cluster, Counters, JobSummary, Submission
from cdm_exporter.config import StatusSeries
from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.metrics.exposition import SLICE_SAMPLES, render
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import ClusterView, JobState, TargetView
from cdm_exporter.polling.telemetry import ApiTelemetry

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
HOSTILE = 'a "quoted"\\ name\nwith a newline, 数据 and a % sign'


def registry_of(jobs: int, status_series: StatusSeries = "all") -> CollectorRegistry:
    """``jobs`` jobs (every tenth failed, with an error summary; odd names among them) and the
    process and GC collectors the exporter registers too."""
    cluster = Cluster(id="c-1", name="cdm-one", status="200", version="2.10")
    states = []
    for i in range(jobs):
        name = f"job-{i}" if i % 97 else f"{HOSTILE} {i}"
        failed = i % 10 == 0
        summary = JobSummary(name=name, job_type="NORMAL_JOB", status="FAILED" if failed else "SUCCEEDED")
        run = Submission(
            job_name=name,
            status=summary.status,
            progress=100.0,
            submission_id=i,
            creation_date=1.7e9,
            execute_date=1.7e9,
            last_update_date=1.7e9 + 60,
            error_summary=f"Cdm.0901: {HOSTILE}" if failed else None,
            counters=Counters(*range(i, i + 10)),
        )
        states.append(JobState(cluster.id, summary, run, 1.7e9 + 61, summary.change_key, 1.7e9 + 60))
    telemetry = ApiTelemetry()
    telemetry.observe("job_status", "200", 0.1)
    target = TargetView(
        "t", "0" * 32, "cn-north-4", True, (ClusterView(cluster, True, tuple(states), None),), None, {}
    )
    snapshot = Snapshot((target,), telemetry.snapshot(), 0.5, status_series=status_series)
    registry = CollectorRegistry()
    registry.register(CdmCollector(lambda: snapshot))
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


@pytest.mark.parametrize("status_series", ["all", "current"])
def test_the_slices_make_the_encoders_body_byte_for_byte(status_series: StatusSeries) -> None:
    registry = registry_of(SLICE_SAMPLES // 2 + 7, status_series)  # the status family: 4 slices
    # the process collector's figures move between two renderings: compare without them
    moving = (b"process_", b"python_gc_")

    def steady(body: bytes) -> list[bytes]:
        return [line for line in body.splitlines() if not any(name in line for name in moving)]

    text = render(registry, "")
    assert text.content_type.startswith("text/plain") and not text.gzipped
    assert len(text.chunks) > 10
    assert steady(b"".join(text.chunks)) == steady(generate_latest(registry))
    openmetrics = b"".join(render(registry, OPENMETRICS).chunks)
    assert steady(openmetrics) == steady(generate_openmetrics(registry))  # type: ignore[no-untyped-call]
    assert openmetrics.count(b"# EOF") == 1 and openmetrics.endswith(b"# EOF\n")
    zipped = render(registry, "", gzip=True)
    assert zipped.gzipped
    assert steady(gzip.decompress(b"".join(zipped.chunks))) == steady(generate_latest(registry))


@pytest.mark.parametrize("status_series", ["all", "current"])
def test_promtool_accepts_the_sliced_exposition(status_series: StatusSeries) -> None:
    require_prometheus_tools()
    body = b"".join(render(registry_of(SLICE_SAMPLES + 3, status_series), "").chunks).decode()
    ok, output = promtool_check_metrics(body)
    assert ok, output


def test_a_scrape_holds_a_fraction_of_what_the_encoder_holds() -> None:
    registry = registry_of(3000)

    def peak(work: object) -> int:
        tracemalloc.start()
        try:
            work()  # type: ignore[operator]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole = peak(lambda: gzip.compress(generate_latest(registry), compresslevel=6))
    sliced = peak(lambda: render(registry, "", gzip=True))
    assert sliced < whole / 4, (sliced, whole)
