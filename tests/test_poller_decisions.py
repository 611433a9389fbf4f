"""The poller's decisions, table by table, against a fake API client with a manual clock.

What to fetch next (running, then changed, then the oldest, with a reserve for changed jobs),
how the budget is spent between scrapes, when a run ended unseen (the history is read), how ended
runs are counted (once, whether seen ending or found in the history), and where a job list ends or
fails. The same behaviour end to end, over HTTP against the simulator, is in ``test_poller.py``.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from fake_api import CLUSTER, MINUTE, Call, FakeApi, PollerHarness, page, run, summary, worst_rolling_minute

from cdm_exporter.api.errors import ServerError
from cdm_exporter.api.models import JobPage, JobSummary, Submission


@pytest.fixture
def make_harness() -> Iterator[Callable[..., PollerHarness]]:
    made: list[PollerHarness] = []

    def make(api: FakeApi, **settings: Any) -> PollerHarness:
        harness = PollerHarness(api, **settings)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def fetched(calls: list[Call], endpoint: str) -> list[str]:
    return [c.subject for c in calls if c.endpoint == endpoint]


# --- what to fetch next ----------------------------------------------------------------------------

ORDER: list[tuple[str, tuple[int, int, int], int, tuple[int, int, int]]] = [
    # (case, jobs (running, changed, unchanged), status calls left, fetched (running, changed, unchanged))
    ("budget-for-all", (2, 1, 2), 5, (2, 1, 2)),
    ("running-then-changed", (2, 1, 2), 3, (2, 1, 0)),
    ("then-the-oldest", (2, 1, 2), 4, (2, 1, 1)),
    ("no-reserve-while-running-jobs-leave-room", (1, 2, 2), 2, (1, 1, 0)),
    ("a-reserve-when-running-jobs-take-every-call", (4, 2, 2), 4, (3, 1, 0)),
    ("the-reserve-is-a-twentieth", (50, 5, 0), 40, (38, 2, 0)),
    ("the-reserve-is-at-least-one", (3, 3, 0), 2, (1, 1, 0)),
    ("no-reserve-without-changed-jobs", (8, 0, 2), 8, (8, 0, 0)),
]


@pytest.mark.parametrize(("jobs", "slots", "expected"), [r[1:] for r in ORDER], ids=[r[0] for r in ORDER])
def test_what_to_fetch_next(
    make_harness: Callable[..., PollerHarness],
    jobs: tuple[int, int, int],
    slots: int,
    expected: tuple[int, int, int],
) -> None:
    running, changed, unchanged = jobs
    api = FakeApi()
    for i in range(running):
        api.put(summary(f"running-{i}", "RUNNING"), run(f"running-{i}", 1, "RUNNING"))
    for i in range(changed):
        api.put(summary(f"changed-{i}"), run(f"changed-{i}", 1, "SUCCEEDED"))
    for i in range(unchanged):
        api.put(summary(f"unchanged-{i}"), run(f"unchanged-{i}", 1, "SUCCEEDED"))
    harness = make_harness(api, job_status=120)  # the first round leaves room in the window
    assert len(fetched(harness.collect(), "job_status")) == sum(jobs)  # every job fetched once
    for i in range(changed):  # a new run of each of these failed since
        api.put(summary(f"changed-{i}", "FAILED", 2000.0), run(f"changed-{i}", 2, "FAILED", 2000.0))
    harness.clock.advance(60.0)  # the list is due again; the budget is back
    harness.leave("job_status", slots)
    calls = fetched(harness.collect(), "job_status")
    kinds = Counter(name.split("-")[0] for name in calls)
    assert (kinds["running"], kinds["changed"], kinds["unchanged"]) == expected, calls


def test_jobs_are_refreshed_oldest_first(make_harness: Callable[..., PollerHarness]) -> None:
    api = FakeApi()
    for name in ("a", "b", "c"):
        api.put(summary(name), run(name, 1, "SUCCEEDED"))
    harness = make_harness(api, job_status=1, job_list_interval=3600.0)  # one status call a minute
    order = [name for _ in range(5) for name in fetched(harness.collect(advance=MINUTE), "job_status")]
    assert sorted(order[:3]) == ["a", "b", "c"]  # each once before any twice
    assert order[3:] == order[:2]  # then the ones refreshed longest ago


def test_jobs_never_fetched_wait_behind_running_jobs_and_ended_runs(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api = FakeApi()
    for i in range(4):
        api.put(summary(f"running-{i}", "RUNNING"), run(f"running-{i}", 1, "RUNNING"))
    api.put(summary("ended-0", "RUNNING"), run("ended-0", 1, "RUNNING"))
    harness = make_harness(api, job_status=60)
    harness.collect()  # every job fetched once
    api.put(summary("ended-0", "FAILED"), run("ended-0", 1, "FAILED"))  # its run ended
    for i in range(6):  # and jobs that were never fetched appear, as after a start
        api.put(summary(f"new-{i}"), run(f"new-{i}", 1, "SUCCEEDED"))
    harness.clock.advance(MINUTE)
    harness.leave("job_status", 4)
    kinds = Counter(name.split("-")[0] for name in fetched(harness.collect(), "job_status"))
    assert (kinds["running"], kinds["ended"], kinds["new"]) == (3, 1, 0)


# --- between scrapes: the pace -------------------------------------------------------------------


def scrape_every(
    harness: PollerHarness, interval: float, minutes: float
) -> tuple[list[tuple[float, Call]], list[float]]:
    """Scrapes every ``interval`` s, the poller pacing its calls in between; every call with its
    time, and the scrape times."""
    made: list[tuple[float, Call]] = []
    scrapes: list[float] = []
    for _ in range(int(minutes * 60 / interval)):
        scrapes.append(harness.clock())
        made += [(harness.clock(), call) for call in harness.collect()]
        made += harness.pace(interval)
    return made, scrapes


@pytest.mark.parametrize("interval", [10.0, 15.0, 30.0, 60.0])
def test_the_whole_budget_is_spent_between_scrapes_and_never_more(
    make_harness: Callable[..., PollerHarness], interval: float
) -> None:
    api = FakeApi()
    for i in range(150):  # more running jobs than 60 calls a minute can refresh in a scrape interval
        api.put(summary(f"job-{i:03d}", "RUNNING"), run(f"job-{i:03d}", 1, "RUNNING"))
    harness = make_harness(api, job_status=60, job_list_interval=3600.0, paced=True)
    made, scrapes = scrape_every(harness, interval, 8)
    sent = [at for at, call in made if call.endpoint == "job_status"]
    assert worst_rolling_minute(sent) <= 60
    steady = [at for at in sent if at >= scrapes[0] + 120.0]
    assert len(steady) / 6 >= 0.97 * 60  # calls a minute after the first two
    # a call in every scrape interval: between any two scrapes, not only at them
    for begin, end in itertools.pairwise(scrapes):
        assert any(begin <= at < end for at in steady) or end <= scrapes[0] + 120.0


@pytest.mark.parametrize("interval", [10.0, 15.0, 30.0, 60.0])
def test_running_jobs_are_as_fresh_as_a_round_robin_over_the_budget(
    make_harness: Callable[..., PollerHarness], interval: float
) -> None:
    api = FakeApi()
    for i in range(150):
        api.put(summary(f"job-{i:03d}", "RUNNING"), run(f"job-{i:03d}", 1, "RUNNING"))
    harness = make_harness(api, job_status=60, job_list_interval=3600.0, paced=True)
    ages: list[float] = []
    for k in range(int(10 * 60 / interval)):
        harness.collect()
        if k * interval >= 180.0:  # every job fetched once, the first minute's burst over
            now = harness.clock()
            ages += [now - job.refreshed_at for job in harness.jobs().values() if job.refreshed_at]
        harness.pace(interval)
    ideal = 150 / (60 / 60)  # running jobs / status calls per second
    ages.sort()
    assert ages[int(0.95 * len(ages))] <= 1.1 * ideal
    assert ages[int(0.50 * len(ages))] <= 0.6 * ideal


def test_a_start_with_more_running_jobs_than_tokens_reads_them_at_an_even_pace(
    make_harness: Callable[..., PollerHarness],
) -> None:
    """150 running jobs, never read, and a minute of 60 calls: all 60 read at the first scrape
    would come due together a round later, behind the 90 others; read at the pace, no job's data
    is older than a round once every job was read, not even in the first minutes after."""
    api = FakeApi()
    for i in range(150):
        api.put(summary(f"job-{i:03d}", "RUNNING"), run(f"job-{i:03d}", 1, "RUNNING"))
    harness = make_harness(api, job_status=60, job_list_interval=3600.0, paced=True)
    first = [call for call in harness.collect() if call.endpoint == "job_status"]
    assert first == []  # left to the pacer, not the minute's 60 at once
    worst: list[float] = []  # the oldest data at each scrape once every running job was read
    for _ in range(30):
        harness.pace(10.0)
        harness.collect()
        ages = running_ages(harness)
        if max(ages.values()) != float("inf"):
            worst.append(max(ages.values()))
    ideal = 150 / (60 / 60)  # running jobs / status calls per second
    assert len(worst) >= 10, "every running job read once within 200 s"
    assert max(worst) <= 1.1 * ideal, worst  # 60 read at once at the start: 210 s


def running_ages(harness: PollerHarness) -> dict[str, float]:
    """Seconds since each RUNNING job's status was fetched (never fetched: infinity)."""
    now = harness.clock()
    return {
        name: now - job.refreshed_at if job.refreshed_at is not None else float("inf")
        for name, job in harness.jobs().items()
        if job.status == "RUNNING"
    }


def fit_in_an_interval(
    make_harness: Callable[..., PollerHarness], api: FakeApi | None = None
) -> tuple[FakeApi, PollerHarness]:
    """Six running jobs and 94 ended ones (in ``api``), 30 status calls a 30 s scrape interval:
    room for every running job, and more work than budget."""
    api = api or FakeApi()
    for i in range(6):
        api.put(summary(f"running-{i}", "RUNNING"), run(f"running-{i}", 1, "RUNNING"))
    for i in range(94):
        api.put(summary(f"ended-{i:02d}"), run(f"ended-{i:02d}", 1, "SUCCEEDED"))
    return api, make_harness(api, job_status=60, job_list_interval=30.0, paced=True)


def test_running_jobs_that_fit_in_an_interval_are_read_just_before_each_scrape(
    make_harness: Callable[..., PollerHarness],
) -> None:
    _, harness = fit_in_an_interval(make_harness)
    for k in range(14):
        harness.collect()
        if k >= 4:  # the first minute's burst is over
            ages = running_ages(harness)
            spacing = harness.bucket("job_status").spacing()
            assert len(ages) == 6
            # one a spacing, begun within a spacing of its time, the last just before the scrape
            assert min(ages.values()) <= spacing
            assert max(ages.values()) <= 8 * spacing, ages
        harness.pace(30.0)


def test_a_new_run_is_read_at_the_scrape_that_sees_it_and_again_before_the_next(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api, harness = fit_in_an_interval(make_harness)
    harness.collect()
    harness.pace(30.0)  # the first minute's budget leaves tokens for the next scrape
    api.put(summary("ended-00", "RUNNING", 2000.0), run("ended-00", 2, "RUNNING", 2000.0))
    harness.collect()  # its list is due: the new run shows
    assert running_ages(harness)["ended-00"] == 0.0
    harness.pace(30.0)
    harness.collect()
    ages = running_ages(harness)
    assert max(ages.values()) <= 8 * harness.bucket("job_status").spacing(), ages


@dataclass
class PacedDuringLists(FakeApi):
    """A FakeApi whose job lists let the pacer look meanwhile, as the exporter's pacer thread
    does while a scrape reads its lists."""

    pacer: Callable[[], tuple[list[Future[None]], float | None]] | None = None
    paced: list[Future[None]] = field(default_factory=list)

    def list_jobs_page(self, *args: Any, **kwargs: Any) -> JobPage:
        if self.pacer is not None:
            self.paced += self.pacer()[0]
        return super().list_jobs_page(*args, **kwargs)


def test_the_pacer_leaves_a_scrape_its_token_for_a_new_run(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api = PacedDuringLists()
    _, harness = fit_in_an_interval(make_harness, api)
    for _ in range(3):
        harness.collect()
        harness.pace(30.0)
    api.put(summary("ended-00", "RUNNING", 2000.0), run("ended-00", 2, "RUNNING", 2000.0))
    api.pacer = harness.poller.pace
    harness.clock.advance(1.0)  # a scrape a little late: the pacer's next call is due
    harness.leave("job_status", 1)
    harness.collect()  # the list shows the new run, the pacer looking while it is read
    wait(api.paced)
    assert running_ages(harness)["ended-00"] == 0.0  # not left for the next one, 30 s stale


def test_a_list_due_just_after_a_scrape_is_read_at_the_scrape(
    make_harness: Callable[..., PollerHarness],
) -> None:
    """Prometheus scrapes a little early or late: a list due 0.3 s after a scrape is read at it,
    not just after it (which would show what it finds a whole interval later)."""
    api = FakeApi()
    api.put(summary("job"), run("job", 1, "SUCCEEDED"))
    harness = make_harness(api, job_list_interval=60.0, paced=True)
    lists: list[tuple[float, bool]] = []  # (when, at a scrape)
    for interval in [60.3, 59.7] * 4:
        lists += [(harness.clock(), True) for call in harness.collect() if call.endpoint == "list_jobs"]
        lists += [(at, False) for at, call in harness.pace(interval) if call.endpoint == "list_jobs"]
    assert len({at for at, _ in lists}) == 8  # a list (of each job type) every scrape
    assert all(at_scrape for _, at_scrape in lists), lists


def test_each_job_is_fetched_at_most_once_per_scrape_interval(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api = FakeApi()
    for i in range(5):  # the budget could fetch each of them every 3 seconds
        api.put(summary(f"job-{i}", "RUNNING"), run(f"job-{i}", 1, "RUNNING"))
    harness = make_harness(api, job_status=100, paced=True)
    made, _ = scrape_every(harness, 15.0, 2)
    sent = [at for at, call in made if call.endpoint == "job_status"]
    assert len(sent) == 5 * 8  # once per scrape, all of them at the scrape: nothing left to pace


def test_calls_stop_when_the_scrapes_stop(make_harness: Callable[..., PollerHarness]) -> None:
    api = FakeApi()
    for i in range(300):
        api.put(summary(f"job-{i:03d}", "RUNNING"), run(f"job-{i:03d}", 1, "RUNNING"))
    harness = make_harness(api, job_status=60, job_list_interval=3600.0, paced=True)
    made, scrapes = scrape_every(harness, 15.0, 3)
    made += harness.pace(600.0)  # no scrape for ten minutes
    last = max(at for at, call in made if call.endpoint == "job_status")
    assert last <= scrapes[-1] + 15.0 + 60.0  # two intervals, at least a minute, after the last scrape


def test_a_job_list_goes_on_between_scrapes(make_harness: Callable[..., PollerHarness]) -> None:
    api = FakeApi(pages={"NORMAL_JOB": [page(names(p, 100 if p != "c" else 50), 250) for p in "abc"]})
    # the cluster list and two pages, then a call every 20 s
    harness = make_harness(api, common=3, paced=True)
    made, scrapes = scrape_every(harness, 30.0, 4)
    first_list = [at for at, call in made if call.endpoint == "list_jobs"][:5]  # 3 + 1 + 1 pages
    assert len(harness.jobs()) == 250
    assert set(first_list) - set(scrapes)  # pages were read between scrapes


# --- when a run ended unseen ---------------------------------------------------------------------


def no_ids(status: str, started: float) -> Submission:
    return Submission(job_name="job", status=status, creation_date=started, execute_date=started)


HISTORY: list[tuple[str, Submission, Submission, bool]] = [
    # (case, the run seen first, the run seen next, is the history read?)
    ("the-run-seen-running-succeeded", run("job", 1, "RUNNING"), run("job", 1, "SUCCEEDED"), False),
    ("the-run-seen-running-failed", run("job", 1, "RUNNING"), run("job", 1, "FAILED"), False),
    ("the-next-run-after-one-seen-to-end", run("job", 1, "FAILED"), run("job", 2, "FAILED", 2000.0), False),
    ("a-run-in-between-never-seen", run("job", 1, "FAILED"), run("job", 3, "FAILED", 2000.0), True),
    ("the-run-seen-running-ended-unseen", run("job", 1, "RUNNING"), run("job", 2, "RUNNING", 2000.0), True),
    # the success tells the last success, but the run before it ended unseen: counted from history
    (
        "a-success-after-a-run-never-seen",
        run("job", 1, "SUCCEEDED"),
        run("job", 3, "SUCCEEDED", 2000.0),
        True,
    ),
    (
        "a-success-right-after-the-run-seen",
        run("job", 1, "FAILED"),
        run("job", 2, "SUCCEEDED", 2000.0),
        False,
    ),
    ("no-ids-and-a-new-run", no_ids("FAILED", 1000.0), no_ids("FAILED", 2000.0), True),
    ("no-ids-and-the-same-run", no_ids("RUNNING", 1000.0), no_ids("FAILED", 1000.0), False),
]


def seen_as(latest: Submission) -> tuple[JobSummary, Submission]:
    started = latest.execute_date or 0.0
    return summary("job", latest.status or "", started), latest


@pytest.mark.parametrize(("first", "then", "read"), [r[1:] for r in HISTORY], ids=[r[0] for r in HISTORY])
def test_the_history_is_read_when_a_run_ended_unseen(
    make_harness: Callable[..., PollerHarness], first: Submission, then: Submission, read: bool
) -> None:
    api = FakeApi()
    api.put(*seen_as(first))
    harness = make_harness(api)
    harness.collect()
    harness.collect(advance=60.0)  # whatever the first sight asked for is read by now
    assert not harness.jobs()["job"].history_wanted
    api.put(*seen_as(then))
    calls = harness.collect(advance=60.0) + harness.collect(advance=60.0)
    assert fetched(calls, "submissions") == (["job"] if read else [])


def test_the_history_tells_the_success_that_ended_unseen(make_harness: Callable[..., PollerHarness]) -> None:
    api = FakeApi()
    api.put(summary("job", "FAILED"), run("job", 1, "FAILED"))
    api.history["job"] = [run("job", 1, "FAILED")]
    harness = make_harness(api)
    harness.collect()
    harness.collect(advance=60.0)
    assert harness.jobs()["job"].last_success is None
    # run 2 succeeded and run 3 failed between two collections
    api.history["job"] = [
        run("job", 3, "FAILED", 3000.0, 3100.0),
        run("job", 2, "SUCCEEDED", 2000.0, 2500.0),
        run("job", 1, "FAILED"),
    ]
    api.put(summary("job", "FAILED", 3000.0), run("job", 3, "FAILED", 3000.0, 3100.0))
    harness.collect(advance=60.0)
    harness.collect(advance=60.0)
    assert harness.jobs()["job"].last_success == 2500.0


# --- counting ended runs --------------------------------------------------------------------------


def counts(harness: PollerHarness, name: str = "job") -> tuple[int, int]:
    """(runs, failures) counted for job ``name``."""
    tally = harness.jobs()[name].tally
    assert tally is not None, f"{name} has no run counts yet"
    return tally.runs, tally.failures


def test_a_run_counts_once_whether_seen_ending_found_in_the_history_or_both(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api = FakeApi()
    history = [run("job", 1, "RUNNING")]
    api.history["job"] = history
    api.put(summary("job", "RUNNING"), history[0])
    harness = make_harness(api)
    harness.collect()  # the first sight: run 1 under way
    harness.collect(advance=60.0)  # and its history read (for a last success): nothing ended
    assert counts(harness) == (0, 0)

    def now_shows(latest: Submission, *older: Submission) -> None:
        history[:] = [latest, *older]
        api.put(summary("job", latest.status or "", latest.execute_date or 0.0), latest)

    now_shows(run("job", 1, "SUCCEEDED"))
    harness.collect(advance=60.0)  # seen ending
    assert counts(harness) == (1, 0)
    # runs 2 (failed) and 3 ended between two reads; run 4 is under way
    now_shows(run("job", 4, "RUNNING", 4000.0), *runs_of(3, "SUCCEEDED", 2, "FAILED", 1, "SUCCEEDED"))
    calls = harness.collect(advance=60.0) + harness.collect(advance=60.0)
    assert fetched(calls, "submissions") == ["job"]  # found in the history
    assert counts(harness) == (3, 1)
    now_shows(run("job", 4, "FAILED", 4000.0), *history[1:])
    calls = harness.collect(advance=60.0) + harness.collect(advance=60.0)
    assert counts(harness) == (4, 2)
    assert fetched(calls, "submissions") == []  # every run is accounted for
    # run 5 ended unseen, run 6 seen: the history read sees runs 4, 6 again, counted already
    now_shows(run("job", 6, "SUCCEEDED", 6000.0), run("job", 5, "FAILED", 5000.0), *history)
    calls = harness.collect(advance=60.0) + harness.collect(advance=60.0)
    assert fetched(calls, "submissions") == ["job"]
    assert counts(harness) == (6, 3)
    harness.collect(advance=600.0)
    assert counts(harness) == (6, 3)


def runs_of(*pairs: int | str) -> list[Submission]:
    """runs_of(3, "SUCCEEDED", 2, "FAILED"): runs of "job", started 1000 s apart by id."""
    ids, statuses = pairs[::2], pairs[1::2]
    return [run("job", int(i), str(s), 1000.0 * int(i)) for i, s in zip(ids, statuses, strict=True)]


def test_a_run_the_list_shows_ended_is_counted_from_the_history_when_no_status_read_reaches_it(
    make_harness: Callable[..., PollerHarness],
) -> None:
    """Running jobs take the status calls first; a run that ended is then counted from the run
    history (the common budget) instead of waiting for one. With status calls to spare, the status
    read counts it and the history is not read (test_the_history_is_read_when_a_run_ended_unseen)."""
    api = FakeApi()
    history = [run("job", 1, "RUNNING")]
    api.history["job"] = history
    api.put(summary("job", "RUNNING"), history[0])
    harness = make_harness(api)
    harness.collect()
    harness.collect(advance=60.0)  # the first sight's history read (for a last success)
    assert counts(harness) == (0, 0)
    history[:] = [run("job", 1, "FAILED")]
    api.put(summary("job", "FAILED"), history[0])
    steps = []
    for advance in (60.0, 15.0, 60.0):
        harness.clock.advance(advance)
        harness.leave("job_status", 0)  # every status call taken by running jobs
        calls = harness.collect()
        steps.append((fetched(calls, "job_status"), fetched(calls, "submissions"), counts(harness)))
    assert steps == [
        ([], [], (0, 0)),  # the list shows the run ended; no status call reaches it
        ([], ["job"], (1, 1)),  # counted from the history
        ([], [], (1, 1)),  # which accounted for what the list said: not read again
    ]


def test_runs_before_the_first_sight_are_not_counted(make_harness: Callable[..., PollerHarness]) -> None:
    api = FakeApi()
    api.history["job"] = runs_of(*(x for i in range(30, 0, -1) for x in (i, "FAILED")))
    api.put(summary("job", "FAILED", 30000.0), api.history["job"][0])
    harness = make_harness(api)
    harness.collect()
    calls = harness.collect(advance=60.0) + harness.collect(advance=60.0)
    assert len(fetched(calls, "submissions")) == 3  # the whole history, for a success: none
    assert counts(harness) == (0, 0)
    job = harness.jobs()["job"]
    assert job.last_success is None and job.history_read_at is not None
    assert job.last_failure == 30000.0


def test_submission_ids_that_leave_out_other_jobs_runs(make_harness: Callable[..., PollerHarness]) -> None:
    """Sqoop numbers submissions per cluster: a job's runs may be 10, 25, 31. Each new id leaves a
    hole that only the history can explain; it does, once, and nothing is counted twice."""
    api = FakeApi()
    history = runs_of(10, "SUCCEEDED")
    api.history["job"] = history
    api.put(summary("job", "SUCCEEDED", 10000.0), history[0])
    harness = make_harness(api)
    harness.collect()
    for sid, status in ((25, "FAILED"), (31, "SUCCEEDED")):
        history.insert(0, run("job", sid, status, 1000.0 * sid))
        api.put(summary("job", status, 1000.0 * sid), history[0])
        calls = harness.collect(advance=60.0) + harness.collect(advance=60.0)
        assert fetched(calls, "submissions") == ["job"]
        tally = harness.jobs()["job"].tally
        assert tally is not None and (tally.settled, tally.counted) == (sid, ())
    assert counts(harness) == (2, 1)
    assert not fetched(harness.collect(advance=60.0), "submissions")


def test_runs_on_several_pages_of_an_unordered_history_count_once_within_the_budget(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api = FakeApi()
    history = runs_of(1, "SUCCEEDED")
    api.history["job"] = history
    api.put(summary("job", "SUCCEEDED"), history[0])
    harness = make_harness(api, job_list_interval=3600.0)
    harness.collect()
    unseen = runs_of(*(x for i in range(2, 27) for x in (i, "FAILED" if i % 4 == 0 else "SUCCEEDED")))
    history[:] = random.Random(5).sample([*unseen, *history], len(unseen) + 1)
    api.put(summary("job", "SUCCEEDED", 26000.0), unseen[-1])
    harness.collect(advance=60.0)  # the status shows run 26: runs 2-25 ended unseen
    pages = []
    for _ in range(3):  # two history calls a minute: the three pages take two collections
        harness.clock.advance(MINUTE)
        harness.leave("common", 2)
        pages.append([c.page_no for c in harness.collect() if c.endpoint == "submissions"])
    assert pages == [[1, 2], [3], []]
    assert counts(harness) == (25, 6)  # ids 4, 8, ..., 24 failed


def test_a_history_that_cannot_be_read_counts_nothing_twice_once_it_can(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api = FakeApi()
    history = runs_of(1, "SUCCEEDED")
    api.history["job"] = history
    api.put(summary("job", "SUCCEEDED"), history[0])
    harness = make_harness(api)
    harness.collect()
    history[:0] = runs_of(4, "SUCCEEDED", 3, "FAILED", 2, "SUCCEEDED")
    api.put(summary("job", "SUCCEEDED", 4000.0), history[0])
    api.history_error = ServerError("submissions", "internal error", status=500)
    harness.collect(advance=60.0)
    harness.collect(advance=60.0)
    assert counts(harness) == (1, 0)  # run 4, seen; 2 and 3 wait for the history
    api.history_error = None
    harness.collect(advance=60.0)
    harness.collect(advance=60.0)
    assert counts(harness) == (3, 1)


def test_a_job_deleted_and_created_again_starts_over(make_harness: Callable[..., PollerHarness]) -> None:
    api = FakeApi()
    first = replace(summary("job", "SUCCEEDED", 2000.0), creation_date=500.0)
    api.history["job"] = runs_of(2, "SUCCEEDED", 1, "FAILED")
    api.put(replace(first, status="RUNNING", execute_start_date=1000.0), run("job", 1, "RUNNING"))
    harness = make_harness(api)
    harness.collect()
    api.put(replace(first, status="FAILED", execute_start_date=1000.0), run("job", 1, "FAILED"))
    harness.collect(advance=60.0)
    api.put(first, api.history["job"][0])
    harness.collect(advance=60.0)
    assert counts(harness) == (2, 1)
    # deleted, and a job of the same name created: its runs are numbered anew
    again = replace(summary("job", "SUCCEEDED", 9000.0), creation_date=8000.0)
    api.history["job"] = [run("job", 1, "SUCCEEDED", 9000.0)]
    api.put(again, api.history["job"][0])
    harness.collect(advance=60.0)  # the list tells it is another job
    job = harness.jobs()["job"]
    assert job.tally is not None and (job.tally.runs, job.tally.failures) == (0, 0)
    assert job.last_failure is None
    api.history["job"].insert(0, run("job", 2, "FAILED", 9500.0))
    api.put(replace(again, status="FAILED", execute_start_date=9500.0), api.history["job"][0])
    harness.collect(advance=60.0)
    assert counts(harness) == (1, 1)


# --- where a job list ends ----------------------------------------------------------------------------


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


ENDS: list[tuple[str, list[JobPage], int, int]] = [
    # (case, the NORMAL_JOB pages the server sends, jobs listed, NORMAL_JOB pages read)
    ("a-full-page-with-total-0-reads-on", [page(names("a", 100), 0), page(names("b", 20), 0)], 120, 2),
    ("total-reached", [page(names("a", 100), 130), page(names("b", 30), 130)], 130, 2),
    ("total-reached-on-a-full-page", [page(names("a", 100), 100)], 100, 1),
    ("no-total-a-short-page", [page(names("a", 40), None)], 40, 1),
]


@pytest.mark.parametrize(("pages", "listed", "read"), [r[1:] for r in ENDS], ids=[r[0] for r in ENDS])
def test_where_the_job_list_ends(
    make_harness: Callable[..., PollerHarness], pages: list[JobPage], listed: int, read: int
) -> None:
    api = FakeApi(pages={"NORMAL_JOB": pages})
    harness = make_harness(api)
    calls = harness.collect()
    assert [c.page_no for c in calls if c.subject == "NORMAL_JOB"] == list(range(1, read + 1))
    assert len(harness.jobs()) == listed
    assert harness.view().clusters[0].up is True


def known(harness: PollerHarness) -> dict[str, tuple[JobSummary, Submission | None]]:
    """Each job's list entry and fetched run."""
    return {name: (job.summary, job.latest) for name, job in harness.jobs().items()}


BROKEN: list[tuple[str, list[JobPage], str, int]] = [
    # (case, the NORMAL_JOB pages the server sends, what the error says, NORMAL_JOB pages read)
    ("page-no-ignored", [page(names("a", 100), None)] * 3, "page 2 repeats the previous page", 2),
    ("page-no-ignored-total-0", [page(names("a", 100), 0)] * 3, "page 2 repeats the previous page", 2),
    ("a-page-larger-than-asked", [page(names("a", 101), None)], "more than the 100 asked for", 1),
    (
        "more-pages-than-total-allows",
        [page(names("a", 100), 150), page(names("b", 40), 150), page(names("c", 10), 150)],
        "more pages than total allows",
        2,
    ),
]


@pytest.mark.parametrize(("pages", "message", "read"), [r[1:] for r in BROKEN], ids=[r[0] for r in BROKEN])
def test_a_job_list_that_does_not_add_up_fails_and_the_cluster_keeps_what_it_knew(
    make_harness: Callable[..., PollerHarness],
    caplog: pytest.LogCaptureFixture,
    pages: list[JobPage],
    message: str,
    read: int,
) -> None:
    api = FakeApi()
    api.put(summary("known"), run("known", 1, "SUCCEEDED"))
    harness = make_harness(api)
    harness.collect()
    before = known(harness)
    assert list(before) == ["known"] and before["known"][1] is not None

    api.pages["NORMAL_JOB"] = pages
    caplog.set_level(logging.WARNING, logger="cdm_exporter.polling.poller")
    calls = harness.collect(advance=60.0)
    assert [c.page_no for c in calls if c.endpoint == "list_jobs"] == list(range(1, read + 1))
    (cluster,) = harness.view().clusters
    assert cluster.up is False
    assert cluster.error is not None and message in cluster.error
    assert known(harness) == before  # last known state, not a list cut short
    assert harness.poller.failures.failing() == [(f"list_jobs@{CLUSTER}", "malformed")]

    assert not fetched(harness.collect(advance=15.0), "list_jobs")  # retried at the list interval
    harness.collect(advance=60.0)  # fails again: counted, not logged again
    failed = [r for r in caplog.records if r.getMessage() == "API call failed"]
    assert len(failed) == 1
    assert known(harness) == before


def test_a_list_cut_short_by_the_budget_resumes_where_it_stopped(
    make_harness: Callable[..., PollerHarness],
) -> None:
    api = FakeApi(pages={"NORMAL_JOB": [page(names(p, 100 if p != "c" else 50), 250) for p in "abc"]})
    harness = make_harness(api, common=2)  # two list calls a minute: a list takes three collections
    steps = []
    for _ in range(3):
        # the budget is back in full a minute after the last call left the window
        calls = harness.collect(advance=2 * MINUTE)
        steps.append([(c.subject, c.page_no) for c in calls if c.endpoint == "list_jobs"])
        if len(steps) < 3:
            assert not harness.jobs()  # nothing until the list is complete
    assert steps == [
        [("NORMAL_JOB", 1)],  # after the cluster list
        [("NORMAL_JOB", 2), ("NORMAL_JOB", 3)],
        [("BATCH_JOB", 1), ("SCENARIO_JOB", 1)],
    ]
    assert len(harness.jobs()) == 250
