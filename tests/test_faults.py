"""Fault matrix (issue 7): every API endpoint x every way it can fail, through real HTTP.

Each case runs the exporter in-process with two targets, a *faulty* simulator and a *healthy*
one, scraped over HTTP with ``X-Prometheus-Scrape-Timeout-Seconds``. After a healthy warm-up
the fault is injected and the exporter scraped again several times. Every scrape must answer
200 without waiting for the fault to end; only the scope the fault belongs to may change:

* ``iam_token`` (password auth) and ``list_clusters``: the target (``cdm_up 0``);
* ``list_jobs`` of one cluster: that cluster (``cdm_cluster_up 0``);
* ``job_status`` / ``submissions`` of one job: nothing reads 0, the job keeps its last state;
* 401/403 anywhere: authentication failed, so the target (``cdm_up 0``) as well; on the cluster
  list or the IAM token request the credential itself is refused, and nothing more is sent with
  it in that collection (CDM locks an access key after 5 bad signatures in a row): every cluster
  reads 0 and every job keeps its last known state;
* 429: like any failure, the list that was refused reads 0 (docs/architecture.md, "Failure
  semantics"); a throttled
  job keeps its last known state, and the bucket of that API pauses.

The other target, the other cluster and the other jobs stay as they were; the failure is counted
in ``cdm_api_requests_total``; threads and sockets do not grow from scrape to scrape; and once
the fault is cleared the next scrapes recover.

Timing: ``read_timeout`` is 2 s, so a hung or trickling call fails before the deadline of the
scrape it started in (the exporter gives up 0.5 s before the announced 5 s), and the calls after
it still have time. A healthy call has those 2 s before it reads as a failure: on a loaded 2-core
machine, about one call in a few thousand takes over a second.
``test_hang_is_cut_at_...`` and the concurrent scrapes use a 60 s read timeout, where the scrape
deadline must cut the call. How long an answer took is asserted against what the fault would
take uncut (``exporter_stack.LATE``), never to the second: on a loaded machine an answer due at
the deadline can come seconds after it. Budgets and the 429 pause run on a monotonic clock that
the test moves 30 s ahead before each scrape, so they never get in the way and nothing sleeps.
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from exporter_stack import (
    LATE,
    ExporterServer,
    Exposition,
    MonoClock,
    Scrape,
    exporter_sockets,
    exporter_threads,
    scrape,
    wait_until,
)
from sim_targets import password_auth, sim_target

from cdm_exporter.config import (
    BudgetConfig,
    CollectionConfig,
    Config,
    JobsFilter,
    Secret,
    TargetConfig,
    TokenAuthConfig,
)
from cdm_exporter.polling.targets import MAX_WAITERS_PER_TARGET, Exporter
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings

SCRAPE_TIMEOUT = 5.0  # announced by "Prometheus"; the exporter answers 0.5 s before it
READ_TIMEOUT = 2.0
#: the read timeout of the tests where the scrape deadline must cut the call, and the default
#: scrape timeout (for a scrape that announces none) everywhere: waited for, either shows as LATE
LONG_TIMEOUT = 60.0
FAULTY_SCRAPES = 4
#: growth of threads / sockets allowed between the first and the last faulty scrape
LEAK_BOUND = 2
STEP = 30.0  # seconds the exporter's monotonic clock jumps before each scrape
PROBE = "probe-job"
NEIGHBOUR = "neighbour-job"
HUGE = 40 * 1024 * 1024  # above the client's 32 MiB cap

ENDPOINTS = ("iam_token", "list_clusters", "list_jobs", "job_status", "submissions")

#: fault name -> Fault fields (besides endpoint, cluster_id and job_name)
FAULTS: dict[str, dict[str, Any]] = {
    "401": {"status": 401},
    "403": {"status": 403},
    "400-Cdm.0001": {"status": 400, "error_code": "Cdm.0001"},
    "400-Cdm.0100": {"status": 400, "error_code": "Cdm.0100"},
    "404": {"status": 404},
    "429": {"status": 429},
    "500": {"status": 500},
    "503": {"status": 503},
    "hang": {"kind": "hang"},
    "reset": {"kind": "reset"},
    "close": {"kind": "close"},
    "html": {"kind": "html"},
    "malformed": {"kind": "malformed"},
    "wrong_shape": {"kind": "wrong_shape"},
    "huge": {"kind": "huge", "size": HUGE},
    "trickle": {"kind": "trickle", "interval": 0.05},
}

#: the ``code`` label each fault is counted under: the status, "error" when no complete answer
#: came, and "200" for a complete 200 answer whose body was refused (html, bad JSON, too big)
CODES = {
    **{name: str(fields["status"]) for name, fields in FAULTS.items() if "status" in fields},
    "hang": "error",
    "reset": "error",
    "close": "error",
    "trickle": "error",
    "html": "200",
    "malformed": "200",
    "wrong_shape": "200",
    "huge": "200",
}


@dataclass(frozen=True)
class Expect:
    """What the faulty target looks like while the fault is in force."""

    target_up: bool
    first_cluster_up: bool  # the cluster holding the probe job (and the list_jobs fault)
    other_cluster_up: bool
    probe_refreshed: bool  # the probe job's status is still fetched

    @classmethod
    def of(cls, endpoint: str, fault: str) -> Expect:
        auth = fault in ("401", "403")
        # no token, or the credential refused: nothing else is sent with it
        refused = endpoint == "iam_token" or (auth and endpoint == "list_clusters")
        return cls(
            target_up=not (auth or refused or endpoint == "list_clusters"),
            first_cluster_up=not (refused or endpoint == "list_jobs"),
            other_cluster_up=not refused,
            probe_refreshed=not (refused or endpoint == "job_status"),
        )


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Case:
    server: ExporterServer
    faulty: Simulator
    healthy: Simulator
    clock: ManualClock  # simulated time of both simulators (stands still unless moved)
    mono: MonoClock  # the exporter's monotonic clock
    started: list[Simulator] = field(default_factory=list)

    @property
    def first_cluster(self) -> str:
        return self.faulty.world.clusters()[0].id

    @property
    def other_cluster(self) -> str:
        return self.faulty.world.clusters()[1].id

    def scrape(self, timeout: float = SCRAPE_TIMEOUT) -> Exposition:
        """One scrape: 200, and not held by the fault (see LATE); the parsed exposition."""
        self.mono.advance(STEP)
        result: Scrape = self.server.scrape(timeout)
        assert result.status == 200, result.body[:500]
        assert result.elapsed < LATE, f"answered after {result.elapsed:.3f} s: held by the fault"
        return result.exposition

    def ports(self) -> list[int]:
        return [sim.port for sim in self.started if sim.running]

    def resources(self) -> tuple[int, int]:
        return exporter_threads(), exporter_sockets(self.ports())


def cdm_up(exp: Exposition, sim: Simulator) -> float | None:
    return exp.value("cdm_up", project_id=sim.settings.project_id, region=sim.settings.region)


def cluster_up(exp: Exposition, cluster_id: str) -> float | None:
    found = exp.select("cdm_cluster_up", cluster_id=cluster_id)
    assert len(found) <= 1
    return next(iter(found.values()), None)


def job_series(exp: Exposition, cluster_id: str, job: str, name: str = "cdm_job_status") -> dict[Any, float]:
    return exp.select(name, cluster_id=cluster_id, job_name=job)


def job_value(exp: Exposition, cluster_id: str, job: str, name: str) -> float | None:
    found = job_series(exp, cluster_id, job, name)
    assert len(found) <= 1, found
    return next(iter(found.values()), None)


REFRESHED = "cdm_job_refresh_timestamp_seconds"
LAST_SUCCESS = "cdm_job_last_success_timestamp_seconds"


def timestamp(exp: Exposition, cluster_id: str, job: str, name: str = REFRESHED) -> float:
    """A job's timestamp series, which must be there."""
    value = job_value(exp, cluster_id, job, name)
    assert value is not None, f"no {name} for {job}"
    return value


def requests_counted(exp: Exposition, endpoint: str, code: str) -> float:
    return exp.value("cdm_api_requests_total", endpoint=endpoint, code=code) or 0.0


def healthy_series(exp: Exposition, sim: Simulator) -> set[Any]:
    """The healthy target's job status series (labels only)."""
    ids = {c.id for c in sim.world.clusters()}
    return {lab for lab in exp.select("cdm_job_status") if dict(lab)["cluster_id"] in ids}


@pytest.fixture
def make_case(exporter_server: ExporterServer) -> Iterator[Callable[..., Case]]:
    cases: list[Case] = []

    def make(*, password: bool = False, read_timeout: float = READ_TIMEOUT) -> Case:
        clock = ManualClock(time.time())
        faulty = Simulator(SimulatorSettings(clusters=2, jobs=2, rate_limit=0, clock=clock))
        healthy = Simulator(
            SimulatorSettings(clusters=1, jobs=2, rate_limit=0, clock=clock, seed=7, project_id="f" * 32)
        )
        faulty.start("127.0.0.1", 0)
        healthy.start("127.0.0.1", 0)
        # a job of known history: one SUCCEEDED run, ended
        first = faulty.world.clusters()[0].id
        faulty.world.add_job(first, NEIGHBOUR)
        faulty.world.add_job(first, PROBE)
        faulty.world.start_run(first, PROBE, outcome="SUCCEEDED", duration=1)
        clock.advance(2)
        collection = CollectionConfig(
            concurrency=4,
            budget_per_minute=BudgetConfig(job_status=120, common=120),
            discovery_interval=0,
            job_list_interval=0,
            history_interval=0,
            read_timeout=read_timeout,
            default_scrape_timeout=LONG_TIMEOUT,
        )
        auth = password_auth(faulty) if password else None
        # one job type (one list call per cluster) keeps each scrape short
        jobs = JobsFilter(types=("NORMAL_JOB",))
        targets = (sim_target(faulty, "faulty", auth=auth), sim_target(healthy, "healthy"))
        config = Config(targets=tuple(replace(t, jobs=jobs) for t in targets), collection=collection)
        mono = MonoClock()
        # only the scrapes call the API (no pacer between them): each scrape shows its own calls'
        # outcome, which is what these cases look at
        exporter_server.mount(Exporter(config, mono=mono, pacing="off"))
        case = Case(exporter_server, faulty, healthy, clock, mono, [faulty, healthy])
        cases.append(case)
        return case

    yield make
    exporter_server.mount(None)
    for case in cases:
        for sim in case.started:
            sim.stop()


def warm_up(case: Case, scrapes: int = 3) -> Exposition:
    """Healthy scrapes until everything reads up and the probe job and its neighbour were fetched
    (on a loaded machine a healthy call may outlast the read timeout once); at most ``scrapes``."""
    problems: list[str] = []
    for _ in range(scrapes):
        exp = case.scrape()
        problems = []
        if (cdm_up(exp, case.faulty), cdm_up(exp, case.healthy)) != (1, 1):
            problems.append("cdm_up is not 1")
        if list(exp.select("cdm_cluster_up").values()) != [1.0] * 3:
            problems.append(f"cdm_cluster_up: {exp.select('cdm_cluster_up')}")
        status = exp.select(
            "cdm_job_status", cluster_id=case.first_cluster, job_name=PROBE, status="SUCCEEDED"
        )
        if list(status.values()) != [1.0]:
            problems.append(f"{PROBE} not SUCCEEDED: {status}")
        for job in (PROBE, NEIGHBOUR):
            if job_value(exp, case.first_cluster, job, REFRESHED) is None:
                problems.append(f"{job} not fetched")
        if not problems:
            return exp
    raise AssertionError(f"not healthy after {scrapes} scrapes: {problems}")


def assert_healthy_target_intact(exp: Exposition, before: Exposition, case: Case) -> None:
    assert cdm_up(exp, case.healthy) == 1
    for cluster in case.healthy.world.clusters():
        assert cluster_up(exp, cluster.id) == 1
    assert healthy_series(exp, case.healthy) == healthy_series(before, case.healthy)


def assert_no_leak(before: tuple[int, int], after: tuple[int, int]) -> None:
    (threads0, sockets0), (threads1, sockets1) = before, after
    assert threads1 - threads0 <= LEAK_BOUND, f"threads grew from {threads0} to {threads1}"
    assert sockets1 - sockets0 <= LEAK_BOUND, f"sockets grew from {sockets0} to {sockets1}"


def make_history_wanted(case: Case) -> None:
    """Run 2 of the probe job succeeds and run 3 starts between two scrapes: only the run
    history can tell the exporter about run 2's success."""
    world, cluster = case.faulty.world, case.first_cluster
    world.start_run(cluster, PROBE, outcome="SUCCEEDED", duration=1)
    case.clock.advance(2)
    world.start_run(cluster, PROBE, outcome="FAILED", duration=3600)


def inject(case: Case, endpoint: str, fault: str) -> None:
    scope: dict[str, Any] = {}
    if endpoint == "list_jobs":
        scope = {"cluster_id": case.first_cluster}
    elif endpoint in ("job_status", "submissions"):
        scope = {"cluster_id": case.first_cluster, "job_name": PROBE}
    case.faulty.add_fault(Fault(endpoint=endpoint, **scope, **FAULTS[fault]))
    if endpoint == "iam_token":
        case.faulty.revoke_tokens()  # the cached token gets a 401: a new one must be fetched


# --- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_fault_stays_in_its_scope_and_recovers(
    make_case: Callable[..., Case], endpoint: str, fault: str
) -> None:
    case = make_case(password=endpoint == "iam_token")
    expect = Expect.of(endpoint, fault)
    first, other = case.first_cluster, case.other_cluster
    before = warm_up(case)
    if endpoint == "submissions":
        make_history_wanted(case)
        before = case.scrape()  # sees run 3 and wants the history; reads it at the next scrape
    probe_status = job_series(before, first, PROBE)
    probe_refreshed = timestamp(before, first, PROBE)
    first_success = timestamp(before, first, PROBE, LAST_SUCCESS)
    code = CODES[fault]
    counted_before = requests_counted(before, endpoint, code)

    inject(case, endpoint, fault)
    resources: list[tuple[int, int]] = []
    exp = before
    for scrape_no in range(FAULTY_SCRAPES):
        previous, exp = exp, case.scrape()
        if scrape_no in (0, FAULTY_SCRAPES - 1):
            resources.append(case.resources())
        assert cdm_up(exp, case.faulty) == float(expect.target_up)
        assert cluster_up(exp, first) == float(expect.first_cluster_up)
        assert cluster_up(exp, other) == float(expect.other_cluster_up)
        assert_healthy_target_intact(exp, before, case)
        if expect.probe_refreshed:
            assert timestamp(exp, first, PROBE) > timestamp(previous, first, PROBE)
        else:  # the job keeps its last known state, status series included
            assert timestamp(exp, first, PROBE) == probe_refreshed
        if endpoint == "submissions":  # the run history failed: last success stays as known
            assert timestamp(exp, first, PROBE, LAST_SUCCESS) == first_success
        else:
            assert job_series(exp, first, PROBE) == probe_status  # the world stood still
        if endpoint == "job_status" and fault != "429":
            # only the probe job failed: its neighbour was fetched as usual
            assert timestamp(exp, first, NEIGHBOUR) > timestamp(previous, first, NEIGHBOUR)

    assert requests_counted(exp, endpoint, code) > counted_before, (endpoint, code)
    assert_no_leak(resources[0], resources[-1])

    case.faulty.clear_faults()
    recovered = recover(case, expect_success_after=first_success if endpoint == "submissions" else None)
    assert timestamp(recovered, first, PROBE) > probe_refreshed


def recover(case: Case, *, expect_success_after: float | None = None, scrapes: int = 3) -> Exposition:
    """Scrape until the faulty target reads healthy again; at most ``scrapes`` scrapes."""
    problems: list[str] = []
    for _ in range(scrapes):
        exp = case.scrape()
        problems = []
        if cdm_up(exp, case.faulty) != 1:
            problems.append("cdm_up is not 1")
        if set(exp.select("cdm_cluster_up").values()) != {1.0}:
            problems.append(f"cdm_cluster_up: {exp.select('cdm_cluster_up')}")
        if expect_success_after is not None:
            success = job_value(exp, case.first_cluster, PROBE, LAST_SUCCESS)
            if success is None or success <= expect_success_after:
                problems.append(f"last success {success} not after {expect_success_after}")
        if not problems:
            return exp
    raise AssertionError(f"not recovered after {scrapes} scrapes: {problems}")


# --- a refused connection: the whole target --------------------------------------------------


@pytest.mark.parametrize("auth", ["token", "password"])
def test_refused_connection_takes_the_target_down_and_back(make_case: Callable[..., Case], auth: str) -> None:
    case = make_case(password=auth == "password")
    first = case.first_cluster
    before = warm_up(case)
    probe_status = job_series(before, first, PROBE)
    probe_refreshed = timestamp(before, first, PROBE)
    counted_before = requests_counted(before, "list_clusters", "error")
    port, settings = case.faulty.port, case.faulty.settings
    case.faulty.stop()  # nothing listens on the port any more

    resources = []
    for _ in range(FAULTY_SCRAPES):
        exp = case.scrape()
        resources.append(case.resources())
        assert cdm_up(exp, case.faulty) == 0
        assert {cluster_up(exp, c.id) for c in case.faulty.world.clusters()} == {0.0}
        assert job_series(exp, first, PROBE) == probe_status
        assert timestamp(exp, first, PROBE) == probe_refreshed
        assert_healthy_target_intact(exp, before, case)
    assert requests_counted(exp, "list_clusters", "error") >= counted_before + FAULTY_SCRAPES
    assert_no_leak(resources[0], resources[-1])

    # the API comes back on the same port (a new simulator: its tokens are new, so a password
    # target's cached token gets a 401 and is renewed)
    revived = Simulator(settings)
    revived.start("127.0.0.1", port)
    case.started.append(revived)
    case.faulty = revived
    recover(case)


# --- hangs against the default read timeout: the scrape deadline cuts the call -----------------


@pytest.mark.parametrize("endpoint", ["list_clusters", "job_status"])
def test_hang_is_cut_at_the_scrape_deadline_not_the_read_timeout(
    make_case: Callable[..., Case], endpoint: str
) -> None:
    """With a 60 s read timeout, hanging calls end at the deadline of the scrape they started in
    (2 s): each scrape answers long before the read timeout, and the failure is counted within
    three scrapes, where a call waiting for its read timeout would still hang."""
    case = make_case(read_timeout=LONG_TIMEOUT)
    first = case.first_cluster
    before = warm_up(case)
    case.faulty.add_fault(Fault(endpoint=endpoint, kind="hang"))  # every job, for job_status
    resources = []
    exp = before
    for _ in range(3):
        exp = case.scrape(2.5)  # asserts an answer long before the read timeout
        resources.append(case.resources())
        assert_healthy_target_intact(exp, before, case)
    # a call cut at the deadline ends as its scrape answers, and counts by the next scrape
    if endpoint == "list_clusters":
        assert cdm_up(exp, case.faulty) == 0
    else:
        assert cdm_up(exp, case.faulty) == 1
        assert job_series(exp, first, PROBE) == job_series(before, first, PROBE)
    assert requests_counted(exp, endpoint, "error") >= 1
    assert_no_leak(resources[0], resources[-1])
    case.faulty.clear_faults()
    recover(case)


class _GzipBomb(http.server.BaseHTTPRequestHandler):
    """Every GET: a small gzip body that inflates to 40 MiB of valid JSON (no cluster)."""

    body = b""  # made by the test: compressing 40 MiB takes a moment

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_gzip_bomb_is_refused_by_its_inflated_size(exporter_server: ExporterServer) -> None:
    """The declared length is small; the cap holds on what the body inflates to."""
    _GzipBomb.body = gzip.compress(b'{"clusters": [' + b" " * HUGE + b"]}", compresslevel=9)
    bomb = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GzipBomb)
    threading.Thread(target=bomb.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{bomb.server_address[1]}"
    project = "0123456789abcdef0123456789abcdef"
    target = TargetConfig(
        name="bomb",
        region="cn-north-4",
        project_id=project,
        endpoint=url,
        iam_endpoint=url,
        auth=TokenAuthConfig(Secret("token")),
    )
    try:
        exporter_server.mount(Exporter(Config(targets=(target,))))
        result = exporter_server.scrape(SCRAPE_TIMEOUT)
        exporter_server.mount(None)
    finally:
        bomb.shutdown()
        bomb.server_close()
    assert result.status == 200 and result.elapsed < LATE
    # parsed whole, the inflated body is a valid empty cluster list: cdm_up would be 1
    exp = result.exposition
    assert exp.value("cdm_up", project_id=project, region="cn-north-4") == 0
    assert exp.value("cdm_api_requests_total", endpoint="list_clusters", code="200") == 1


def test_a_failing_target_is_not_hidden_by_a_healthy_one_of_the_same_project(
    exporter_server: ExporterServer,
) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=1, rate_limit=0)) as sim:
        broken = sim_target(sim, "broken", auth=TokenAuthConfig(Secret("not-the-token")))
        exporter_server.mount(Exporter(Config(targets=(sim_target(sim, "healthy"), broken))))
        exp = exporter_server.scrape(SCRAPE_TIMEOUT).exposition
        exporter_server.mount(None)
    assert 0.0 in exp.select("cdm_up").values()


def test_concurrent_scrapes_during_a_hang_each_answer_by_their_own_deadline(
    make_case: Callable[..., Case],
) -> None:
    """While a slow scrape (8 s) leads a collection stuck on a hanging cluster list, short
    scrapes (1.2 s) of /metrics and /probe join it, and each gives up at its own deadline
    instead of the leader's."""
    slow_timeout, short_timeout = 8.0, 1.2
    slow_deadline = slow_timeout - CollectionConfig().scrape_timeout_offset
    case = make_case(read_timeout=LONG_TIMEOUT)
    warm_up(case)
    case.faulty.add_fault(Fault(endpoint="list_clusters", kind="hang"))
    results: dict[str, Scrape] = {}
    lock = threading.Lock()

    def one(name: str, path: str, timeout: float) -> None:
        result = case.server.scrape(timeout, path)
        with lock:
            results[name] = result

    calls = case.faulty.stats.count("list_clusters")
    slow = threading.Thread(target=one, args=("slow", "/metrics", slow_timeout))
    slow.start()
    wait_until(lambda: case.faulty.stats.count("list_clusters") > calls, LATE, "the slow scrape hung nowhere")
    short = {
        "metrics": "/metrics",
        "probe-faulty": "/probe?target=faulty",
        "probe-healthy": "/probe?target=healthy",
    }
    threads = [threading.Thread(target=one, args=(name, path, short_timeout)) for name, path in short.items()]
    for t in threads:
        t.start()
    for t in [*threads, slow]:
        t.join(timeout=slow_timeout + 2 * LATE)
    assert set(results) == {"slow", *short}
    assert all(r.status == 200 for r in results.values())
    # a short scrape held by the leader would answer at the leader's deadline, 7.5 s after it
    # started (less the moment the short ones started later); on its own deadline, after 0.7 s
    for name in short:
        assert results[name].elapsed < slow_deadline - 2.5, (name, results[name].elapsed)
    # the leader waits for its own deadline (its hanging call is cut at it, give or take a few
    # ms), not for the deadline of the first scrape that joined it, nor for the read timeout
    assert slow_deadline - 1.0 < results["slow"].elapsed < slow_deadline + LATE
    assert cdm_up(results["probe-healthy"].exposition, case.healthy) == 1


def test_a_hanging_target_never_delays_another_targets_probe(make_case: Callable[..., Case]) -> None:
    """70 scrapes of a hanging target announce 20 s (more than the 64 threads scrapes once waited
    in): a probe of the healthy target still runs its own collection within its 1.5 s, and the
    scrapes beyond the few that wait for the hanging collection are answered at once."""
    case = make_case(read_timeout=10.0)
    warm_up(case)
    case.faulty.add_fault(Fault(endpoint="list_clusters", kind="hang"))
    calls = case.faulty.stats.count("list_clusters")
    results: list[Scrape] = []
    lock = threading.Lock()

    def hanging_probe() -> None:
        result = scrape(case.server.http.url("/probe?target=faulty"), 20.0)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=hanging_probe) for _ in range(70)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: case.faulty.stats.count("list_clusters") > calls, 10, "the hang never started")
        listed = case.healthy.stats.count("list_clusters")
        healthy = scrape(case.server.http.url("/probe?target=healthy"), SCRAPE_TIMEOUT)
        assert healthy.status == 200 and healthy.elapsed < SCRAPE_TIMEOUT
        assert cdm_up(healthy.exposition, case.healthy) == 1
        # its own collection ran (discovery_interval 0: every collection lists clusters)
        assert case.healthy.stats.count("list_clusters") > listed
    finally:
        for thread in threads:
            thread.join(60)
    assert len(results) == 70 and all(r.status == 200 for r in results)
    answered_at_once = sum(1 for r in results if r.elapsed < 10.0)
    assert answered_at_once >= 70 - MAX_WAITERS_PER_TARGET
