"""The admin API under /_sim/, used to drive a simulator running in another process."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from cdm_exporter.simulator import Simulator


def admin(sim: Simulator, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{sim.url}/_sim{path}", json=body, timeout=10)


def status_of(sim: Simulator, cid: str, name: str) -> requests.Response:
    path = f"/v1.1/{sim.settings.project_id}/clusters/{cid}/cdm/job/{quote(name, safe='')}/status"
    return requests.get(sim.url + path, headers={"X-Auth-Token": "sim-token"}, timeout=10)


def test_index_lists_endpoints_and_credentials(simulator: Simulator) -> None:
    r = admin(simulator, "GET", "/")
    assert r.status_code == 200 and r.headers["X-Request-Id"]
    body = r.json()
    assert body["credentials"]["access_key"] == "SIMAK"
    assert any("/_sim/faults" in line for line in body["endpoints"])
    assert simulator.stats.log == []  # admin calls are not API traffic


def test_faults_through_admin(simulator: Simulator) -> None:
    cid = simulator.world.clusters()[0].id
    name = simulator.world.jobs(cid)[0].name
    r = admin(simulator, "POST", "/faults", {"spec": f"job_status@{cid}:500,count=5"})
    assert r.status_code == 201 and r.json()["status"] == 500
    r = admin(simulator, "POST", "/faults", {"endpoint": "list_jobs", "kind": "hang"})
    hang_id = r.json()["id"]
    listed = admin(simulator, "GET", "/faults").json()["faults"]
    assert [(f["endpoint"], f["remaining"]) for f in listed] == [("job_status", 5), ("list_jobs", None)]
    assert status_of(simulator, cid, name).status_code == 500
    assert admin(simulator, "DELETE", f"/faults/{hang_id}").status_code == 200
    assert admin(simulator, "DELETE", f"/faults/{hang_id}").status_code == 404
    assert admin(simulator, "DELETE", "/faults").status_code == 200
    assert status_of(simulator, cid, name).status_code == 200
    assert admin(simulator, "POST", "/faults", {"spec": "job_status:nope"}).status_code == 400
    assert admin(simulator, "POST", "/faults", {"endpoint": "job_status", "colour": 1}).status_code == 400


def test_jobs_and_runs_through_admin(simulator: Simulator) -> None:
    cid = simulator.world.clusters()[1].id
    r = admin(simulator, "POST", f"/clusters/{cid}/jobs", {"name": "x/y z", "job_type": "BATCH_JOB"})
    assert r.status_code == 201 and r.json()["status"] == "NEW"
    assert admin(simulator, "POST", f"/clusters/{cid}/jobs", {"name": "x/y z"}).status_code == 409
    job = quote("x/y z", safe="")
    r = admin(simulator, "POST", f"/clusters/{cid}/jobs/{job}/start", {"duration": 600, "outcome": "FAILED"})
    assert r.status_code == 201 and r.json()["status"] in ("BOOTING", "PENDING")
    assert admin(simulator, "POST", f"/clusters/{cid}/jobs/{job}/start").status_code == 409
    r = admin(
        simulator, "POST", f"/clusters/{cid}/jobs/{job}/outcome", {"outcome": "FAILED", "end_now": True}
    )
    assert r.status_code == 200 and r.json()["status"] == "FAILED"
    assert status_of(simulator, cid, "x/y z").json()["submissions"][0]["status"] == "FAILED"
    jobs = admin(simulator, "GET", f"/clusters/{cid}/jobs").json()["jobs"]
    assert "x/y z" in [j["name"] for j in jobs]
    assert admin(simulator, "DELETE", f"/clusters/{cid}/jobs/{job}").status_code == 200
    assert admin(simulator, "DELETE", f"/clusters/{cid}/jobs/{job}").status_code == 404
    bad = admin(simulator, "POST", f"/clusters/{cid}/jobs", {"name": "n", "period": "soon"})
    assert bad.status_code == 400 and "period" in bad.json()["error"]


def test_clusters_tokens_and_stats_through_admin(simulator: Simulator) -> None:
    r = admin(simulator, "POST", "/clusters", {"name": "added", "status": "900", "jobs": 1})
    assert r.status_code == 201
    cid = r.json()["id"]
    assert admin(simulator, "PUT", f"/clusters/{cid}/status", {"status": "200"}).json()["status"] == "200"
    assert cid in [c["id"] for c in admin(simulator, "GET", "/clusters").json()["clusters"]]
    assert admin(simulator, "DELETE", f"/clusters/{cid}").status_code == 200
    assert admin(simulator, "DELETE", f"/clusters/{cid}").status_code == 404
    assert admin(simulator, "POST", "/tokens/revoke").json() == {"revoked": 0}
    requests.get(f"{simulator.url}/v1.1/{simulator.settings.project_id}/clusters", timeout=10)
    stats = admin(simulator, "GET", "/stats").json()
    assert stats["requests"] == [{"endpoint": "list_clusters", "user": "anonymous", "count": 1}]
    assert stats["log"][0]["path"] == f"/v1.1/{simulator.settings.project_id}/clusters"
    admin(simulator, "POST", "/stats/reset")
    assert admin(simulator, "GET", "/stats").json()["requests"] == []
    assert admin(simulator, "GET", "/nothing-here").status_code == 404
    assert requests.post(f"{simulator.url}/_sim/clusters", data="[", timeout=10).status_code == 400
