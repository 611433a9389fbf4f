"""Reading a job's run history (ShowSubmissions) page by page, for its last success and its run counts.

Nothing documents the order of the history, and a page holds 10 runs by default, so the newest
success, and the runs that ended unseen, may sit on any page. After each page the scan decides
whether it knows enough:

* the history ended (an empty or short page, or ``total`` runs read);
* every run read so far came newest first (submission ids, else creation dates, falling), and
  the counting is covered: a run of the job at or below the tally's ``settled`` id was read, so
  every run above it was (:mod:`cdm_exporter.polling.run_counts`); and either a SUCCEEDED run was
  among them (the first success met is the newest) or the last success was known before the scan
  (from an earlier scan, or a success seen ending): any newer one would be above ``settled``;
* the server ignores ``page_no`` (a page repeats the previous one), or :data:`MAX_PAGES` pages
  were read.

Otherwise the next page is read, within the budget; a scan the budget cuts short resumes at the
next collection. Each page's successes raise the last success, and its ended runs are counted, as
soon as it is read; a finished scan settles the run ids it covered (:attr:`HistoryScan.covered`).
Only runs named as the job count: an entire-DB job's history may hold its sub-jobs' runs, which
are not runs of the job.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cdm_exporter.api.models import ACTIVE_STATUSES, Submission, SubmissionPage

#: the history is not read beyond this many pages per scan (10 runs each by default)
MAX_PAGES = 50
#: ShowSubmissions' documented page size
DEFAULT_PAGE_SIZE = 10


def _order_key(run: Submission) -> float | None:
    if run.submission_id is not None:
        return float(run.submission_id)
    return run.creation_date


def _min(*values: int | None) -> int | None:
    return min((v for v in values if v is not None), default=None)


def _max(*values: int | None) -> int | None:
    return max((v for v in values if v is not None), default=None)


@dataclass(frozen=True, slots=True)
class HistoryScan:
    """A history read so far: the next page to read and what the pages told."""

    page_no: int = 1
    last_success: float | None = None  # end of the newest SUCCEEDED run read
    newest_first: bool = True  # every run read so far came in falling order
    last_key: float | None = None  # order key of the last run read
    previous_ids: tuple[int | None, ...] = ()  # submission ids of the last page read
    done: bool = False
    # for the run counts (ids of the job's own runs)
    known_top: int | None = None  # every run up to this id had begun, and ended, when the scan began
    top: int | None = None  # the highest id read
    lowest_active: int | None = None  # the lowest id of an unsettled run read while still active
    reached: bool = False  # a run at or below the tally's settled id was read while newest first
    success_known: bool = False  # the last success was known before: a newer one is above settled
    list_key: tuple[object, ...] | None = None  # the job list entry's change key when the scan began

    @classmethod
    def begin(
        cls,
        newest: Submission | None,
        *,
        success_known: bool,
        list_key: tuple[object, ...] | None = None,
    ) -> HistoryScan:
        """A scan of a job whose status showed ``newest`` last: a history read from now on holds
        every run up to it (one the job keeps), so a scan that ends covers them. ``success_known``:
        the job's last success is known as of its settled runs (an earlier scan finished, or a
        success was seen). ``list_key``: what the job list said then, which the scan accounts for."""
        sid = newest.submission_id if newest is not None else None
        if sid is None or newest is None:
            return cls(success_known=success_known, list_key=list_key)
        top = sid if newest.status not in ACTIVE_STATUSES else sid - 1
        return cls(known_top=top, success_known=success_known, list_key=list_key)

    def read(self, page: SubmissionPage, job_name: str, settled: int | None) -> HistoryScan:
        """The scan after reading ``page`` (the one numbered :attr:`page_no`) of ``job_name``'s
        history, whose run tally has settled the ids up to ``settled`` (None: no tally)."""
        ids = tuple(run.submission_id for run in page.runs)
        entries = len(page.runs) + page.dropped
        repeated = bool(ids) and ids == self.previous_ids
        newest_first, last_key = self.newest_first, self.last_key
        if not repeated:
            for run in page.runs:
                key = _order_key(run)
                if key is None or (last_key is not None and key >= last_key):
                    newest_first = False
                last_key = key if key is not None else last_key
        runs = [run for run in page.runs if run.job_name == job_name]
        ends = [run.end_date for run in runs if run.status == "SUCCEEDED"]
        found = max((end for end in ends if end is not None), default=None)
        best = max((v for v in (self.last_success, found) if v is not None), default=None)
        own = [run.submission_id for run in runs if run.submission_id is not None]
        active = [
            run.submission_id
            for run in runs
            if run.submission_id is not None
            and run.status in ACTIVE_STATUSES
            and (settled is None or run.submission_id > settled)
        ]
        reached = self.reached or (settled is not None and any(sid <= settled for sid in own))
        size = page.page_size or DEFAULT_PAGE_SIZE
        ended = (
            entries == 0 or entries < size or (page.total is not None and self.page_no * size >= page.total)
        )
        enough = newest_first and (
            (best is not None and (settled is None or reached)) or (self.success_known and reached)
        )
        return replace(
            self,
            page_no=self.page_no + 1,
            last_success=best,
            newest_first=newest_first,
            last_key=last_key,
            previous_ids=ids,
            done=ended or enough or repeated or self.page_no >= MAX_PAGES,
            top=_max(self.top, *own),
            lowest_active=_min(self.lowest_active, *active),
            reached=reached,
        )

    @property
    def covered(self) -> int | None:
        """The id up to which a finished scan has met every run that ended (the tally settles
        them): the highest read or known at the start, below the lowest still active."""
        through = _max(self.top, self.known_top)
        if through is not None and self.lowest_active is not None:
            through = min(through, self.lowest_active - 1)
        return through
