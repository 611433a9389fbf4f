"""Counting a job's ended runs exactly once (``cdm_job_runs_total``, ``cdm_job_run_failures_total``).

A run is told apart from another by its submission id, which only grows from one run of a job to
the next but need not grow by one: Sqoop, on which CDM is built, numbers submissions per
repository, so other jobs' runs may take the ids in between. The record kept per job is compact
(:class:`RunTally`):

* ``settled``: every run whose id is at most this is counted, or ended before counting began;
* ``counted``: the ids above ``settled`` that are counted already (runs seen ending while some id
  below them is not accounted for yet).

Counting begins at the job's first status read, its baseline (:meth:`RunTally.start`): runs that
ended before are not news, so the counters start at 0 where the history stood, and Prometheus'
``increase()`` gives runs per period. A run active at the baseline is counted when it ends.

A run is counted when it is seen ended (any status but an active one or "never ran"), by the status
call or in a history page, unless its id is settled or counted already: so a run seen both ways,
on two pages, or twice on one, counts once. An id above ``settled`` that is neither counted nor the
active run may be a run that ended unseen (:meth:`RunTally.gap`): the poller then reads the run
history, and once a read has covered every run above ``settled`` (:class:`~.history.HistoryScan`)
those ids are settled (:meth:`RunTally.settle`). A run the history no longer holds when it is read
(CDM keeps about 30 days) is never counted.

A run without a submission id is not counted: nothing else tells it apart from the next one. (Only
runs that are just starting come without one; the same run has its id once it is under way.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cdm_exporter.api.models import ACTIVE_STATUSES, FAILED_STATUSES, Submission

#: statuses of a job that never ran: not a run that ended
NOT_RUN = frozenset({"NEVER_EXECUTED", "NEW"})
#: counted ids kept above ``settled`` at most; beyond, the ids below the oldest are given up on
#: (only reached when the history cannot be read for that many runs in a row)
MAX_COUNTED = 256


def run_ended(run: Submission) -> bool:
    """Whether ``run`` is over: any status but an active one, "never ran", or none at all."""
    return run.status is not None and run.status not in ACTIVE_STATUSES and run.status not in NOT_RUN


@dataclass(frozen=True, slots=True)
class RunTally:
    """A job's ended runs counted so far, and which submission ids they were (see the module)."""

    since: float  # wall time counting began (the baseline): runs that ended before are not counted
    settled: int  # every run with an id at most this is counted or ended before ``since``
    runs: int = 0
    failures: int = 0
    counted: tuple[int, ...] = ()  # ids above ``settled`` counted already, ascending

    @classmethod
    def start(cls, latest: Submission | None, now: float) -> RunTally | None:
        """The baseline at the first status read, whose newest run is ``latest`` (None: no run);
        None while it cannot be placed (a starting run with no id yet: the next read places it)."""
        if latest is None or latest.status in NOT_RUN:
            return cls(since=now, settled=0)
        if latest.submission_id is None:
            return None
        ended = run_ended(latest)
        return cls(since=now, settled=latest.submission_id if ended else latest.submission_id - 1)

    def observe(self, runs: Iterable[Submission]) -> RunTally:
        """This tally with every run of ``runs`` that ended and is not counted yet counted."""
        counted = set(self.counted)
        added = failed = 0
        for run in runs:
            sid = run.submission_id
            if sid is None or sid <= self.settled or sid in counted or not run_ended(run):
                continue
            counted.add(sid)
            added += 1
            failed += run.status in FAILED_STATUSES
        if not added:
            return self
        return _compacted(self, self.settled, counted, self.runs + added, self.failures + failed)

    def gap(self, newest: int | None) -> bool:
        """Whether a run below the run ``newest`` (the newest id known) may have ended uncounted:
        an id between ``settled`` and it that is not counted."""
        if newest is None:
            return False
        below = sum(1 for sid in self.counted if sid < newest)
        return newest - self.settled - 1 > below

    def settle(self, through: int | None) -> RunTally:
        """Every run up to id ``through`` that ended is counted now: a history read covered them."""
        if through is None or through <= self.settled:
            return self
        counted = {sid for sid in self.counted if sid > through}
        return _compacted(self, through, counted, self.runs, self.failures)


def _compacted(tally: RunTally, settled: int, counted: set[int], runs: int, failures: int) -> RunTally:
    """``counted`` folded into ``settled`` as far as the ids run on without a hole, and cut to
    :data:`MAX_COUNTED` (the oldest hole given up on)."""
    ordered = sorted(sid for sid in counted if sid > settled)
    while ordered and (ordered[0] == settled + 1 or len(ordered) > MAX_COUNTED):
        settled = ordered.pop(0)
    return RunTally(tally.since, settled, runs, failures, tuple(ordered))


def tally_after_status(tally: RunTally | None, run: Submission | None, now: float) -> RunTally | None:
    """``tally`` after a status read showed ``run`` (None: the job has no run) at wall time ``now``:
    the baseline at the first read, then the run counted once it has ended."""
    if tally is None:
        return RunTally.start(run, now)
    return tally.observe([run]) if run is not None else tally
