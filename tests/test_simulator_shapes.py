"""Response shapes of every simulated endpoint (docs/api-notes.md, one section per call), over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import requests

from cdm_exporter.simulator import Simulator

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_NO_ZONE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
LIST_STATUSES = {"BOOTING", "RUNNING", "SUCCEEDED", "FAILED", "NEW", "PENDING"}
RUN_STATUSES = {"BOOTING", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "FAILURE_ON_SUBMIT", "NEVER_EXECUTED"}


def get(sim: Simulator, path: str, **params: Any) -> requests.Response:
    return requests.get(
        sim.url + path, params=params, headers={"X-Auth-Token": sim.settings.token}, timeout=10
    )


def base(sim: Simulator) -> str:
    return f"/v1.1/{sim.settings.project_id}/clusters"


def first_cluster(sim: Simulator) -> str:
    return sim.world.clusters()[0].id


def is_ms(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.isdigit()
    )


def test_list_clusters_shape(simulator: Simulator) -> None:
    r = get(simulator, base(simulator))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
    clusters = r.json()["clusters"]
    assert len(clusters) == 2
    for c in clusters:
        assert UUID.match(c["id"])
        assert c["status"] == "200"
        assert c["statusDetail"] == "Normal"
        assert c["isFrozen"] == "0"
        assert ISO_NO_ZONE.match(c["created"]) and ISO_NO_ZONE.match(c["updated"])
        assert c["datastore"]["type"] == "cdm" and c["datastore"]["version"]
        assert isinstance(c["instances"], list) and c["instances"][0]["type"] == "cdm"
        assert c["actionProgress"] == {} and c["failedReasons"] == {}
        assert c["customerConfig"]["clusterName"] == c["name"]
        assert isinstance(c["isAutoOff"], bool) and isinstance(c["recentEvent"], int)
    assert [c["id"] for c in clusters] == [c.id for c in simulator.world.clusters()]


def test_clusters_in_other_states_and_their_job_endpoints(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=5, jobs=2)
    clusters = get(sim, base(sim)).json()["clusters"]
    statuses = [c["status"] for c in clusters]
    assert statuses.count("200") >= 3
    assert "900" in statuses and "800" in statuses
    frozen = next(c for c in clusters if c["status"] == "800")
    assert frozen["isFrozen"] == "1"
    stopped = next(c for c in clusters if c["status"] == "900")
    job = sim.world.jobs(stopped["id"])[0].name
    for path in (f"/{stopped['id']}/cdm/job/all", f"/{stopped['id']}/cdm/job/{job}/status"):
        r = get(sim, base(sim) + path)
        assert r.status_code == 400
        assert r.json() == {
            "errCode": "Cdm.0021",
            "externalMessage": f"Failed to connect to server {stopped['name']}.",
        }
    r = get(sim, base(sim) + f"/{stopped['id']}/cdm/submissions", jname=job)
    assert r.status_code == 400 and r.json()["errCode"] == "Cdm.0021"


def test_cluster_detail(simulator: Simulator) -> None:
    cid = first_cluster(simulator)
    body = get(simulator, base(simulator) + f"/{cid}").json()
    assert body["id"] == cid
    assert {"vpc_id", "subnet_id", "security_group_id", "config_status", "maintainWindow"} <= set(body)


def test_unknown_cluster_answers_cdm_0001_with_400_or_404(simulator: Simulator) -> None:
    seen = set()
    for i in range(12):
        r = get(simulator, base(simulator) + f"/no-such-cluster-{i}/cdm/job/all")
        assert r.json()["errCode"] == "Cdm.0001"
        seen.add(r.status_code)
    assert seen == {400, 404}


def test_list_jobs_shape_and_default_type(simulator: Simulator) -> None:
    cid = first_cluster(simulator)
    body = get(simulator, base(simulator) + f"/{cid}/cdm/job/all", page_size=100).json()
    assert set(body) == {"total", "jobs", "page_no", "page_size"}
    assert body["page_no"] == 1 and body["page_size"] == 100
    normal = [j.name for j in simulator.world.jobs(cid, "NORMAL_JOB")]
    assert body["total"] == len(normal) == len(body["jobs"])
    assert [j["name"] for j in body["jobs"]] == normal
    for job in body["jobs"]:
        assert job["job_type"] == "NORMAL_JOB"
        assert job["status"] in LIST_STATUSES
        for key in (
            "from-connector-name",
            "to-connector-name",
            "from-link-name",
            "to-link-name",
            "creation-user",
        ):
            assert isinstance(job[key], str) and job[key]
        assert is_ms(job["creation-date"]) and is_ms(job["update-date"])
        assert isinstance(job["id"], int)
        assert isinstance(job["driver-config-values"]["configs"], list)
        if job["status"] == "NEW":
            assert "execute_start_date" not in job
        else:
            assert is_ms(job["execute_start_date"]) and is_ms(job["execute_update_date"])


def test_list_jobs_counters_are_usually_present(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=1, jobs=60)
    cid = first_cluster(sim)
    jobs = get(sim, base(sim) + f"/{cid}/cdm/job/all", page_size=100).json()["jobs"]
    ran = [j for j in jobs if j["status"] != "NEW"]
    with_counters = [j for j in ran if "rows_read" in j]
    assert 0 < len(with_counters) < len(ran)
    for j in with_counters:
        assert all(isinstance(j[k], int) for k in ("bytes_read", "rows_written", "write_rows", "files_read"))


def test_paging_across_pages_and_job_types(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=1, jobs=250)
    cid = first_cluster(sim)
    for job_type, page_size in (("NORMAL_JOB", 100), ("BATCH_JOB", 10), ("SCENARIO_JOB", 13)):
        expected = [j.name for j in sim.world.jobs(cid, job_type)]
        assert len(expected) > page_size
        names: list[str] = []
        page_no = 1
        while True:
            body = get(
                sim, base(sim) + f"/{cid}/cdm/job/all", jobType=job_type, page_no=page_no, page_size=page_size
            ).json()
            assert body["total"] == len(expected)
            assert body["page_no"] == page_no and body["page_size"] == page_size
            if not body["jobs"]:
                break
            assert all(j["job_type"] == job_type for j in body["jobs"])
            names += [j["name"] for j in body["jobs"]]
            page_no += 1
        assert names == expected
        assert page_no == -(-len(expected) // page_size) + 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"page_size": 9}, "Cdm.0024"),
        ({"page_size": 101}, "Cdm.0024"),
        ({"page_no": 0}, "Cdm.0024"),
        ({"page_size": "ten"}, "Cdm.0009"),
        ({"jobType": "FANCY_JOB"}, "Cdm.0014"),
    ],
)
def test_list_jobs_bad_parameters(simulator: Simulator, params: dict[str, Any], code: str) -> None:
    r = get(simulator, base(simulator) + f"/{first_cluster(simulator)}/cdm/job/all", **params)
    assert r.status_code == 400
    assert r.json()["errCode"] == code
    assert r.json()["externalMessage"]


def test_list_jobs_filter(simulator: Simulator) -> None:
    cid = first_cluster(simulator)
    target = simulator.world.jobs(cid, "NORMAL_JOB")[1].name
    body = get(
        simulator, base(simulator) + f"/{cid}/cdm/job/all", filter=target[-7:].upper(), page_size=10
    ).json()
    assert target in [j["name"] for j in body["jobs"]]
    assert all(target[-7:].lower() in j["name"].lower() for j in body["jobs"])


def test_single_job_get_has_total_zero(simulator: Simulator) -> None:
    cid = first_cluster(simulator)
    job = simulator.world.jobs(cid, "BATCH_JOB")[0]
    body = get(simulator, base(simulator) + f"/{cid}/cdm/job/{quote(job.name, safe='')}").json()
    assert body["total"] == 0
    assert [j["name"] for j in body["jobs"]] == [job.name]
    assert body["jobs"][0]["job_type"] == "BATCH_JOB"


def test_job_status_shape_for_every_job(simulator: Simulator) -> None:
    cid = first_cluster(simulator)
    for job in simulator.world.jobs(cid):
        r = get(simulator, base(simulator) + f"/{cid}/cdm/job/{quote(job.name, safe='')}/status")
        assert r.status_code == 200
        subs = r.json()["submissions"]
        if job.latest is None:
            assert subs == [] or (len(subs) == 1 and subs[0]["status"] == "NEVER_EXECUTED")
            continue
        (sub,) = subs
        assert sub["job-name"] == job.name
        assert sub["status"] in RUN_STATUSES
        assert isinstance(sub["progress"], int | float)
        assert is_ms(sub["creation-date"])
        if "submission-id" not in sub:  # the terse documented BOOTING form
            assert sub["status"] in ("BOOTING", "PENDING")
            assert set(sub) == {"job-name", "creation-user", "creation-date", "progress", "status"}
            continue
        assert sub["submission-id"] == job.latest.submission_id
        for key in ("external-id", "creation-user"):
            assert isinstance(sub[key], str)
        for key in ("isIncrementing", "is-execute-auto", "isDeleteJob"):
            assert isinstance(sub[key], bool)
        assert isinstance(sub["isStopingIncrement"], str)
        assert is_ms(sub["execute-date"]) and is_ms(sub["last-update-date"])
        assert "last-udpate-user" in sub or "last-update-user" in sub
        for key in ("delete_rows", "update_rows", "write_rows"):
            assert isinstance(sub[key], int)


def test_unknown_job_status_is_400_cdm_0100(simulator: Simulator) -> None:
    cid = first_cluster(simulator)
    r = get(simulator, base(simulator) + f"/{cid}/cdm/job/jdbc2hive/status")
    assert r.status_code == 400
    assert r.json() in (
        {"errCode": "Cdm.0100", "externalMessage": "Job[jdbc2hive] doesn't exist."},
        {"errCode": "Cdm.0054", "externalMessage": "Job jdbc2hive does not exist."},
    )


def test_submissions_history(simulator: Simulator) -> None:
    cid = first_cluster(simulator)
    job = next(j for j in simulator.world.jobs(cid) if j.scheduled)
    body = get(simulator, base(simulator) + f"/{cid}/cdm/submissions", jname=job.name).json()
    assert set(body) == {"submissions", "total", "page_no", "page_size"}
    assert body["page_size"] == 10 and body["page_no"] == 1
    assert body["total"] == simulator.settings.history_size
    ids = [s.get("submission-id") for s in body["submissions"] if "submission-id" in s]
    assert ids == sorted(ids, reverse=True)
    assert len(body["submissions"]) == 10
    page2 = get(
        simulator, base(simulator) + f"/{cid}/cdm/submissions", jname=job.name, page_no=2, page_size=15
    ).json()
    assert len(page2["submissions"]) == simulator.settings.history_size - 15
    everything = get(
        simulator, base(simulator) + f"/{cid}/cdm/submissions", jname=job.name, page_size=100
    ).json()
    all_ids = [s["submission-id"] for s in everything["submissions"][1:]]
    assert all_ids == list(range(all_ids[0], all_ids[0] - len(all_ids), -1))


@pytest.mark.parametrize("order", ["oldest-first", "shuffled"])
def test_submissions_in_another_order(make_simulator: Callable[..., Simulator], order: str) -> None:
    sim = make_simulator(history_order=order, time_scale=60.0)
    cid = first_cluster(sim)
    job = next(j for j in sim.world.jobs(cid) if j.scheduled)
    everything = get(sim, base(sim) + f"/{cid}/cdm/submissions", jname=job.name, page_size=100).json()
    ids = [s["submission-id"] for s in everything["submissions"] if "submission-id" in s]
    assert sorted(ids) == sorted(r.submission_id for r in sim.world.history(cid, job.name).runs)
    if order == "oldest-first":
        assert ids == sorted(ids)
    else:
        assert ids not in (sorted(ids), sorted(ids, reverse=True))
        again = get(sim, base(sim) + f"/{cid}/cdm/submissions", jname=job.name, page_size=100).json()
        again_ids = [s["submission-id"] for s in again["submissions"] if "submission-id" in s]
        # a fixed order, not a new one each time: the runs in both answers come in the same order
        # (time runs 60 times faster: a run may start meanwhile, and a running one's progress moves)
        both = set(ids) & set(again_ids)
        assert len(both) >= len(ids) - 1
        assert [i for i in again_ids if i in both] == [i for i in ids if i in both]


def test_a_refused_job_type(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(refused_job_types=("SCENARIO_JOB",))
    cid = first_cluster(sim)
    refused = get(sim, base(sim) + f"/{cid}/cdm/job/all", jobType="SCENARIO_JOB")
    assert refused.status_code == 400 and refused.json() == {
        "errCode": "Cdm.0014",
        "externalMessage": "Invalid parameter.",
    }
    assert get(sim, base(sim) + f"/{cid}/cdm/job/all", jobType="BATCH_JOB").status_code == 200


def test_submissions_needs_jname(simulator: Simulator) -> None:
    r = get(simulator, base(simulator) + f"/{first_cluster(simulator)}/cdm/submissions")
    assert r.status_code == 400 and r.json()["errCode"] == "Cdm.0014"
    r = get(simulator, base(simulator) + f"/{first_cluster(simulator)}/cdm/submissions", jname="nope")
    assert r.status_code == 400 and r.json()["errCode"] in ("Cdm.0100", "Cdm.0054")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v1.1/{pid}/clusters/"),
        ("GET", "/v1.1/{pid}/clusters/{cid}/cdm/job"),
        ("GET", "/v1.1/{pid}/clusters/{cid}/cdm/link/all"),
        ("DELETE", "/v1.1/{pid}/clusters"),
        ("GET", "/v3/auth/tokens"),
    ],
)
def test_unknown_paths_are_404_json(simulator: Simulator, method: str, path: str) -> None:
    url = simulator.url + path.format(pid=simulator.settings.project_id, cid=first_cluster(simulator))
    r = requests.request(method, url, headers={"X-Auth-Token": simulator.settings.token}, timeout=10)
    assert r.status_code == 404
    assert r.json()["error_code"] == "APIGW.0101"
    assert r.headers["X-Request-Id"]


def test_other_project_is_forbidden(simulator: Simulator) -> None:
    r = get(simulator, "/v1.1/ffffffffffffffffffffffffffffffff/clusters")
    assert r.status_code == 403
    assert r.json()["error_code"] == "APIGW.0302"
