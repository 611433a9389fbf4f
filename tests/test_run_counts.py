"""Counting ended runs exactly once (polling/run_counts.py), and the history scan's side of it
(polling/history.py): pure functions, no I/O. The poller's use of them, over a fake API and over
HTTP against the simulator, is in test_poller_decisions.py and test_poller.py."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from fake_api import run

from cdm_exporter.api.models import Submission, SubmissionPage
from cdm_exporter.polling.history import HistoryScan
from cdm_exporter.polling.run_counts import MAX_COUNTED, RunTally, run_ended, tally_after_status


def runs(*specs: tuple[int, str]) -> list[Submission]:
    return [run("job", sid, status) for sid, status in specs]


def count(tally: RunTally | None) -> tuple[int, int]:
    assert tally is not None
    return tally.runs, tally.failures


# --- the baseline -------------------------------------------------------------------------------------

BASELINES: list[tuple[str, Submission | None, int | None]] = [
    # (case, the newest run at the first status read, settled; None: no baseline yet)
    ("no-run-at-all", None, 0),
    ("never-executed", Submission("job", status="NEVER_EXECUTED"), 0),
    ("ended-before-first-sight", run("job", 7, "FAILED"), 7),
    ("running-at-first-sight-counts-when-it-ends", run("job", 7, "RUNNING"), 6),
    ("a-starting-run-without-an-id-waits", Submission("job", status="BOOTING"), None),
]


@pytest.mark.parametrize(("latest", "settled"), [b[1:] for b in BASELINES], ids=[b[0] for b in BASELINES])
def test_the_baseline(latest: Submission | None, settled: int | None) -> None:
    tally = RunTally.start(latest, 100.0)
    if settled is None:
        assert tally is None
        return
    assert tally is not None
    assert (tally.settled, tally.runs, tally.failures, tally.since) == (settled, 0, 0, 100.0)


def test_runs_that_ended_before_the_first_sight_are_not_counted() -> None:
    tally = RunTally.start(run("job", 7, "SUCCEEDED"), 0.0)
    assert tally is not None
    assert count(tally.observe(runs((5, "FAILED"), (6, "SUCCEEDED"), (7, "SUCCEEDED")))) == (0, 0)


def test_the_run_active_at_the_first_sight_is_counted_when_it_ends() -> None:
    tally = tally_after_status(None, run("job", 7, "RUNNING"), 0.0)
    tally = tally_after_status(tally, run("job", 7, "RUNNING"), 1.0)
    assert count(tally) == (0, 0)
    tally = tally_after_status(tally, run("job", 7, "FAILED"), 2.0)
    assert count(tally) == (1, 1)
    assert tally is not None and (tally.settled, tally.counted) == (7, ())


# --- counted once --------------------------------------------------------------------------------------


def test_a_run_seen_ending_and_again_in_the_history_counts_once() -> None:
    tally = RunTally(since=0.0, settled=10)
    tally = tally.observe(runs((11, "SUCCEEDED")))  # the status call saw it end
    tally = tally.observe(runs((11, "SUCCEEDED"), (10, "FAILED")))  # and the history shows it
    tally = tally.observe(runs((11, "SUCCEEDED")))  # and the next status read again
    assert count(tally) == (1, 0)


def test_every_final_status_counts_and_only_failures_are_failures() -> None:
    ended = ["SUCCEEDED", "FAILED", "FAILURE_ON_SUBMIT", "STOPPED", "UNKNOWN", "KILLED"]
    tally = RunTally(since=0.0, settled=0).observe(runs(*enumerate(ended, start=1)))
    assert count(tally) == (6, 2)
    still = ["BOOTING", "RUNNING", "PENDING", "NEVER_EXECUTED", "NEW"]
    assert count(RunTally(since=0.0, settled=0).observe(runs(*enumerate(still, start=1)))) == (0, 0)
    assert not run_ended(Submission("job"))  # no status: nothing to count


def test_a_run_without_an_id_is_not_counted() -> None:
    tally = RunTally(since=0.0, settled=0)
    nameless = Submission("job", status="SUCCEEDED", creation_date=1.0)
    assert tally.observe([nameless, nameless]) is tally


def test_unordered_overlapping_pages_count_each_run_once() -> None:
    history = runs(*((sid, "FAILED" if sid % 3 == 0 else "SUCCEEDED") for sid in range(1, 41)))
    shuffled = random.Random(7).sample(history, len(history))
    tally = RunTally(since=0.0, settled=12)
    for start in range(0, 40, 7):  # pages of 10 that overlap by 3, as pages shifted by new runs do
        tally = tally.observe(shuffled[start : start + 10])
    assert count(tally) == (28, 9)  # ids 13..40, of which 15, 18, ..., 39 failed
    assert tally.settled == 40 and tally.counted == ()


# --- gaps: runs that may have ended unseen -----------------------------------------------------------


GAPS: list[tuple[str, list[tuple[int, str]], int, bool]] = [
    # (case, runs seen ending after the baseline at settled=10, the newest id known, a gap?)
    ("every-run-seen", [(11, "FAILED"), (12, "SUCCEEDED")], 13, False),
    ("the-next-run-running", [], 11, False),
    ("a-run-skipped", [(13, "SUCCEEDED")], 13, True),
    ("ids-of-other-jobs-in-between", [(25, "SUCCEEDED")], 31, True),
    ("nothing-newer", [], 10, False),
]


@pytest.mark.parametrize(("seen", "newest", "gap"), [g[1:] for g in GAPS], ids=[g[0] for g in GAPS])
def test_a_gap_below_the_newest_run(seen: list[tuple[int, str]], newest: int, gap: bool) -> None:
    tally = RunTally(since=0.0, settled=10).observe(runs(*seen))
    assert tally.gap(newest) is gap
    assert not tally.gap(None)


def test_settling_after_a_history_read_keeps_later_counted_runs() -> None:
    tally = RunTally(since=0.0, settled=10).observe(runs((25, "SUCCEEDED"), (40, "FAILED")))
    assert tally.counted == (25, 40)
    settled = tally.settle(31)
    assert (settled.settled, settled.counted, count(settled)) == (31, (40,), (2, 1))
    assert settled.settle(20) is settled  # never back
    assert settled.settle(39).counted == () and settled.settle(39).settled == 40  # 40 follows on


def test_the_record_stays_small_when_the_history_cannot_be_read() -> None:
    tally = RunTally(since=0.0, settled=0)
    for sid in range(2, 2 * MAX_COUNTED + 100, 2):  # every other id: a hole below each run
        tally = tally.observe(runs((sid, "SUCCEEDED")))
    assert len(tally.counted) == MAX_COUNTED
    assert count(tally) == (MAX_COUNTED + 49, 0)  # still counted, once each
    assert tally.settled == 2 * 49


# --- the history scan: when the counting is covered ---------------------------------------------------


def page(entries: list[Submission], total: int | None = None, size: int = 10) -> SubmissionPage:
    return SubmissionPage(tuple(entries), total, None, size)


def full(first: int, status: str = "FAILED") -> list[Submission]:
    """A page of 10 runs, newest first, from ``first`` down."""
    return runs(*((sid, status) for sid in range(first, first - 10, -1)))


def test_newest_first_the_scan_stops_below_the_settled_runs() -> None:
    begun = HistoryScan.begin(run("job", 40, "FAILED"), success_known=True)
    scan = begun.read(page(full(40), total=40), "job", 35)
    assert scan.done and scan.covered == 40  # runs 36..40 were all on page 1


def test_newest_first_the_scan_reads_on_until_it_reaches_the_settled_runs() -> None:
    begun = HistoryScan.begin(run("job", 40, "FAILED"), success_known=True)
    scan = begun.read(page(full(40), total=40), "job", 25)
    assert not scan.done  # runs 26..30 are on page 2
    scan = scan.read(page(full(30), total=40), "job", 25)
    assert scan.done and scan.covered == 40


def test_a_success_met_does_not_end_the_scan_before_the_counting_is_covered() -> None:
    begun = HistoryScan.begin(run("job", 40, "FAILED"), success_known=False)
    first = full(40)
    first[3] = run("job", 37, "SUCCEEDED")
    scan = begun.read(page(first, total=40), "job", 25)
    assert scan.last_success is not None and not scan.done


def test_without_a_success_known_the_scan_reads_on_for_one() -> None:
    begun = HistoryScan.begin(run("job", 40, "FAILED"), success_known=False)
    scan = begun.read(page(full(40), total=40), "job", 35)
    assert not scan.done  # counting is covered, but the last success may be further down


def test_unordered_the_scan_reads_to_the_end() -> None:
    begun = HistoryScan.begin(run("job", 40, "FAILED"), success_known=True)
    history = [*full(40), *full(30)]
    random.Random(3).shuffle(history)
    scan = begun.read(page(history[:10], total=20), "job", 35)
    assert not scan.done
    scan = scan.read(page(history[10:], total=20), "job", 35)
    assert scan.done and scan.covered == 40


def test_a_run_still_active_holds_the_settling_below_it() -> None:
    begun = HistoryScan.begin(run("job", 40, "SUCCEEDED"), success_known=True)
    entries = full(42)
    entries[0], entries[1] = run("job", 42, "RUNNING"), run("job", 41, "SUCCEEDED")
    scan = begun.read(page(entries, total=42), "job", 35)
    assert scan.done and scan.covered == 41


def test_a_run_the_status_showed_but_the_history_does_not_hold_is_covered_by_a_full_read() -> None:
    # an entire-DB job: its history holds its sub-jobs' runs, not runs of its own name
    begun = HistoryScan.begin(run("parent", 40, "SUCCEEDED"), success_known=True)
    sub_jobs = [replace(r, job_name="parent_orders") for r in full(39)]
    scan = begun.read(page(sub_jobs[:4], total=4), "parent", 30)
    assert scan.done and scan.top is None and scan.covered == 40


def test_the_run_active_at_the_start_of_a_scan_is_not_covered_by_it() -> None:
    assert HistoryScan.begin(run("job", 40, "RUNNING"), success_known=True).known_top == 39
    assert HistoryScan.begin(None, success_known=False).known_top is None
