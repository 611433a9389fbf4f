"""The status page's data: one snapshot as plain, JSON-ready records; no I/O, no HTML.

Produces the body of ``GET /api/v1/jobs`` (README "Status page") and what ``status_page``
renders, so the page and its JSON twin cannot disagree::

    {"exporter_version", "generated_at", "counts": {status: jobs}, "problems": [Problem],
     "targets": [Target with "clusters": [Cluster]], "jobs": [Job]}

Times are RFC 3339 UTC strings (``2024-05-01T12:00:00Z``) or null; a value the API did not
send is null, never a fake 0. Statuses, progress, counters, last success and the failed run's
error follow the same rules as the metrics (``JobState``, ``FAILED_STATUSES``), and nothing
secret is in here: only names, ids, states and the API's own error texts.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Literal, TypedDict

from cdm_exporter import __version__
from cdm_exporter.api.models import ACTIVE_STATUSES, FAILED_STATUSES
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import ClusterView, JobState, TargetView

#: shown for a job whose status is not known yet (the same mark as ``check``'s table)
NO_STATUS = "?"
#: error texts are cut here: details are Java stack traces, sometimes tens of kilobytes, and the
#: page needs their top (the metric's label cuts the summary at 256, too short to act on)
ERROR_TEXT_MAX = 4000
#: a 429 is reported at the top of the page for this long after it happened
THROTTLE_NOTICE_SECONDS = 300.0
#: the cluster status that is not worth a notice
NORMAL_CLUSTER_STATUS = "normal"

StatusGroup = Literal["failed", "active", "other", "succeeded"]
#: severity order: what an operator looks at first comes first
STATUS_GROUPS: tuple[StatusGroup, ...] = ("failed", "active", "other", "succeeded")

#: ``CdmError.kind`` -> what happened, in an operator's words
_ERROR_WORDS = {
    "auth": "the API refused the credentials",
    "throttled": "CDM refused requests because its rate limit was reached (HTTP 429)",
    "transport": "the API could not be reached",
    "timeout": "the API did not answer in time",
    "server": "the API answered with a server error",
    "malformed": "the API's answer could not be read",
    "not_found": "the API says it does not exist",
}


class Job(TypedDict):
    target: str
    cluster_id: str
    cluster_name: str
    name: str
    type: str | None
    status: str
    status_group: StatusGroup
    progress_percent: float | None  # only while a run is active and CDM reports progress
    submission_id: int | None
    rows_read: int | None
    rows_written: int | None
    bytes_read: int | None
    bytes_written: int | None
    last_success_at: str | None
    refreshed_at: str | None
    error_summary: str | None  # only while the latest run FAILED
    error_details: str | None


class Cluster(TypedDict):
    id: str
    name: str
    status: str | None
    job_list_up: bool | None
    job_list_error: str | None
    jobs: int


class Target(TypedDict):
    name: str
    project_id: str
    region: str
    up: bool | None
    error: str | None
    throttled_at: str | None
    budget_remaining: dict[str, int]
    clusters: list[Cluster]


class Problem(TypedDict):
    severity: Literal["error", "warning", "info"]
    target: str
    cluster_id: str | None
    message: str
    detail: str | None


class StatusData(TypedDict):
    exporter_version: str
    generated_at: str
    counts: dict[str, int]
    problems: list[Problem]
    targets: list[Target]
    jobs: list[Job]


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def status_group(status: str) -> StatusGroup:
    if status in FAILED_STATUSES:
        return "failed"
    if status in ACTIVE_STATUSES:
        return "active"
    return "succeeded" if status == "SUCCEEDED" else "other"


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"\n… (cut at {limit} characters)"


def job_record(target: TargetView, cluster: ClusterView, job: JobState) -> Job:
    status = job.status or NO_STATUS
    run = job.current_run
    counters = job.counters()
    # the rules of cdm_job_progress_ratio (shown only while a run is active) and cdm_job_error_info
    ratio = run.progress_ratio if run is not None and job.active else None
    failed = run if run is not None and job.status in FAILED_STATUSES else None
    return Job(
        target=target.name,
        cluster_id=cluster.cluster.id,
        cluster_name=cluster.cluster.name,
        name=job.name,
        type=job.info().job_type or None,
        status=status,
        status_group=status_group(status),
        progress_percent=None if ratio is None else round(100 * ratio, 2),
        submission_id=run.submission_id if run is not None else None,
        rows_read=counters.rows_read if counters else None,
        rows_written=counters.rows_written if counters else None,
        bytes_read=counters.bytes_read if counters else None,
        bytes_written=counters.bytes_written if counters else None,
        last_success_at=rfc3339(job.last_success),
        refreshed_at=rfc3339(job.refreshed_at),
        error_summary=_cut(failed.error_summary or "", ERROR_TEXT_MAX) if failed else None,
        error_details=_cut(failed.error_details, ERROR_TEXT_MAX) if failed else None,
    )


def _words(kind: str | None) -> str:
    return _ERROR_WORDS.get(kind or "", "the API answered with an error")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _problems(target: TargetView, now: float) -> list[Problem]:
    name = target.name
    found: list[Problem] = []
    if target.up is None:
        found.append(
            Problem(
                severity="info",
                target=name,
                cluster_id=None,
                message=f"Target {name} has not been read yet.",
                detail=None,
            )
        )
    elif not target.up:
        # down without an error of its own: a job call was refused its credentials
        what = _words(target.error_kind if target.error else "auth")
        found.append(
            Problem(
                severity="error",
                target=name,
                cluster_id=None,
                message=f"Target {name} cannot be read: {what}. Its jobs show their last known state.",
                detail=target.error,
            )
        )
    if target.throttled_at is not None and now - target.throttled_at < THROTTLE_NOTICE_SECONDS:
        found.append(
            Problem(
                severity="warning",
                target=name,
                cluster_id=None,
                message=(
                    f"CDM throttled requests of target {name} {_age(now - target.throttled_at)} ago "
                    "(HTTP 429): something else uses the same IAM user's request quota, or the budget is "
                    "set above CDM's limit. Jobs are refreshed less often until it passes."
                ),
                detail=None,
            )
        )
    for view in target.clusters:
        cluster = view.cluster
        where = f"cluster {cluster.name} (target {name})"
        if view.up is False:
            found.append(
                Problem(
                    severity="error",
                    target=name,
                    cluster_id=cluster.id,
                    message=(
                        f"The job list of {where} cannot be read: {_words(view.error_kind)}. "
                        "Its jobs show their last known state."
                    ),
                    detail=view.error,
                )
            )
        status = cluster.status_name
        if status is not None and status != NORMAL_CLUSTER_STATUS:
            detail = cluster.status_detail
            found.append(
                Problem(
                    severity="warning",
                    target=name,
                    cluster_id=cluster.id,
                    message=f"The status of {where} is {status}, not normal.",
                    detail=detail,
                )
            )
    return found


def _target_record(target: TargetView) -> Target:
    return Target(
        name=target.name,
        project_id=target.project_id,
        region=target.region,
        up=target.up,
        error=target.error,
        throttled_at=rfc3339(target.throttled_at),
        budget_remaining={policy: int(left) for policy, left in sorted(target.budget_remaining.items())},
        clusters=[
            Cluster(
                id=view.cluster.id,
                name=view.cluster.name,
                status=view.cluster.status_name,
                job_list_up=view.up,
                job_list_error=view.error,
                jobs=len(view.jobs),
            )
            for view in sorted(target.clusters, key=lambda v: (v.cluster.name, v.cluster.id))
        ],
    )


def status_data(snapshot: Snapshot, now: float) -> StatusData:
    """The page's data at wall-clock time ``now``; jobs ordered by target, cluster and name."""
    jobs = [
        job_record(target, cluster, job)
        for target in snapshot.targets
        for cluster in sorted(target.clusters, key=lambda v: (v.cluster.name, v.cluster.id))
        for job in sorted(cluster.jobs, key=lambda j: j.name)
    ]
    tally = Counter(job["status"] for job in jobs)
    order = sorted(tally, key=lambda status: (STATUS_GROUPS.index(status_group(status)), status))
    return StatusData(
        exporter_version=__version__,
        generated_at=rfc3339(now) or "",
        counts={status: tally[status] for status in order},
        problems=[problem for target in snapshot.targets for problem in _problems(target, now)],
        targets=[_target_record(target) for target in snapshot.targets],
        jobs=jobs,
    )
