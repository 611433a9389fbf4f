"""API-gateway throttling: per user, per policy (job_status vs common), rolling minute."""

from __future__ import annotations

import math
from collections.abc import Callable

import requests

from cdm_exporter.simulator import ManualClock, Simulator


def get(sim: Simulator, path: str, token: str = "sim-token", **params: str) -> requests.Response:
    return requests.get(sim.url + path, params=params, headers={"X-Auth-Token": token}, timeout=10)


def paths(sim: Simulator) -> dict[str, str]:
    pid = sim.settings.project_id
    cid = sim.world.clusters()[0].id
    name = sim.world.jobs(cid)[0].name
    base = f"/v1.1/{pid}/clusters"
    return {
        "list_clusters": base,
        "list_jobs": f"{base}/{cid}/cdm/job/all",
        "submissions": f"{base}/{cid}/cdm/submissions?jname={name}",
        "job_status": f"{base}/{cid}/cdm/job/{name}/status",
    }


def test_job_status_has_its_own_budget(
    make_simulator: Callable[..., Simulator], manual_clock: ManualClock
) -> None:
    sim = make_simulator(rate_limit=5, clock=manual_clock)
    p = paths(sim)
    assert [get(sim, p["job_status"]).status_code for _ in range(5)] == [200] * 5
    r = get(sim, p["job_status"])
    assert r.status_code == 429
    assert r.json() == {
        "error_code": "APIGW.0308",
        "error_msg": "The throttling threshold has been reached: "
        "policy user over ratelimit,limit:5,time:1 minute",
        "request_id": r.headers["X-Request-Id"],
    }
    assert get(sim, p["list_clusters"]).status_code == 200  # other policy untouched
    assert sim.stats.throttled == 1
    assert sim.stats.max_per_minute[("job_status", "sim-user")] == 6
    minute = math.floor(manual_clock() / 60)
    assert sim.stats.per_minute[("job_status", "sim-user", minute)] == 6


def test_common_policy_is_shared(make_simulator: Callable[..., Simulator], manual_clock: ManualClock) -> None:
    sim = make_simulator(rate_limit=6, clock=manual_clock)
    p = paths(sim)
    codes = [get(sim, p[e]).status_code for e in ("list_clusters", "list_jobs", "submissions") * 2]
    assert codes == [200] * 6
    assert {get(sim, p[e]).status_code for e in ("list_clusters", "list_jobs", "submissions")} == {429}
    assert get(sim, p["job_status"]).status_code == 200
    assert sim.stats.throttled == 3
    assert sim.stats.requests[("list_jobs", "sim-user")] == 3


def test_window_rolls_and_rejections_do_not_use_budget(
    make_simulator: Callable[..., Simulator], manual_clock: ManualClock
) -> None:
    sim = make_simulator(rate_limit=3, clock=manual_clock)
    p = paths(sim)["list_clusters"]
    assert [get(sim, p).status_code for _ in range(3)] == [200] * 3
    manual_clock.advance(30)
    assert [get(sim, p).status_code for _ in range(3)] == [429] * 3
    manual_clock.advance(30)  # the first three leave the window; the refused ones never counted
    assert [get(sim, p).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_limits_are_per_user_and_iam_is_not_limited(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(rate_limit=2)
    p = paths(sim)["list_clusters"]
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "sim-user", "password": "sim-password", "domain": {"name": "sim-domain"}}
                },
            },
            "scope": {"project": {"name": "cn-north-4"}},
        }
    }
    for _ in range(5):
        assert requests.post(f"{sim.url}/v3/auth/tokens", json=body, timeout=10).status_code == 201
    assert [get(sim, p).status_code for _ in range(3)] == [200, 200, 429]
    # An IAM token belongs to the same user as the static token: same budget.
    token = requests.post(f"{sim.url}/v3/auth/tokens", json=body, timeout=10).headers["X-Subject-Token"]
    assert get(sim, p, token=token).status_code == 429
    assert sim.stats.count("iam_token") == 6


def test_zero_means_unlimited(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(rate_limit=0)
    p = paths(sim)["job_status"]
    assert {get(sim, p).status_code for _ in range(150)} == {200}
    assert sim.stats.throttled == 0
    assert sim.stats.max_per_minute[("job_status", "sim-user")] == 150
