"""The poller's decisions about what to read next, as pure functions of the known state.

* :func:`status_fetch_order`: which jobs' ``/status`` to fetch, in order: running jobs, then
  jobs whose list entry changed since their last fetch, then the rest, each oldest-refreshed
  first; when running jobs alone would take every call, a quarter is kept for changed jobs.
* :func:`missed_a_run`: whether a run may have ended between two observations without being
  seen, which makes the poller read the job's run history (for its last success).
"""

from __future__ import annotations

from collections.abc import Iterable

from cdm_exporter.api.models import ACTIVE_STATUSES, Submission
from cdm_exporter.polling.state import JobState


def _age(job: JobState) -> float:
    return job.refreshed_at if job.refreshed_at is not None else float("-inf")


def status_fetch_order(jobs: Iterable[JobState], slots: int) -> list[JobState]:
    """Every job, in the order their status should be fetched when ``slots`` calls are left.

    Running jobs come first, but when they alone would take every call, a quarter of the calls
    is kept for jobs whose list entry changed: a run that ended must be read (its error,
    counters, last success) even while more jobs run than the budget can refresh.
    """
    jobs = list(jobs)
    active = sorted((j for j in jobs if j.active), key=_age)
    changed = sorted((j for j in jobs if not j.active and j.changed_since_fetch), key=_age)
    rest = sorted((j for j in jobs if not j.active and not j.changed_since_fetch), key=_age)
    reserve = min(len(changed), max(1, slots // 4)) if len(active) >= slots else 0
    first = active[: max(0, slots - reserve)]
    return first + changed + active[len(first) :] + rest


def missed_a_run(previous: Submission | None, run: Submission) -> bool:
    """Could a run have finished between the observations ``previous`` and ``run`` unseen?"""
    if run.status == "SUCCEEDED":
        return False  # this run itself tells the last success
    if previous is None:
        return run.status not in ("NEVER_EXECUTED", "NEW", None)
    if run.submission_id is None or previous.submission_id is None:
        return run.creation_date != previous.creation_date
    if run.submission_id == previous.submission_id:
        return False
    # a new run started: the previous one ended unseen unless we saw it end, and runs between
    # the two were never seen at all
    seen_end = previous.status not in ACTIVE_STATUSES
    return run.submission_id > previous.submission_id + 1 or not seen_end
