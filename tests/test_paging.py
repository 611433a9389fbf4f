"""The one paging rule of the job list: where a list ends, and the pages that are an error.

The rule is table-tested on hand-made pages, then used with the real client against the
simulator over HTTP, as the poller uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cdm_exporter.api.auth import TokenAuth
from cdm_exporter.api.client import CdmClient
from cdm_exporter.api.models import JOB_TYPES, JobPage, JobSummary
from cdm_exporter.api.paging import JobListPaging, PagingError
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings


@dataclass(frozen=True)
class Page:
    """A page as the server sends it: ``entries`` distinct names (or ``repeat`` of an earlier page)."""

    entries: int
    total: int | None = None
    page_size: int | None = None  # what the server says its page size is
    dropped: int = 0  # unusable entries among ``entries``
    repeat: int | None = None  # the index of an earlier page this one repeats


def answers(pages: list[Page]) -> list[JobPage]:
    made: list[JobPage] = []
    for index, page in enumerate(pages):
        if page.repeat is not None:
            made.append(made[page.repeat])
            continue
        names = [f"p{index}-j{i}" for i in range(page.entries - page.dropped)]
        jobs = tuple(JobSummary(name=name) for name in names)
        made.append(JobPage(jobs, page.total, index + 1, page.page_size, page.dropped))
    return made


def read(pages: list[Page], **paging: int) -> tuple[JobListPaging, int]:
    """Feed ``pages`` to a paging rule until it is done; returns it and how many pages it took."""
    rule = JobListPaging(**paging)
    taken = 0
    for page in answers(pages):
        assert rule.page_no == taken + 1, "the rule asked for another page than the next"
        rule.accept(page)
        taken += 1
        if rule.done:
            break
    assert rule.done, f"the list did not end after {taken} pages"
    return rule, taken


ENDS: list[tuple[str, list[Page], int]] = [
    # (case, the server's pages, how many of them the list takes)
    ("empty", [Page(0, total=0)], 1),
    ("total-reached-on-a-short-page", [Page(100, total=130), Page(30, total=130)], 2),
    ("total-reached-on-a-full-page-no-extra-call", [Page(100, total=100)], 1),
    ("total-0-is-unknown-so-a-full-page-goes-on", [Page(100, total=0), Page(20, total=0)], 2),
    ("no-total-short-page-ends", [Page(40)], 1),
    ("no-total-full-page-then-empty", [Page(100), Page(0)], 2),
    ("unusable-entries-count-as-entries", [Page(100, dropped=1), Page(5)], 2),
    (
        "server-page-size-without-total",
        [Page(10, page_size=10), Page(10, page_size=10), Page(3, page_size=10)],
        3,
    ),
    (
        "server-page-size-with-total",
        [Page(10, total=25, page_size=10), Page(10, total=25, page_size=10), Page(5, total=25)],
        3,
    ),
    ("jobs-deleted-while-paging", [Page(100, total=250), Page(90, total=250), Page(0, total=250)], 3),
    ("jobs-added-while-paging", [Page(100, total=150), Page(60, total=160)], 2),
]


@pytest.mark.parametrize(("pages", "taken"), [(p, t) for _, p, t in ENDS], ids=[c for c, _, _ in ENDS])
def test_where_a_list_ends(pages: list[Page], taken: int) -> None:
    rule, took = read(pages)
    assert took == taken
    assert rule.seen == sum(p.entries for p in pages[:taken])


ERRORS: list[tuple[str, list[Page], str]] = [
    # (case, the server's pages, what the error says)
    ("page-no-ignored", [Page(100), Page(0, repeat=0)], "page 2 repeats the previous page (paging ignored?)"),
    (
        "page-no-ignored-with-total-0",
        [Page(100, total=0), Page(0, repeat=0)],
        "page 2 repeats the previous page (paging ignored?)",
    ),
    ("page-larger-than-asked", [Page(101)], "page 1 has 101 entries, more than the 100 asked for"),
    (
        "more-pages-than-total-allows",
        [Page(100, total=150), Page(40, total=150)],
        "140 of 150 entries after 2 pages of 100: more pages than total allows",
    ),
    (
        "more-pages-than-total-allows-at-the-servers-size",
        [Page(10, total=30, page_size=10), Page(10, total=30, page_size=10), Page(9, total=30, page_size=10)],
        "29 of 30 entries after 3 pages of 10: more pages than total allows",
    ),
]


@pytest.mark.parametrize(("pages", "message"), [(p, m) for _, p, m in ERRORS], ids=[c for c, _, _ in ERRORS])
def test_pages_that_do_not_add_up_are_an_error(pages: list[Page], message: str) -> None:
    with pytest.raises(PagingError) as caught:
        read(pages)
    assert caught.value.endpoint == "list_jobs"
    assert caught.value.kind == "malformed"
    assert caught.value.message == message


def test_a_list_without_total_stops_at_max_pages() -> None:
    endless = [Page(10) for _ in range(5)]
    with pytest.raises(PagingError, match="more than 3 pages of jobs"):
        read(endless, page_size=10, max_pages=3)


def test_a_complete_list_takes_no_more_pages() -> None:
    rule, _ = read([Page(3)])
    with pytest.raises(ValueError, match="already complete"):
        rule.accept(answers([Page(3)])[0])


# --- with the client, over HTTP ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorSettings(clusters=1, jobs=0, seed=3, rate_limit=0)) as simulator:
        yield simulator


def client_for(sim: Simulator) -> CdmClient:
    return CdmClient(endpoint=sim.url, project_id=sim.settings.project_id, auth=TokenAuth(sim.settings.token))


def read_all(client: CdmClient, cluster_id: str, job_type: str) -> list[JobSummary]:
    rule = JobListPaging()
    jobs: list[JobSummary] = []
    while not rule.done:
        page = client.list_jobs_page(cluster_id, job_type, rule.page_no, rule.page_size)
        rule.accept(page)
        jobs += page.jobs
    return jobs


def test_every_page_of_more_than_100_jobs_of_each_type(sim: Simulator) -> None:
    cid = sim.world.clusters()[0].id
    wanted = {"NORMAL_JOB": 130, "BATCH_JOB": 101, "SCENARIO_JOB": 100}
    for job_type, n in wanted.items():
        for i in range(n):
            sim.world.add_job(cid, f"paged-{job_type.lower()}-{i:03d}", job_type)
    start = len(sim.stats.log)
    with client_for(sim) as client:
        listed = {job_type: read_all(client, cid, job_type) for job_type in JOB_TYPES}
    for job_type, n in wanted.items():
        assert len({j.name for j in listed[job_type]}) == n
        assert {j.job_type for j in listed[job_type]} == {job_type}
    queries = [r.query for r in sim.stats.log[start:] if r.endpoint == "list_jobs"]
    # 130 -> pages 1, 2; 101 -> pages 1, 2; exactly 100 -> page 1 only (total reached)
    assert len(queries) == 5
    assert all("page_size=100" in q for q in queries)
    assert sum("page_no=2" in q for q in queries) == 2


def test_a_server_that_ignores_page_no_is_caught_at_the_second_page(sim: Simulator) -> None:
    body = '{"jobs": [' + ", ".join(f'{{"name": "j{i}"}}' for i in range(100)) + "]}"  # no total
    sim.add_fault(Fault(endpoint="list_jobs", status=200, body=body))
    start = sim.stats.count("list_jobs")
    try:
        with client_for(sim) as client, pytest.raises(PagingError, match="repeats the previous page"):
            read_all(client, sim.world.clusters()[0].id, "NORMAL_JOB")
    finally:
        sim.clear_faults()
    assert sim.stats.count("list_jobs") - start == 2
