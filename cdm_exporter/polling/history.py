"""Reading a job's run history (ShowSubmissions) for its last success, page by page.

Nothing documents the order of the history, and a page holds 10 runs by default, so the newest
success may sit on any page. After each page the scan decides whether it knows enough:

* the history ended (an empty or short page, or ``total`` runs read);
* every run read so far came newest first (submission ids, else creation dates, falling) and a
  SUCCEEDED run was among them: the first success met is the newest;
* the server ignores ``page_no`` (a page repeats the previous one), or :data:`MAX_PAGES` pages
  were read.

Otherwise the next page is read, within the budget; a scan the budget cuts short resumes at the
next collection. Each success found raises the last success as soon as it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cdm_exporter.api.models import Submission, SubmissionPage

#: the history is not read beyond this many pages per scan (10 runs each by default)
MAX_PAGES = 50
#: ShowSubmissions' documented page size
DEFAULT_PAGE_SIZE = 10


def _order_key(run: Submission) -> float | None:
    if run.submission_id is not None:
        return float(run.submission_id)
    return run.creation_date


@dataclass(frozen=True, slots=True)
class HistoryScan:
    """A history read so far: the next page to read and what the pages told."""

    page_no: int = 1
    last_success: float | None = None  # end of the newest SUCCEEDED run read
    newest_first: bool = True  # every run read so far came in falling order
    last_key: float | None = None  # order key of the last run read
    previous_ids: tuple[int | None, ...] = ()  # submission ids of the last page read
    done: bool = False

    def read(self, page: SubmissionPage) -> HistoryScan:
        """The scan after reading ``page`` (the one numbered :attr:`page_no`)."""
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
        ends = [run.end_date for run in page.runs if run.status == "SUCCEEDED"]
        found = max((end for end in ends if end is not None), default=None)
        best = max((v for v in (self.last_success, found) if v is not None), default=None)
        size = page.page_size or DEFAULT_PAGE_SIZE
        ended = (
            entries == 0 or entries < size or (page.total is not None and self.page_no * size >= page.total)
        )
        enough = newest_first and best is not None
        return replace(
            self,
            page_no=self.page_no + 1,
            last_success=best,
            newest_first=newest_first,
            last_key=last_key,
            previous_ids=ids,
            done=ended or enough or repeated or self.page_no >= MAX_PAGES,
        )
