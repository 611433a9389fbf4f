"""Token buckets keep every rolling minute under the budget, pace the calls so that the whole
budget is used, and back off after a 429. Time is an injected clock throughout."""

from __future__ import annotations

import itertools
import random

import pytest
from fake_api import worst_rolling_minute

from cdm_exporter.polling.budget import COUNTED_WINDOW_SECONDS, WINDOW_MARGIN_SECONDS, Budgets, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pace(
    bucket: TokenBucket, clock: FakeClock, until: float, scrape_every: float | None = None
) -> list[float]:
    """Spend ``bucket`` as the exporter does when there is more work than budget: the pacer
    takes each token as it comes (``next_token_at``), and a scrape every ``scrape_every``
    seconds takes whatever is left at that moment. Returns the send times."""
    sent: list[float] = []
    next_scrape = clock.now if scrape_every else float("inf")
    while clock.now < until:
        while bucket.try_acquire():
            sent.append(clock.now)
        clock.now = min(bucket.next_token_at(), next_scrape, until)
        if clock.now >= next_scrape:
            next_scrape += scrape_every or 0.0
    return sent


@pytest.mark.parametrize("scrape_every", [None, 10.0, 15.0, 30.0, 60.0])
@pytest.mark.parametrize("rate", [100, 120, 30, 7])
def test_paced_calls_use_97_percent_of_the_budget_and_never_more(
    rate: int, scrape_every: float | None
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    sent = pace(bucket, clock, 1000.0 + 20 * 60, scrape_every)
    assert worst_rolling_minute(sent) <= rate
    assert len([t for t in sent if t < 1060.0]) == rate  # a new bucket spends a whole minute at once
    steady = [t for t in sent if t >= 1000.0 + 120.0]
    assert len(steady) / 18 >= 0.97 * rate


def test_calls_are_evenly_paced_after_the_first_minute() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock)
    sent = pace(bucket, clock, 1000.0 + 10 * 60, scrape_every=15.0)
    later = [t for t in sent if t >= 1000.0 + 62.0]
    gaps = [b - a for a, b in itertools.pairwise(later)]
    # one call every 0.6 s or a little more (the window's margin), never a burst
    assert min(gaps) >= 0.6 - 1e-9
    assert max(gaps) <= 0.6 + WINDOW_MARGIN_SECONDS + 1e-9
    per_15_s = [sum(1 for t in later if s <= t < s + 15.0) for s in range(1065, 1585, 15)]
    assert min(per_15_s) >= 23, per_15_s  # every scrape interval gets its share


@pytest.mark.parametrize("rate", [7, 60, 100, 120])
def test_calls_one_spacing_apart_from_the_start_settle_at_the_whole_budget(rate: int) -> None:
    """The pacer sends one call per ``spacing()`` from the start (no first-minute burst): the
    pace settles at ``rate`` calls per counted minute, not at one call fewer."""
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    sent: list[float] = []
    while clock.now < 1000.0 + 10 * 60:
        if bucket.try_acquire():
            sent.append(clock.now)
            clock.now += bucket.spacing()
        else:
            clock.now = max(bucket.next_token_at(), clock.now + 1e-6)
    assert worst_rolling_minute(sent) <= rate
    steady = [t for t in sent if t >= 1000.0 + 120.0]
    # 8 minutes at one call per 61 / rate s (the pace at one call fewer: 61 / (rate - 1) s)
    assert len(steady) >= 480.0 / (COUNTED_WINDOW_SECONDS / rate) - 1


def test_calls_arriving_late_still_fit_in_the_apis_minute() -> None:
    # The API counts calls when they arrive, up to the margin after they were sent (network, a
    # busy CPU); calls sent a minute apart must not arrive within one minute there.
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock)
    rnd = random.Random(14)
    sent = pace(bucket, clock, 1000.0 + 10 * 60)
    arrived = [t + rnd.uniform(0.0, WINDOW_MARGIN_SECONDS * 0.99) for t in sent]
    assert worst_rolling_minute(arrived) <= 100


@pytest.mark.parametrize("rate", [10, 60, 100, 110, 120])
def test_no_rolling_minute_exceeds_the_rate_for_a_greedy_caller(rate: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    sent: list[float] = []
    for _ in range(6000):  # a caller trying every 100 ms for ten minutes
        while bucket.try_acquire():
            sent.append(clock.now)
        clock.now += 0.1
    assert worst_rolling_minute(sent) <= rate
    assert len(sent) >= rate * 10 * 0.95  # and it does use its budget


def test_tokens_do_not_pile_up_while_the_window_is_full() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock)
    for _ in range(100):
        assert bucket.try_acquire()
    clock.now += 61.0 + 10.0  # the minute is over 10 s ago: 10 s of tokens, not 71 s
    assert bucket.available() == pytest.approx(100 * 10 / 60 + 1, abs=1.0)


def test_next_token_at() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock)  # a token a second
    assert bucket.next_token_at() == 1000.0  # a full minute at start
    for _ in range(60):
        assert bucket.try_acquire()
    # the window is full until the first call leaves it, a minute and the margin later
    assert bucket.next_token_at() == pytest.approx(1000.0 + 60.0 + WINDOW_MARGIN_SECONDS)
    clock.now = bucket.next_token_at()
    assert bucket.try_acquire()
    assert bucket.next_token_at() == pytest.approx(clock.now + 1.0)
    bucket.throttled(pause=5.0)
    assert bucket.next_token_at() == pytest.approx(clock.now + 5.0 + 1.0)


def test_throttled_bucket_pauses_then_recovers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock, initial=30.0)
    for _ in range(30):
        assert bucket.try_acquire()
    bucket.throttled(pause=5.0)
    assert bucket.available() == 0
    clock.now += 4.9
    assert not bucket.try_acquire()
    clock.now += 0.2  # 0.1 s after the pause: 0.1 s of refill at 1/s is not a token yet
    assert not bucket.try_acquire()
    clock.now += 1.0
    assert bucket.try_acquire()


def test_refund_returns_an_unsent_request() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, clock=clock)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    bucket.refund()
    assert bucket.try_acquire()


def test_buckets_are_shared_per_credential_and_policy() -> None:
    budgets = Budgets({"job_status": 100, "common": 50})
    assert budgets.bucket("aksk:1", "job_status") is budgets.bucket("aksk:1", "job_status")
    assert budgets.bucket("aksk:1", "job_status") is not budgets.bucket("aksk:2", "job_status")
    assert budgets.for_endpoint("aksk:1", "list_jobs") is budgets.bucket("aksk:1", "common")
    assert budgets.for_endpoint("aksk:1", "submissions") is budgets.bucket("aksk:1", "common")
    assert budgets.bucket("x", "common").capacity == pytest.approx(50)


def test_a_new_budget_holds_a_whole_minute() -> None:
    clock = FakeClock()
    budgets = Budgets({"job_status": 100, "common": 100}, clock=clock)
    bucket = budgets.bucket("a", "job_status")
    assert sum(bucket.try_acquire() for _ in range(150)) == 100


def test_a_rate_change_keeps_what_was_spent() -> None:
    clock = FakeClock()
    budgets = Budgets({"job_status": 10, "common": 10}, clock=clock)
    bucket = budgets.bucket("user", "job_status")
    sent: list[float] = []
    # a reload every 5 s alternating the rate between 10 and 20, a greedy caller every 100 ms
    for step in range(1200):
        if step % 50 == 0:
            budgets.set_per_minute({"job_status": 10 if step % 100 == 0 else 20, "common": 10})
        while bucket.try_acquire():
            sent.append(clock.now)
        clock.now += 0.1
    worst = max(sum(1 for t in sent if start <= t < start + 60) for start in sent)
    assert worst <= 20  # never a fresh minute's worth on top of what the last minute spent
    assert budgets.bucket("user", "job_status") is bucket  # the same bucket, not a new one
    assert budgets.bucket("other", "job_status").rate_per_minute in (10, 20)


def test_lowering_the_rate_counts_the_calls_already_made() -> None:
    clock = FakeClock()
    budgets = Budgets({"job_status": 100, "common": 100}, clock=clock)
    bucket = budgets.bucket("user", "job_status")
    spent = 0
    while bucket.try_acquire():
        spent += 1
    assert spent == 100
    budgets.set_per_minute({"job_status": 50, "common": 50})
    clock.now += 59
    assert not bucket.try_acquire()  # 100 sent in this minute already: nothing under a budget of 50
    clock.now += 2  # the minute is over (and the bucket refilled a little)
    assert bucket.try_acquire()


def spend_all(budgets: Budgets, identity: str) -> int:
    bucket = budgets.bucket(identity, "common")
    spent = 0
    while bucket.try_acquire():
        spent += 1
    return spent


def test_a_scope_change_counts_what_the_credential_sent_under_the_old_scope() -> None:
    clock = FakeClock()
    budgets = Budgets({"job_status": 5, "common": 5}, clock=clock)
    assert spend_all(budgets, "aksk:a") == 5
    assert budgets.bucket("aksk:b", "common").try_acquire()  # another credential: 1 of 5
    clock.now += 10
    budgets.rescope()  # credential -> region: every region's bucket counts the credential's calls
    assert spend_all(budgets, "aksk:a@cn-north-4") == 0
    assert spend_all(budgets, "aksk:a@ap-southeast-1") == 0
    assert budgets.bucket("aksk:a@cn-north-4", "job_status").available() == 5  # other policy
    assert spend_all(budgets, "aksk:b@cn-north-4") == 4  # other credential
    # a minute after the credential's calls, and a minute more to refill at the budget's pace (a
    # bucket saves nothing up while its window is full)
    clock.now += 121
    assert spend_all(budgets, "aksk:a@cn-north-4") == 5
    assert spend_all(budgets, "aksk:a@ap-southeast-1") == 5
    budgets.rescope()  # and back: the credential's bucket counts both regions' calls
    assert spend_all(budgets, "aksk:a") == 0
    budgets.rescope()  # twice within the minute: still counted, even for a bucket never used between
    assert spend_all(budgets, "aksk:a@cn-north-4") == 0
    clock.now += 121
    assert spend_all(budgets, "aksk:a@cn-north-4") == 5
