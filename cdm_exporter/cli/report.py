"""The human-readable report printed by ``cdm-exporter check``.

Targets and clusters with their errors (and, for refused credentials, which settings to check),
a table of jobs, the error details of failed runs, what could not be read (a job whose status
was not fetched is marked ``*``), and the API calls spent.

Every string from the API (names, statuses, error texts) goes through :func:`_printable` or
:func:`_one_line`: job and cluster names are chosen by whoever may create jobs, and error
texts quote their input, so they may carry terminal escapes.
"""

from __future__ import annotations

import textwrap

from cdm_exporter.api.endpoints import ENDPOINTS, Endpoint
from cdm_exporter.api.models import FAILED_STATUSES
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import DiscoveryView, JobState, TargetView

ERROR_DETAILS_MAX = 2000


def _number(value: int | float | None) -> str:
    if value is None:
        return "-"
    for unit in ("", "K", "M", "G", "T"):
        if abs(value) < 1000:
            return f"{value:.0f}{unit}" if unit == "" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.0f}P"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}PiB"


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _printable(text: str, keep: str = "") -> str:
    """``text`` with control, format and other unprintable characters (ESC, BEL, CR, bidi
    overrides, lone surrogates) written as Python-style escapes, except those in ``keep``: an
    API string cannot move the cursor, retitle the terminal or reorder what is shown."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char in keep else _escape(char) for char in text)


def _one_line(text: str, width: int) -> str:
    text = _printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _gone(job: JobState) -> bool:
    """The API says the listed job does not exist (deleted since the list was read)."""
    return job.refreshed_at is None and job.status_error is not None and job.status_error[0] == "not_found"


def _unread(job: JobState) -> bool:
    """The job's status was never fetched: the table only has its job list entry. A job the API
    says is gone is not unread: there is nothing left to read (the next list drops it)."""
    return job.refreshed_at is None and not _gone(job)


def _job_row(cluster_name: str, job: JobState) -> tuple[str, ...]:
    run = job.current_run
    counters = job.counters()
    ratio = None if run is None else run.progress_ratio
    progress = "-" if ratio is None else f"{100 * ratio:.0f}%"
    error = ""
    if run is not None and job.status in FAILED_STATUSES:
        error = _one_line(run.error_summary or "(no summary)", 60)
    return (
        _one_line(cluster_name, 24),
        _one_line(job.name, 40),
        _printable(job.status or "?") + ("*" if _unread(job) else " (gone)" if _gone(job) else ""),
        progress,
        _number(counters.rows_read if counters else None),
        _number(counters.rows_written if counters else None),
        _bytes(counters.bytes_written if counters else None),
        error,
    )


#: why a discovered project is set aside, as ``check`` says it
_SET_ASIDE = {
    "not_offered": "set aside, CDM is not offered in its region",
    "forbidden": "set aside, the credential may not use CDM there",
}


def _discovery_lines(discovery: DiscoveryView) -> list[str]:
    name = _printable(discovery.target)
    if discovery.up:
        return [f"target {name}: {discovery.listed} project(s) listed by IAM, {discovery.selected} selected"]
    state = "FAILED" if discovery.up is False else "not reached"
    lines = [f"target {name}: listing its projects {state}"]
    if discovery.error:
        lines.append(f"  error: {_printable(discovery.error)}")
    return lines


def _target_lines(target: TargetView) -> list[str]:
    state = {True: "up", False: "DOWN", None: "not reached"}[target.up]
    if target.unavailable is not None:
        state = _SET_ASIDE.get(target.unavailable, "set aside")
    where = f"region {target.region}, project {target.project_id}"
    lines = [f"target {_printable(target.name)} ({where}): {state}"]
    if target.error:
        lines.append(f"  error: {_printable(target.error)}")
    if target.hint:
        lines.append(f"  hint: {_printable(target.hint)}")
    for cluster in target.clusters:
        cluster_state = {True: "up", False: "DOWN", None: "not read"}[cluster.up]
        status = _printable(cluster.cluster.status_name or "?")
        name, cluster_id = _printable(cluster.cluster.name), _printable(cluster.cluster.id)
        refused = (
            f", job types it does not list (tried again hourly): {', '.join(cluster.unsupported_types)}"
            if cluster.unsupported_types
            else ""
        )
        lines.append(
            f"  cluster {name} ({cluster_id}): status {status}, "
            f"job list {cluster_state}, "
            f"{len(cluster.jobs)} job(s){refused}"
        )
        if cluster.error:
            lines.append(f"    error: {_printable(cluster.error)}")
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _no_jobs(snapshot: Snapshot) -> str:
    reached = [target.up is True for target in snapshot.targets]
    if not any(reached):
        return "no jobs shown: no target could be read"
    return "no jobs found" if all(reached) else "no jobs found on the targets that could be read"


def _incomplete_lines(snapshot: Snapshot, status_budget: int, common_budget: int) -> list[str]:
    """What the report could not read on the targets it reached, and why."""
    reached = [target for target in snapshot.targets if target.up is True]
    unlisted = [cluster for target in reached for cluster in target.clusters if cluster.up is None]
    jobs = [job for target in reached for cluster in target.clusters for job in cluster.jobs]
    unread = [job for job in jobs if _unread(job)]
    gone = [job for job in jobs if _gone(job)]
    out: list[str] = []
    if gone:
        out += [
            "",
            f"GONE: {_plural(len(gone), 'job')} listed, then answered as not existing (deleted since "
            "the job list was read, or a name the API cannot be asked for): "
            + ", ".join(_printable(job.name) for job in gone),
        ]
    if unlisted:
        out += [
            "",
            f"INCOMPLETE: the job list of {_plural(len(unlisted), 'cluster')} was not read: the API budget "
            f"(collection.budget_per_minute.common, {common_budget} per minute) or --timeout ran out",
        ]
    if not unread:
        return out
    out += [
        "",
        f"INCOMPLETE: the status of {len(unread)} of {_plural(len(jobs), 'job')} was not read (marked *: "
        "STATUS, rows and bytes are the job list's; progress, last error and error details are missing):",
    ]
    failed: dict[str, tuple[int, str]] = {}  # kind -> (jobs, first message)
    for job in unread:
        if job.status_error is not None:
            kind, message = job.status_error
            count, first = failed.get(kind, (0, message))
            failed[kind] = (count + 1, first)
    for count, message in failed.values():
        out.append(f"  {_plural(count, 'job')}: {_printable(message)}")
    not_sent = sum(1 for job in unread if job.status_error is None)
    throttled = "throttled" in failed
    if not_sent:
        why = (
            "the API throttled this IAM user (after a 429 the exporter pauses instead of retrying)"
            if throttled
            else f"the API budget (collection.budget_per_minute.job_status, {status_budget} per minute) "
            "or --timeout ran out"
        )
        out.append(f"  {_plural(not_sent, 'job')}: not sent, {why}")
    if throttled:
        out.append(
            "  The IAM user's API rate limit is used up, maybe by another check, exporter or tool "
            "using the same user; run check again in a minute."
        )
    return out


def api_calls_line(snapshot: Snapshot) -> str:
    """``API calls: 27 (list_clusters 1, list_jobs 6, job_status 20)``."""
    per_endpoint: dict[Endpoint, int] = {}
    for (endpoint, _code), count in snapshot.telemetry.requests.items():
        if count:
            per_endpoint[endpoint] = per_endpoint.get(endpoint, 0) + count
    order = {endpoint: index for index, endpoint in enumerate(ENDPOINTS)}
    parts = [f"{e} {n}" for e, n in sorted(per_endpoint.items(), key=lambda item: order.get(item[0], 99))]
    return f"API calls: {sum(per_endpoint.values())}" + (f" ({', '.join(parts)})" if parts else "")


def render_report(snapshot: Snapshot, *, status_budget: int, common_budget: int) -> str:
    """The whole report; the budgets (requests per minute) explain what was not read."""
    out: list[str] = []
    for discovery in snapshot.discoveries:
        out += _discovery_lines(discovery)
    for target in snapshot.targets:
        out += _target_lines(target)
    rows = []
    failures = []
    for target in snapshot.targets:
        for cluster in target.clusters:
            for job in sorted(cluster.jobs, key=lambda j: j.name):
                rows.append(_job_row(cluster.cluster.name, job))
                run = job.current_run
                if run is not None and job.status in FAILED_STATUSES:
                    failures.append((_printable(cluster.cluster.name), _printable(job.name), run))
    header = (
        "CLUSTER",
        "JOB",
        "STATUS",
        "PROGRESS",
        "ROWS READ",
        "ROWS WRITTEN",
        "BYTES WRITTEN",
        "LAST ERROR",
    )
    out += ["", _table(header, rows) if rows else _no_jobs(snapshot)]
    for cluster_name, job_name, run in failures:
        out += [
            "",
            f"{cluster_name} / {job_name}: run "
            f"{'?' if run.submission_id is None else run.submission_id} FAILED",
        ]
        if run.error_summary:
            out.append(f"  summary: {_printable(run.error_summary)}")
        if run.error_details:
            details = _printable(run.error_details[:ERROR_DETAILS_MAX], keep="\n\t")
            out.append(textwrap.indent(details, "  | "))
    out += _incomplete_lines(snapshot, status_budget, common_budget)
    out += ["", api_calls_line(snapshot)]
    return "\n".join(out)


def target_failed(snapshot: Snapshot) -> bool:
    """A target, a project listing or a cluster could not be read (``check`` exits 1); a
    discovered project set aside (no CDM in its region, or forbidden) is not a failure."""
    return any(discovery.up is not True for discovery in snapshot.discoveries) or any(
        (target.up is not True and target.unavailable is None)
        or any(cluster.up is False for cluster in target.clusters)
        for target in snapshot.targets
    )


def incomplete(snapshot: Snapshot) -> bool:
    """Every target was read, but a job list or a job's status was not."""
    return any(
        cluster.up is None or any(_unread(job) for job in cluster.jobs)
        for target in snapshot.targets
        for cluster in target.clusters
    )
