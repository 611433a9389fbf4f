"""Maps known state to metric families: a pure function of snapshots, no I/O.

Series produced (identity labels ``cluster_id``, ``cluster_name``, ``job_name`` on every job series)::

    cdm_job_status{...,status="BOOTING|FAILURE_ON_SUBMIT|RUNNING|SUCCEEDED|FAILED|UNKNOWN|NEVER_EXECUTED"} 1|0
    cdm_job_status{...,status="<any other value the API returned, e.g. PENDING>"} 1
        (with ``collection.status_series: current``, only the current status's series, 1)
    cdm_job_progress_ratio{...}                      0..1, absent when progress is -1 or unknown
    cdm_job_submission_id{...}                       id of the latest run
    cdm_job_creation_timestamp_seconds{...}          latest run's creation-date
    cdm_job_execute_timestamp_seconds{...}           latest run's execute-date
    cdm_job_last_update_timestamp_seconds{...}       latest run's last-update-date
    cdm_job_{read,written,skipped}_rows{...}         ROWS_READ / ROWS_WRITTEN / ROWS_WRITTEN_SKIPPED
    cdm_job_{read,written,total_size}_bytes{...}     BYTES_READ / BYTES_WRITTEN / TOTAL_SIZE
    cdm_job_{read,written,skipped,total}_files{...}  FILES_READ / FILES_WRITTEN / FILES_SKIPPED / TOTAL_FILES
    cdm_job_{write,update,delete}_rows{...}          write_rows / update_rows / delete_rows
    cdm_job_last_success_timestamp_seconds{...}      end of the latest SUCCEEDED run known
    cdm_job_info{...,job_type,external_id,creation_user,last_update_user,incremental,execute_auto,
                 delete_after_run,stopping_increment,from_connector,to_connector,from_link,to_link} 1
    cdm_job_error_info{...,error_summary}            1 while the latest run FAILED
    cdm_job_refresh_timestamp_seconds{...}           when the job's status was last fetched
    cdm_cluster_info{cluster_id,cluster_name,project_id,region,version} 1
    cdm_cluster_status{cluster_id,cluster_name,status="creating|normal|...|<other code>"} 1|0
    cdm_cluster_up{cluster_id,cluster_name}          1 when the cluster's job list worked last time
    cdm_up{project_id,region}                        1 when auth and the cluster list worked last time
    cdm_api_budget_remaining{project_id,region,policy="job_status|common"}
    cdm_scrape_duration_seconds                      how long the last collection took
    cdm_api_requests_total{endpoint,code}            every HTTP call made
    cdm_api_request_duration_seconds{endpoint}       histogram of their latency
    cdm_exporter_build_info{version} 1

A field the API omitted gives no series (never a fake 0). Run counters are gauges: they restart
with each run. The per-job samples are made while the exposition is written (``_Samples``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from cdm_exporter import __version__
from cdm_exporter.api.models import CLUSTER_STATUSES, FAILED_STATUSES, JOB_STATUSES, Counters
from cdm_exporter.config import StatusSeries
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import JobInfo, JobState, TargetView
from cdm_exporter.polling.telemetry import TelemetrySnapshot

JOB_LABELS = ("cluster_id", "cluster_name", "job_name")
ERROR_SUMMARY_MAX = 256

INFO_LABELS = JobInfo._fields

#: gauge name suffix -> (help, counter field)
COUNTER_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("cdm_job_read_rows", "Rows read by the latest run (ROWS_READ).", "rows_read"),
    ("cdm_job_written_rows", "Rows written by the latest run (ROWS_WRITTEN).", "rows_written"),
    (
        "cdm_job_skipped_rows",
        "Rows skipped by the latest run (ROWS_WRITTEN_SKIPPED).",
        "rows_written_skipped",
    ),
    ("cdm_job_read_bytes", "Bytes read by the latest run (BYTES_READ).", "bytes_read"),
    ("cdm_job_written_bytes", "Bytes written by the latest run (BYTES_WRITTEN).", "bytes_written"),
    ("cdm_job_total_size_bytes", "Total size of the latest run's data (TOTAL_SIZE).", "total_size"),
    ("cdm_job_read_files", "Files read by the latest run (FILES_READ).", "files_read"),
    ("cdm_job_written_files", "Files written by the latest run (FILES_WRITTEN).", "files_written"),
    ("cdm_job_skipped_files", "Files skipped by the latest run (FILES_SKIPPED).", "files_skipped"),
    ("cdm_job_total_files", "Total files of the latest run (TOTAL_FILES).", "total_files"),
)


#: the per-job gauges with one number each, in exposition order (help, how a row has it)
_JOB_GAUGES: tuple[tuple[str, str], ...] = (
    ("cdm_job_progress_ratio", "Progress of the latest run, 0 to 1."),
    ("cdm_job_submission_id", "submission-id of the latest run."),
    ("cdm_job_creation_timestamp_seconds", "creation-date of the latest run."),
    ("cdm_job_execute_timestamp_seconds", "execute-date of the latest run."),
    ("cdm_job_last_update_timestamp_seconds", "last-update-date of the latest run."),
    *((name, help_) for name, help_, _ in COUNTER_GAUGES),
    ("cdm_job_write_rows", "write_rows of the latest run."),
    ("cdm_job_update_rows", "update_rows of the latest run."),
    ("cdm_job_delete_rows", "delete_rows of the latest run."),
    ("cdm_job_last_success_timestamp_seconds", "End of the latest SUCCEEDED run known."),
)
_REFRESHED = (
    "cdm_job_refresh_timestamp_seconds",
    "When this job's status was last fetched from the API.",
)


class _JobRow(NamedTuple):
    """What one job contributes to the exposition, computed once per scrape."""

    labels: dict[str, str]  # the identity labels, shared by the job's samples (never mutated)
    status: str | None
    gauges: tuple[float | int | None, ...]  # one per _JOB_GAUGES, None: no series
    refreshed: float | None
    info: JobInfo
    error_summary: str | None  # the latest run FAILED: its summary, cut


def _job_row(ids: Sequence[str], job: JobState) -> _JobRow:
    run = job.current_run
    summary = job.summary
    if run is not None:
        dates: tuple[float | int | None, ...] = (
            None if run.progress is None else run.progress / 100.0,
            run.submission_id,
            run.creation_date,
            run.execute_date,
            run.last_update_date,
        )
        changes: tuple[float | int | None, ...] = (run.write_rows, run.update_rows, run.delete_rows)
    else:  # only the list entry is current: it carries the run's dates too
        dates = (None, None, None, summary.execute_start_date, summary.execute_update_date)
        changes = (None, None, None)
    counters: Counters | None = job.counters()
    counted = tuple(None if counters is None else getattr(counters, field) for _, _, field in COUNTER_GAUGES)
    failed = run is not None and run.status in FAILED_STATUSES
    return _JobRow(
        labels=dict(zip(JOB_LABELS, ids, strict=True)),
        status=job.status,
        gauges=(*dates, *counted, *changes, job.last_success),
        refreshed=job.refreshed_at,
        info=job.info(),
        error_summary=((run.error_summary or "")[:ERROR_SUMMARY_MAX] if run is not None and failed else None),
    )


class _Samples(list[Sample]):
    """A family's samples, made one at a time as the exposition is written.

    At 10,000 jobs a scrape has 275,000 samples: holding them all cost ~100 MB, and the garbage
    collector's passes over them (they all live until the scrape is written) cost more than
    writing them. Generated while they are written, each is gone again before the next. Only
    iteration (which is what ``prometheus_client`` does) and ``len`` see them.
    """

    def __init__(self, make: Callable[[], Iterator[Sample]]) -> None:
        super().__init__()
        self._make = make

    def __iter__(self) -> Iterator[Sample]:
        return self._make()

    def __len__(self) -> int:
        return sum(1 for _ in self._make())

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None


def _lazy(family: Metric, make: Callable[[], Iterator[Sample]]) -> Metric:
    family.samples = _Samples(make)
    return family


def _status_samples(rows: list[_JobRow], current_only: bool) -> Iterator[Sample]:
    for row in rows:
        status = row.status
        if not current_only:
            for documented in JOB_STATUSES:
                value = 1.0 if status == documented else 0.0
                yield Sample("cdm_job_status", {**row.labels, "status": documented}, value)
            if status is not None and status not in JOB_STATUSES:
                yield Sample("cdm_job_status", {**row.labels, "status": status}, 1.0)
        elif status is not None:
            yield Sample("cdm_job_status", {**row.labels, "status": status}, 1.0)


def _gauge_samples(rows: list[_JobRow], name: str, index: int) -> Iterator[Sample]:
    for row in rows:
        value = row.gauges[index]
        if value is not None:
            yield Sample(name, row.labels, float(value))


def _refreshed_samples(rows: list[_JobRow]) -> Iterator[Sample]:
    for row in rows:
        if row.refreshed is not None:
            yield Sample(_REFRESHED[0], row.labels, float(row.refreshed))


def _info_samples(rows: list[_JobRow]) -> Iterator[Sample]:
    for row in rows:
        yield Sample("cdm_job_info", {**row.labels, **row.info._asdict()}, 1.0)


def _error_samples(rows: list[_JobRow]) -> Iterator[Sample]:
    for row in rows:
        if row.error_summary is not None:
            yield Sample("cdm_job_error_info", {**row.labels, "error_summary": row.error_summary}, 1.0)


def _job_families(rows: list[_JobRow], status_series: StatusSeries) -> list[Metric]:
    """The per-job families over ``rows``; their samples are made as they are written."""
    g = GaugeMetricFamily
    status_help = (
        "1 for the job's current status, 0 for the others."
        if status_series == "all"
        else "1 for the job's current status (only that status has a series)."
    )
    current_only = status_series == "current"
    status = _lazy(
        g("cdm_job_status", status_help, labels=(*JOB_LABELS, "status")),
        lambda: _status_samples(rows, current_only),
    )
    gauges = [
        _lazy(
            g(name, help_, labels=JOB_LABELS),
            lambda name=name, index=index: _gauge_samples(rows, name, index),  # type: ignore[misc]
        )
        for index, (name, help_) in enumerate(_JOB_GAUGES)
    ]
    info = _lazy(
        g("cdm_job_info", "Non-numeric fields of the job; always 1.", labels=(*JOB_LABELS, *INFO_LABELS)),
        lambda: _info_samples(rows),
    )
    error = _lazy(
        g(
            "cdm_job_error_info",
            "1 while the latest run FAILED; error_summary cut to 256 characters.",
            labels=(*JOB_LABELS, "error_summary"),
        ),
        lambda: _error_samples(rows),
    )
    refreshed = _lazy(g(*_REFRESHED, labels=JOB_LABELS), lambda: _refreshed_samples(rows))
    return [status, *gauges, info, error, refreshed]


def _cluster_families(targets: Iterable[TargetView]) -> Iterator[Metric]:
    labels = ("cluster_id", "cluster_name")
    info = GaugeMetricFamily(
        "cdm_cluster_info",
        "CDM cluster facts; always 1.",
        labels=(*labels, "project_id", "region", "version"),
    )
    status = GaugeMetricFamily(
        "cdm_cluster_status",
        "1 for the cluster's current status, 0 for the others.",
        labels=(*labels, "status"),
    )
    up = GaugeMetricFamily(
        "cdm_cluster_up", "1 when this cluster's job list worked at the last try.", labels=labels
    )
    seen: set[str] = set()
    for target in targets:
        for view in target.clusters:
            cluster = view.cluster
            if cluster.id in seen:  # the same cluster reached through two targets
                continue
            seen.add(cluster.id)
            ids = (cluster.id, cluster.name)
            info.add_metric((*ids, target.project_id, target.region, cluster.version or ""), 1.0)
            current = cluster.status_name
            for name in CLUSTER_STATUSES.values():
                status.add_metric((*ids, name), 1.0 if current == name else 0.0)
            if current is not None and current not in CLUSTER_STATUSES.values():
                status.add_metric((*ids, current), 1.0)
            if view.up is not None:
                up.add_metric(ids, 1.0 if view.up else 0.0)
    yield from (info, status, up)


def _target_families(targets: Iterable[TargetView]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "cdm_up",
        "1 when authentication and the cluster list worked at the last collection.",
        labels=("project_id", "region"),
    )
    budget = GaugeMetricFamily(
        "cdm_api_budget_remaining",
        "Requests the exporter may still send now under its per-minute budget of each API policy.",
        labels=("project_id", "region", "policy"),
    )
    # Several targets may share a project and region (other credentials, other job filters):
    # the series is the worst of them, so that no failing target hides behind a healthy one.
    ups: dict[tuple[str, str], float] = {}
    budgets: dict[tuple[str, str, str], float] = {}
    for target in targets:
        key = (target.project_id, target.region)
        ups[key] = min(ups.get(key, 1.0), 1.0 if target.up else 0.0)
        for policy, remaining in target.budget_remaining.items():
            budgets[(*key, policy)] = min(budgets.get((*key, policy), remaining), remaining)
    for key, value in ups.items():
        up.add_metric(key, value)
    for labels, remaining in sorted(budgets.items()):
        budget.add_metric(labels, float(int(remaining)))
    yield from (up, budget)


def _self_families(snapshot: Snapshot) -> Iterator[Metric]:
    duration = GaugeMetricFamily("cdm_scrape_duration_seconds", "Time the last collection took.")
    if snapshot.scrape_duration is not None:
        duration.add_metric((), snapshot.scrape_duration)
    yield duration
    requests = CounterMetricFamily(
        "cdm_api_requests", "HTTP calls made to the CDM and IAM APIs.", labels=("endpoint", "code")
    )
    for (endpoint, code), count in sorted(snapshot.telemetry.requests.items()):
        requests.add_metric((endpoint, code), float(count))
    yield requests
    latency = HistogramMetricFamily(
        "cdm_api_request_duration_seconds", "Latency of calls to the CDM and IAM APIs.", labels=("endpoint",)
    )
    for endpoint, hist in sorted(snapshot.telemetry.durations.items()):
        latency.add_metric((endpoint,), hist.cumulative(), hist.total)
    yield latency
    build = GaugeMetricFamily(
        "cdm_exporter_build_info", "cdm-exporter version; always 1.", labels=("version",)
    )
    build.add_metric((__version__,), 1.0)
    yield build


def families(snapshot: Snapshot) -> list[Metric]:
    """Every metric family of one exposition."""
    rows: list[_JobRow] = []
    seen: set[tuple[str, str]] = set()
    for target in snapshot.targets:
        for cluster in target.clusters:
            for job in cluster.jobs:
                key = (cluster.cluster.id, job.name)
                if key in seen:
                    continue
                seen.add(key)
                rows.append(_job_row((cluster.cluster.id, cluster.cluster.name, job.name), job))
    return [
        *_job_families(rows, snapshot.status_series),
        *_cluster_families(snapshot.targets),
        *_target_families(snapshot.targets),
        *_self_families(snapshot),
    ]


class CdmCollector(Collector):
    """A ``prometheus_client`` collector over a snapshot source; collecting does no I/O."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        # the families with no samples: registering this collector makes no API call
        return families(Snapshot((), TelemetrySnapshot({}, {}), None))

    def collect(self) -> Iterator[Metric]:
        yield from families(self._source())
