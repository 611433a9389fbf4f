"""The one rule for reading a job list (ShowJobs ``job/all``) page by page, and its bounds.

:class:`JobListPaging` is told each page as it arrives and says whether the list is complete
or which page comes next, so a caller can spread the pages of one list over several budgeted
collections. A list ends at an empty page, once ``total`` entries were seen, or, when ``total``
is unknown (absent, or 0 as single-job answers carry it), at a page shorter than the page size
in effect (the server's own ``page_size`` when it reports a smaller one).

Pages that do not add up are a :class:`PagingError` rather than unbounded work or a silently
short list (the poller would take missing jobs for deleted ones): a page that repeats the
previous one (a server ignoring ``page_no``), a page larger than the page size asked for, more
pages than ``total`` allows at the page size in effect, or more than ``max_pages`` pages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cdm_exporter.api.errors import MalformedResponse
from cdm_exporter.api.models import JobPage

#: Largest page the API accepts (ShowJobs ``page_size`` is 10..100).
JOB_PAGE_SIZE = 100
#: 1000 pages of 100 = 100 000 jobs in one cluster and type, far beyond what CDM is used for.
MAX_PAGES = 1000


class PagingError(MalformedResponse):
    """The pages of a job list do not add up to one list."""


@dataclass
class JobListPaging:
    """Where the reading of one job type's list stands: the page to ask for next, or done."""

    page_size: int = JOB_PAGE_SIZE
    max_pages: int = MAX_PAGES
    page_no: int = field(default=1, init=False)
    done: bool = field(default=False, init=False)
    seen: int = field(default=0, init=False)  # entries read so far, usable or not
    _previous: tuple[str, ...] | None = field(default=None, init=False, repr=False)

    def accept(self, page: JobPage) -> None:
        """Take the answer for ``page_no``: set ``done`` or move ``page_no`` on.

        Raises :class:`PagingError` when the page breaks the rule; the list must then be read
        again from its first page.
        """
        if self.done:
            raise ValueError("the list is already complete")
        entries = len(page.jobs) + page.dropped
        if entries == 0:
            self.done = True
            return
        if entries > self.page_size:
            raise _error(
                f"page {self.page_no} has {entries} entries, more than the {self.page_size} asked for"
            )
        names = tuple(job.name for job in page.jobs)
        if names and names == self._previous:
            raise _error(f"page {self.page_no} repeats the previous page (paging ignored?)")
        self._previous = names
        self.seen += entries
        in_effect = self.page_size
        if page.page_size is not None and 0 < page.page_size < self.page_size:
            in_effect = page.page_size
        total = page.total or None  # 0 is what single-job answers carry: unknown
        if total is None:
            self.done = entries < in_effect
        else:
            self.done = self.seen >= total
            if not self.done and self.page_no >= math.ceil(total / in_effect):
                raise _error(
                    f"{self.seen} of {total} entries after {self.page_no} pages of {in_effect}: "
                    "more pages than total allows"
                )
        if self.done:
            return
        if self.page_no >= self.max_pages:
            raise _error(f"more than {self.max_pages} pages of jobs")
        self.page_no += 1


def _error(message: str) -> PagingError:
    return PagingError("list_jobs", message)
