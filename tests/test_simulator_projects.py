"""The simulated account (``simulator/projects.py``): IAM projects, one CDM endpoint per region, a
region without CDM, credentials scoped to projects, and the admin API that adds and removes projects."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from cdm_exporter.api.auth import AkSkAuth
from cdm_exporter.api.client import CdmClient
from cdm_exporter.api.errors import AuthError
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings


@pytest.fixture
def sim() -> Iterator[Simulator]:
    settings = SimulatorSettings(
        clusters=1,
        jobs=2,
        extra_projects=("cn-north-4_dev", "ap-southeast-1"),
        regions_without_cdm=("ap-southeast-3",),
    )
    with Simulator(settings) as simulator:
        yield simulator


def pid(sim: Simulator, name: str) -> str:
    project = sim.projects.by_name(name)
    assert project is not None
    return project.id


def token_for(sim: Simulator, scope: dict[str, object]) -> str:
    s = sim.settings
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": s.iam_user, "password": s.iam_password, "domain": {"name": s.iam_domain}}
                },
            },
            "scope": scope,
        }
    }
    answer = requests.post(f"{sim.url}/v3/auth/tokens?nocatalog=true", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.headers["X-Subject-Token"]


def clusters(sim: Simulator, region: str, project_id: str, token: str) -> requests.Response:
    url = f"{sim.region_url(region)}/v1.1/{project_id}/clusters"
    return requests.get(url, headers={"X-Auth-Token": token}, timeout=10)


def test_each_region_has_its_own_endpoint_and_projects_their_own_clusters(sim: Simulator) -> None:
    regions = sim.projects.regions
    assert regions == ("cn-north-4", "ap-southeast-1", "ap-southeast-3")
    assert len({sim.region_url(r) for r in regions}) == 3 and sim.region_url("cn-north-4") == sim.url
    seen: set[str] = set()
    for name in ("cn-north-4", "cn-north-4_dev", "ap-southeast-1"):
        project_id = pid(sim, name)
        token = token_for(sim, {"project": {"id": project_id}})
        answer = clusters(sim, name.split("_")[0], project_id, token)
        assert answer.status_code == 200
        ids = {c["id"] for c in answer.json()["clusters"]}
        assert ids == {c.id for c in sim.projects.world(project_id).clusters()}
        assert not ids & seen  # cluster ids never collide between projects
        seen |= ids


def test_a_project_answers_only_at_its_regions_endpoint_and_to_its_own_credential(sim: Simulator) -> None:
    dev, ap = pid(sim, "cn-north-4_dev"), pid(sim, "ap-southeast-1")
    dev_token = token_for(sim, {"project": {"name": "cn-north-4_dev"}})
    assert clusters(sim, "ap-southeast-1", dev, dev_token).status_code == 403  # another region's endpoint
    assert clusters(sim, "cn-north-4", ap, dev_token).status_code == 403  # another project's token
    domain_token = token_for(sim, {"domain": {"name": sim.settings.iam_domain}})
    assert clusters(sim, "cn-north-4", dev, domain_token).status_code == 403  # CDM wants a project scope
    assert clusters(sim, "cn-north-4", sim.settings.project_id, sim.settings.token).status_code == 200
    assert clusters(sim, "cn-north-4", dev, sim.settings.token).status_code == 403  # the fixed token's scope


def test_a_region_without_cdm_answers_404_to_every_cdm_path(sim: Simulator) -> None:
    without = pid(sim, "ap-southeast-3")
    answer = clusters(sim, "ap-southeast-3", without, sim.settings.token)
    assert answer.status_code == 404 and answer.json()["error_code"] == "APIGW.0101"
    # IAM is global: it answers on that port too
    listed = requests.get(
        f"{sim.region_url('ap-southeast-3')}/v3/auth/projects",
        headers={"X-Auth-Token": sim.settings.token},
        timeout=10,
    )
    assert listed.status_code == 200


def test_the_project_list_has_keystones_shape_and_needs_a_credential(sim: Simulator) -> None:
    answer = requests.get(
        f"{sim.url}/v3/auth/projects", headers={"X-Auth-Token": sim.settings.token}, timeout=10
    )
    body = answer.json()
    assert set(body) == {"projects", "links"}
    for project in body["projects"]:
        assert set(project) == {
            "domain_id",
            "is_domain",
            "parent_id",
            "name",
            "description",
            "links",
            "id",
            "enabled",
        }
    names = {p["name"] for p in body["projects"]}
    assert names == {"cn-north-4", "cn-north-4_dev", "ap-southeast-1", "ap-southeast-3", ""}
    refused = requests.get(f"{sim.url}/v3/auth/projects", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == 401


def test_a_signed_request_must_name_the_project_it_addresses(sim: Simulator) -> None:
    s = sim.settings
    dev = pid(sim, "cn-north-4_dev")
    right = CdmClient(endpoint=sim.url, project_id=dev, auth=AkSkAuth(s.access_key, s.secret_key, dev))
    wrong = CdmClient(
        endpoint=sim.url, project_id=dev, auth=AkSkAuth(s.access_key, s.secret_key, s.project_id)
    )
    # without X-Project-Id the gateway takes the region's default project: fine for it, not for a sub-project
    unnamed = AkSkAuth(s.access_key, s.secret_key, None)
    default = CdmClient(endpoint=sim.url, project_id=s.project_id, auth=unnamed)
    sub = CdmClient(endpoint=sim.url, project_id=dev, auth=unnamed)
    with right, wrong, default, sub:
        assert len(right.list_clusters(timeout=10)) == 1
        assert len(default.list_clusters(timeout=10)) == 1
        for refused in (wrong, sub):
            with pytest.raises(AuthError, match="HTTP 403"):
                refused.list_clusters(timeout=10)


def test_projects_come_and_go_through_the_admin_api(sim: Simulator) -> None:
    admin = f"{sim.url}/_sim/projects"
    added = requests.post(admin, json={"name": "ap-southeast-1_etl", "clusters": 2, "jobs": 1}, timeout=10)
    assert added.status_code == 201
    new = added.json()
    assert new["region"] == "ap-southeast-1" and new["cluster_count"] == 2
    assert new["parent_id"] == pid(sim, "ap-southeast-1")
    listed = {p["name"]: p for p in requests.get(admin, timeout=10).json()["projects"]}
    assert listed["ap-southeast-1_etl"]["url"] == sim.region_url("ap-southeast-1")
    # the cluster routes work on any project
    cluster = requests.get(f"{admin}/{new['id']}/clusters", timeout=10).json()["clusters"][0]
    jobs = requests.post(
        f"{admin}/{new['id']}/clusters/{cluster['id']}/jobs", json={"name": "j1"}, timeout=10
    )
    assert jobs.status_code == 201
    assert [j.name for j in sim.projects.world(new["id"]).jobs(cluster["id"])][-1] == "j1"
    # refusals name the problem
    assert (
        requests.post(admin, json={"name": "eu-west-0"}, timeout=10).status_code == 400
    )  # region not served
    assert requests.post(admin, json={"name": "ap-southeast-1_etl"}, timeout=10).status_code == 409
    disabled = requests.patch(f"{admin}/{new['id']}", json={"enabled": False}, timeout=10)
    assert disabled.json()["enabled"] is False
    assert requests.delete(f"{admin}/{new['id']}", timeout=10).status_code == 200
    assert sim.projects.get(new["id"]) is None
    assert requests.delete(f"{admin}/{sim.settings.project_id}", timeout=10).status_code == 400  # the primary


def test_a_fault_can_target_one_project(sim: Simulator) -> None:
    ap = pid(sim, "ap-southeast-1")
    sim.add_fault(Fault.parse(f"list_clusters:503,project={ap}"))
    ap_token = token_for(sim, {"project": {"id": ap}})
    assert clusters(sim, "ap-southeast-1", ap, ap_token).status_code == 503
    assert clusters(sim, "cn-north-4", sim.settings.project_id, sim.settings.token).status_code == 200


def test_settings_refuse_what_cannot_be_served() -> None:
    with pytest.raises(ValueError, match="extra project"):
        SimulatorSettings(extra_projects=("cn-north-4",))  # the primary project's name
    with pytest.raises(ValueError, match="twice"):
        SimulatorSettings(extra_projects=("ap-southeast-1", "ap-southeast-1"))
    with pytest.raises(ValueError, match="region without CDM"):
        SimulatorSettings(regions_without_cdm=("cn-north-4",))
