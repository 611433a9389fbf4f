"""Maps known state to metric families: a pure function of snapshots, no I/O.

Series produced (identity labels ``cluster_id``, ``cluster_name``, ``job_name`` on every job series)::

    cdm_job_status{...,status="BOOTING|FAILURE_ON_SUBMIT|RUNNING|SUCCEEDED|FAILED|UNKNOWN|NEVER_EXECUTED"} 1|0
    cdm_job_status{...,status="<any other value the API returned, e.g. PENDING>"} 1
        (with ``collection.status_series: current``, only the current status's series, 1)
    cdm_job_progress_ratio{...}                      0..1 while a run is active; 1 once SUCCEEDED;
                                                     absent for other ended runs and when unknown
    cdm_job_submission_id{...}                       id of the latest run
    cdm_job_creation_timestamp_seconds{...}          latest run's creation-date
    cdm_job_execute_timestamp_seconds{...}           latest run's execute-date
    cdm_job_last_update_timestamp_seconds{...}       latest run's last-update-date
    cdm_job_{read,written,skipped}_rows{...}         ROWS_READ / ROWS_WRITTEN / ROWS_WRITTEN_SKIPPED
    cdm_job_{read,written,total_size}_bytes{...}     BYTES_READ / BYTES_WRITTEN / TOTAL_SIZE
    cdm_job_{read,written,skipped,total}_files{...}  FILES_READ / FILES_WRITTEN / FILES_SKIPPED / TOTAL_FILES
    cdm_job_{write,update,delete}_rows{...}          write_rows / update_rows / delete_rows
    cdm_job_last_success_timestamp_seconds{...}      end of the latest SUCCEEDED run known
    cdm_job_last_failure_timestamp_seconds{...}      end of the latest FAILED/FAILURE_ON_SUBMIT run known
    cdm_job_last_run_duration_seconds{...}           start to end of the latest ended run known
    cdm_job_runs_total{...}                          runs that ended since the first status read,
                                                     each counted once (seen ending or in history)
    cdm_job_run_failures_total{...}                  of those, FAILED or FAILURE_ON_SUBMIT
    cdm_job_history_timestamp_seconds{...}           when the job's run history was last read;
                                                     absent while it never was
    cdm_job_info{...,job_type,external_id,creation_user,last_update_user,incremental,execute_auto,
                 delete_after_run,stopping_increment,from_connector,to_connector,from_link,to_link} 1
    cdm_job_error_info{...,error_summary}            1 while the latest run FAILED
    cdm_job_refresh_timestamp_seconds{...}           when the job's status was last fetched
    cdm_cluster_info{cluster_id,cluster_name,project_id,region,version} 1
    cdm_cluster_status{cluster_id,cluster_name,status="creating|normal|...|<other code>"} 1|0
    cdm_cluster_up{cluster_id,cluster_name}          1 when the cluster's job list worked last time
    cdm_up{project_id,region}                        1 when auth and the cluster list worked last time
    cdm_api_budget_remaining{project_id,region,policy="job_status|common"}
    cdm_project_info{project_id,project_name,region} 1  a project found by discovery (projects targets)
    cdm_project_unavailable{project_id,region,reason="not_offered|forbidden"} 1|0  1 while set aside
    cdm_project_discovery_up{target}                 1 when the last listing of the target's projects worked
    cdm_scrape_duration_seconds                      how long the last collection took
    cdm_api_requests_total{endpoint,code}            every HTTP call made
    cdm_api_request_duration_seconds{endpoint}       histogram of their latency
    cdm_exporter_build_info{version} 1
    cdm_exporter_storage_up                          1 when the state store works; absent without one
    cdm_exporter_leader                              1 when this replica polls the API

A field the API omitted gives no series (never a fake 0). Run counters are gauges: they restart
with each run. The run counts (``_total``) are counters from the job's first status read on: the
runs that ended before it are not counted, so ``increase()`` gives runs per period; a job deleted
and created again under the same name starts over. The per-job samples are made while the
exposition is written (``_Samples``).

Every label value taken from an API answer passes :func:`label_value`: one longer than
:data:`MAX_LABEL_VALUE` characters is cut and ends in a hash of the whole value, so two long names
stay two series and no answer can blow a scrape up (a 70,000-character job name was exported as
it came). The state keeps the full names; API paths use them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from cdm_exporter import __version__
from cdm_exporter.api.models import CLUSTER_STATUSES, FAILED_STATUSES, JOB_STATUSES, Counters
from cdm_exporter.config import StatusSeries
from cdm_exporter.polling.discovery import UNAVAILABLE_REASONS
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import JobInfo, JobState, TargetView
from cdm_exporter.polling.telemetry import TelemetrySnapshot

JOB_LABELS = ("cluster_id", "cluster_name", "job_name")
ERROR_SUMMARY_MAX = 256
#: longest label value taken from the API; CDM's own limits (job names up to 240 characters,
#: cluster names up to 64) stay below it
MAX_LABEL_VALUE = 256
_HASH_DIGITS = 16


def label_value(value: str) -> str:
    """``value`` as a label: unchanged up to :data:`MAX_LABEL_VALUE` characters, else its first
    239 characters, ``~`` and 16 hex digits of the SHA-256 of the whole value (256 in all)."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_DIGITS]
    return f"{value[: MAX_LABEL_VALUE - _HASH_DIGITS - 1]}~{digest}"


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


class _Numeric(NamedTuple):
    """A per-job family with one number per job."""

    name: str
    help: str
    counter: bool = False


#: the per-job numeric families before ``cdm_job_info`` and ``cdm_job_error_info``, in exposition order
_HEAD: tuple[_Numeric, ...] = (
    _Numeric(
        "cdm_job_progress_ratio",
        "Progress of the latest run, 0 to 1: 1 once it SUCCEEDED, absent once it ended otherwise.",
    ),
    _Numeric("cdm_job_submission_id", "submission-id of the latest run."),
    _Numeric("cdm_job_creation_timestamp_seconds", "creation-date of the latest run."),
    _Numeric("cdm_job_execute_timestamp_seconds", "execute-date of the latest run."),
    _Numeric("cdm_job_last_update_timestamp_seconds", "last-update-date of the latest run."),
    *(_Numeric(name, help_) for name, help_, _ in COUNTER_GAUGES),
    _Numeric("cdm_job_write_rows", "write_rows of the latest run."),
    _Numeric("cdm_job_update_rows", "update_rows of the latest run."),
    _Numeric("cdm_job_delete_rows", "delete_rows of the latest run."),
    _Numeric("cdm_job_last_success_timestamp_seconds", "End of the latest SUCCEEDED run known."),
)
#: ... and after them
_TAIL: tuple[_Numeric, ...] = (
    _Numeric("cdm_job_refresh_timestamp_seconds", "When this job's status was last fetched from the API."),
    _Numeric(
        "cdm_job_last_failure_timestamp_seconds", "End of the latest FAILED or FAILURE_ON_SUBMIT run known."
    ),
    _Numeric("cdm_job_last_run_duration_seconds", "Start to end of the latest ended run known."),
    _Numeric(
        "cdm_job_runs",
        "Runs of the job that ended since the exporter first read its status, each counted once.",
        counter=True,
    ),
    _Numeric(
        "cdm_job_run_failures",
        "Of cdm_job_runs_total, the runs that ended FAILED or FAILURE_ON_SUBMIT.",
        counter=True,
    ),
    _Numeric(
        "cdm_job_history_timestamp_seconds",
        "When this job's run history was last read; absent while it never was.",
    ),
)

Number = float | int | None


class _JobRow(NamedTuple):
    """What one job contributes to the exposition, computed once per scrape."""

    labels: dict[str, str]  # the identity labels, shared by the job's samples (never mutated)
    status: str | None  # as a label value
    numbers: tuple[Number, ...]  # one per _HEAD and _TAIL family, None: no series
    info: dict[str, str]  # the info labels, as label values
    error_summary: str | None  # the latest run FAILED: its summary, cut


def _job_row(ids: Sequence[str], job: JobState) -> _JobRow:
    run = job.current_run
    summary = job.summary
    if run is not None:
        dates: tuple[Number, ...] = (
            run.progress_ratio,
            run.submission_id,
            run.creation_date,
            run.execute_date,
            run.last_update_date,
        )
        changes: tuple[Number, ...] = (run.write_rows, run.update_rows, run.delete_rows)
    else:  # only the list entry is current: it carries the run's dates too
        dates = (None, None, None, summary.execute_start_date, summary.execute_update_date)
        changes = (None, None, None)
    counters: Counters | None = job.counters()
    counted = tuple(None if counters is None else getattr(counters, field) for _, _, field in COUNTER_GAUGES)
    tally = job.tally
    tail: tuple[Number, ...] = (
        job.refreshed_at,
        job.last_failure,
        job.last_run_duration,
        None if tally is None else tally.runs,
        None if tally is None else tally.failures,
        job.history_read_at,
    )
    status = job.status
    failed = run is not None and status in FAILED_STATUSES
    return _JobRow(
        labels=dict(zip(JOB_LABELS, map(label_value, ids), strict=True)),
        status=None if status is None else label_value(status),
        numbers=(*dates, *counted, *changes, job.last_success, *tail),
        info=dict(zip(INFO_LABELS, map(label_value, job.info()), strict=True)),
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


def _number_samples(rows: list[_JobRow], name: str, index: int) -> Iterator[Sample]:
    for row in rows:
        value = row.numbers[index]
        if value is not None:
            yield Sample(name, row.labels, float(value))


def _info_samples(rows: list[_JobRow]) -> Iterator[Sample]:
    for row in rows:
        yield Sample("cdm_job_info", {**row.labels, **row.info}, 1.0)


def _error_samples(rows: list[_JobRow]) -> Iterator[Sample]:
    for row in rows:
        if row.error_summary is not None:
            yield Sample("cdm_job_error_info", {**row.labels, "error_summary": row.error_summary}, 1.0)


def _numeric_families(rows: list[_JobRow], specs: Sequence[_Numeric], first: int) -> list[Metric]:
    families: list[Metric] = []
    for index, spec in enumerate(specs, start=first):
        family: Metric
        if spec.counter:
            family = CounterMetricFamily(spec.name, spec.help, labels=JOB_LABELS)
            sample_name = spec.name + "_total"
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=JOB_LABELS)
            sample_name = spec.name
        families.append(
            _lazy(family, lambda n=sample_name, i=index: _number_samples(rows, n, i))  # type: ignore[misc]
        )
    return families


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
    return [
        status,
        *_numeric_families(rows, _HEAD, 0),
        info,
        error,
        *_numeric_families(rows, _TAIL, len(_HEAD)),
    ]


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
            ids = (label_value(cluster.id), label_value(cluster.name))
            version = label_value(cluster.version or "")
            info.add_metric((*ids, target.project_id, target.region, version), 1.0)
            current = cluster.status_name
            for name in CLUSTER_STATUSES.values():
                status.add_metric((*ids, name), 1.0 if current == name else 0.0)
            if current is not None and current not in CLUSTER_STATUSES.values():
                status.add_metric((*ids, label_value(current)), 1.0)
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


def _discovery_families(snapshot: Snapshot) -> Iterator[Metric]:
    """Families of account-wide discovery; absent unless a ``projects`` target is configured."""
    if not snapshot.discoveries:
        return
    info = GaugeMetricFamily(
        "cdm_project_info",
        "A project found by discovery; always 1.",
        labels=("project_id", "project_name", "region"),
    )
    unavailable = GaugeMetricFamily(
        "cdm_project_unavailable",
        "1 while a discovered project is set aside for this reason (CDM not offered in its region, "
        "or forbidden), else 0.",
        labels=("project_id", "region", "reason"),
    )
    seen: set[tuple[str, str]] = set()
    for target in snapshot.targets:
        key = (target.project_id, target.region)
        if target.project_name is None or key in seen:  # a project found by two targets
            continue
        seen.add(key)
        # project IDs and regions were checked when the project was picked; the name was not
        info.add_metric((target.project_id, label_value(target.project_name), target.region), 1.0)
        for reason in UNAVAILABLE_REASONS:  # every reason always present, as the status enums
            unavailable.add_metric((*key, reason), 1.0 if target.unavailable == reason else 0.0)
    up = GaugeMetricFamily(
        "cdm_project_discovery_up",
        "1 when the last listing of the projects of a projects target worked.",
        labels=("target",),
    )
    for discovery in snapshot.discoveries:
        up.add_metric((discovery.target,), 1.0 if discovery.up else 0.0)
    yield from (info, unavailable, up)


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
    storage = GaugeMetricFamily(
        "cdm_exporter_storage_up",
        "1 when the state store (--storage.path or --storage.redis-url) works; absent without one.",
    )
    if snapshot.storage_up is not None:
        storage.add_metric((), 1.0 if snapshot.storage_up else 0.0)
    yield storage
    leader = GaugeMetricFamily(
        "cdm_exporter_leader",
        "1 when this replica polls the API; the others serve the state it shares.",
    )
    leader.add_metric((), 1.0 if snapshot.leader else 0.0)
    yield leader


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
        *_discovery_families(snapshot),
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
