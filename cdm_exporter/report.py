"""The human-readable report printed by ``cdm-exporter check``."""

from __future__ import annotations

import textwrap

from cdm_exporter.collector import Snapshot
from cdm_exporter.models import FAILED_STATUSES
from cdm_exporter.state import JobState, TargetView

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


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _job_row(cluster_name: str, job: JobState) -> tuple[str, ...]:
    run = job.current_run
    counters = job.counters()
    progress = "-" if run is None or run.progress is None else f"{run.progress:.0f}%"
    error = ""
    if run is not None and run.status in FAILED_STATUSES:
        error = _one_line(run.error_summary or "(no summary)", 60)
    return (
        _one_line(cluster_name, 24),
        _one_line(job.name, 40),
        job.status or "?",
        progress,
        _number(counters.rows_read if counters else None),
        _number(counters.rows_written if counters else None),
        _bytes(counters.bytes_written if counters else None),
        error,
    )


def _target_lines(target: TargetView) -> list[str]:
    state = {True: "up", False: "DOWN", None: "not reached"}[target.up]
    lines = [f"target {target.name} (region {target.region}, project {target.project_id}): {state}"]
    if target.error:
        lines.append(f"  error: {target.error}")
    for cluster in target.clusters:
        cluster_state = {True: "up", False: "DOWN", None: "not listed yet"}[cluster.up]
        status = cluster.cluster.status_name or "?"
        lines.append(
            f"  cluster {cluster.cluster.name} ({cluster.cluster.id}): status {status}, "
            f"job list {cluster_state}, "
            f"{len(cluster.jobs)} job(s)"
        )
        if cluster.error:
            lines.append(f"    error: {cluster.error}")
    return lines


def render_report(snapshot: Snapshot) -> str:
    out: list[str] = []
    for target in snapshot.targets:
        out += _target_lines(target)
    rows = []
    failures = []
    for target in snapshot.targets:
        for cluster in target.clusters:
            for job in sorted(cluster.jobs, key=lambda j: j.name):
                rows.append(_job_row(cluster.cluster.name, job))
                run = job.current_run
                if run is not None and run.status in FAILED_STATUSES:
                    failures.append((cluster.cluster.name, job.name, run))
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
    out += ["", _table(header, rows) if rows else "no jobs found"]
    for cluster_name, job_name, run in failures:
        out += [
            "",
            f"{cluster_name} / {job_name}: run "
            f"{'?' if run.submission_id is None else run.submission_id} FAILED",
        ]
        if run.error_summary:
            out.append(f"  summary: {run.error_summary}")
        if run.error_details:
            details = run.error_details[:ERROR_DETAILS_MAX]
            out.append(textwrap.indent(details, "  | "))
    # a lone surrogate (from a JSON "\\udxxx" escape in an API answer) cannot be printed as UTF-8
    return "\n".join(out).encode("utf-8", "backslashreplace").decode("utf-8")


def target_failed(snapshot: Snapshot) -> bool:
    """A target or one of its clusters could not be read (``check`` exits 1)."""
    return any(
        target.up is not True or any(cluster.up is False for cluster in target.clusters)
        for target in snapshot.targets
    )
