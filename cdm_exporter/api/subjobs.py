"""The run a ShowJobStatus answer reports for one job, including an entire-DB (BATCH) parent's.

Running an entire-DB migration job makes one sub-job per table (OTC user guide, "Creating an
Entire Database Migration Job"), and the parent's ShowJobStatus answer then holds one submission
per sub-job (named ``<parent>_<table>``) instead of one run of its own. Picking any one of them
would make the parent read SUCCEEDED while a table is still copying, or hide a failed table.
So when an answer holds runs of several job names, the parent's run is made from the newest run
of each (:func:`combine`):

* **status**: any sub-job active means the parent is active (RUNNING before BOOTING before
  PENDING, the furthest along wins); else any failed means failed (FAILED before
  FAILURE_ON_SUBMIT); else any other unfinished business (STOPPED, UNKNOWN, a status we do not
  know) is the parent's status; else SUCCEEDED (sub-jobs that never ran do not count);
  else NEVER_EXECUTED;
* **progress**: the mean over sub-jobs, an ended sub-job counting as done (100);
* **counters** and ``write_rows``/``update_rows``/``delete_rows``: summed over the sub-jobs that
  report them (absent when none does);
* **dates**: the earliest creation and execution, the latest update; **submission id**: the
  highest (the newest sub-job's);
* **error**: the failed sub-jobs' summaries, each named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from cdm_exporter.api.models import ACTIVE_STATUSES, FAILED_STATUSES, Counters, Submission, latest

#: Active statuses, the furthest along first; then the failures, worst first.
_ACTIVE_ORDER = ("RUNNING", "BOOTING", "PENDING")
_FAILED_ORDER = ("FAILED", "FAILURE_ON_SUBMIT")
_NOT_RUN = frozenset({"NEVER_EXECUTED", "NEW"})


def current_run(job_name: str, submissions: Sequence[Submission]) -> Submission | None:
    """The run ShowJobStatus reports for ``job_name``: its newest submission, or, when the answer
    holds runs of several job names (an entire-DB parent lists its sub-jobs), their combination."""
    names = sorted({run.job_name for run in submissions})
    if len(names) <= 1:
        return latest(list(submissions))
    parts = [latest([run for run in submissions if run.job_name == name]) for name in names]
    return combine(job_name, [part for part in parts if part is not None])


def combined_status(statuses: Sequence[str | None]) -> str | None:
    """The parent's status from its sub-jobs' (see the module docstring)."""
    known = [status for status in statuses if status is not None]
    for wanted in (*_ACTIVE_ORDER, *_FAILED_ORDER):
        if wanted in known:
            return wanted
    for status in known:
        if status not in ACTIVE_STATUSES and status != "SUCCEEDED" and status not in _NOT_RUN:
            return status  # STOPPED, UNKNOWN or a status we do not know: not a success
    if "SUCCEEDED" in known:
        return "SUCCEEDED"
    return known[0] if known else None


def _sum(values: Sequence[int | None]) -> int | None:
    present = [value for value in values if value is not None]
    return sum(present) if present else None


def _counters(parts: Sequence[Submission]) -> Counters | None:
    reported = [part.counters for part in parts if part.counters is not None]
    if not reported:
        return None
    return Counters(**{f.name: _sum([getattr(c, f.name) for c in reported]) for f in fields(Counters)})


def _progress(parts: Sequence[Submission]) -> float | None:
    """Mean percent done over the sub-jobs; an ended one counts as done, an active one without a
    progress as not started."""
    done = [
        (part.progress or 0.0) if part.status in ACTIVE_STATUSES or part.status is None else 100.0
        for part in parts
    ]
    return sum(done) / len(done) if done else None


def _errors(parts: Sequence[Submission]) -> tuple[str | None, str | None]:
    failed = [part for part in parts if part.status in FAILED_STATUSES]
    if not failed:
        return None, None
    first = failed[0]
    summary = f"{first.job_name}: {first.error_summary or first.status}"
    if len(failed) > 1:
        summary = f"{len(failed)} of {len(parts)} sub-jobs failed; {summary}"
    details = "\n".join(
        f"{part.job_name}: {part.error_details or part.error_summary or part.status}" for part in failed
    )
    return summary, details


def _earliest(values: Sequence[float | None]) -> float | None:
    return min((value for value in values if value is not None), default=None)


def _latest(values: Sequence[float | None]) -> float | None:
    return max((value for value in values if value is not None), default=None)


def combine(job_name: str, parts: Sequence[Submission]) -> Submission | None:
    """One run of ``job_name`` made from its sub-jobs' runs ``parts`` (see the module docstring)."""
    if not parts:
        return None
    newest = max(parts, key=lambda part: part.last_update_date or part.creation_date or 0.0)
    summary, details = _errors(parts)
    ids = [part.submission_id for part in parts if part.submission_id is not None]
    return Submission(
        job_name=job_name,
        status=combined_status([part.status for part in parts]),
        progress=_progress(parts),
        submission_id=max(ids) if ids else None,
        creation_user=parts[0].creation_user,
        last_update_user=newest.last_update_user,
        creation_date=_earliest([part.creation_date for part in parts]),
        execute_date=_earliest([part.execute_date for part in parts]),
        last_update_date=_latest([part.last_update_date for part in parts]),
        is_incrementing=parts[0].is_incrementing,
        is_stopping_increment=parts[0].is_stopping_increment,
        is_execute_auto=parts[0].is_execute_auto,
        is_delete_job=parts[0].is_delete_job,
        write_rows=_sum([part.write_rows for part in parts]),
        update_rows=_sum([part.update_rows for part in parts]),
        delete_rows=_sum([part.delete_rows for part in parts]),
        counters=_counters(parts),
        error_summary=summary,
        error_details=details,
    )
