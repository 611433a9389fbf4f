"""Token buckets keep every rolling minute under the API's limit, and back off after a 429."""

from __future__ import annotations

import pytest

from cdm_exporter.polling.budget import Budgets, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("rate", [10, 60, 100, 110, 120])
def test_no_rolling_minute_exceeds_rate_plus_burst(rate: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    sent: list[float] = []
    # a greedy caller trying every 100 ms for ten minutes
    for _ in range(6000):
        while bucket.try_acquire():
            sent.append(clock.now)
        clock.now += 0.1
    worst = max(sum(1 for t in sent if start <= t < start + 60) for start in sent)
    assert worst <= rate  # no rolling minute over the budget, so the defaults stay below 120
    assert len(sent) == pytest.approx(rate * 10, rel=0.06)  # and it does use its budget


@pytest.mark.parametrize("interval", [5.0, 15.0, 30.0])
def test_a_scrape_every_interval_gets_its_share_of_the_budget(interval: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock)
    per_scrape = []
    for _ in range(40):
        clock.now += interval
        taken = 0
        while bucket.try_acquire():
            taken += 1
        per_scrape.append(taken)
    # after the first minute, each scrape can spend what accrued since the last one
    steady = per_scrape[int(60 / interval) + 1 :]
    share = 100 * interval / 60
    assert sum(steady) / len(steady) == pytest.approx(share, rel=0.1)
    # and evenly: no burst that fills the rolling minute and stalls the scrapes after it
    assert min(steady) >= int(share) - 1 and max(steady) <= int(share) + 1, per_scrape


def test_throttled_bucket_pauses_then_recovers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock)
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
    bucket = TokenBucket(2, clock=clock)  # capacity 1
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
    assert budgets.bucket("x", "common").capacity == pytest.approx(25)


def test_full_minute_budget_allows_a_one_shot_burst() -> None:
    clock = FakeClock()
    budgets = Budgets({"job_status": 100, "common": 100}, clock=clock, full_minute=True)
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
    budgets = Budgets({"job_status": 100, "common": 100}, clock=clock, full_minute=True)
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
    budgets = Budgets({"job_status": 5, "common": 5}, clock=clock, full_minute=True)
    assert spend_all(budgets, "aksk:a") == 5
    assert budgets.bucket("aksk:b", "common").try_acquire()  # another credential: 1 of 5
    clock.now += 10
    budgets.rescope()  # credential -> region: every region's bucket counts the credential's calls
    assert spend_all(budgets, "aksk:a@cn-north-4") == 0
    assert spend_all(budgets, "aksk:a@ap-southeast-1") == 0
    assert budgets.bucket("aksk:a@cn-north-4", "job_status").available() == 5  # other policy
    assert spend_all(budgets, "aksk:b@cn-north-4") == 4  # other credential
    clock.now += 61  # a minute after the credential's calls, and the buckets refilled
    assert spend_all(budgets, "aksk:a@cn-north-4") == 5
    assert spend_all(budgets, "aksk:a@ap-southeast-1") == 5
    budgets.rescope()  # and back: the credential's bucket counts both regions' calls
    assert spend_all(budgets, "aksk:a") == 0
    budgets.rescope()  # twice within the minute: still counted, even for a bucket never used between
    assert spend_all(budgets, "aksk:a@cn-north-4") == 0
    clock.now += 61
    assert spend_all(budgets, "aksk:a@cn-north-4") == 5
