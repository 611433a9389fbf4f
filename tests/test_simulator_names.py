"""Job names as one percent-encoded path segment: decoded exactly once, hostile names served,
and the raw path recorded so client tests can check what was sent."""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import quote, urlencode

import pytest
import requests

from cdm_exporter.simulator import Fault, Simulator

ODD = [
    "a/b",
    "..",
    ".",
    "?x#y",
    "100%",
    '"quoted"',
    "数据 迁移 🚀",
    "%2F",
    "line\nbreak",
    "all",
    "sp ace+plus",
]


def enc(name: str) -> str:
    """One path segment; dot-only names must be escaped or they would navigate."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded.strip(".") == "" else encoded


def job_url(sim: Simulator, cid: str, segment: str, suffix: str = "") -> str:
    return f"{sim.url}/v1.1/{sim.settings.project_id}/clusters/{cid}/cdm/job/{segment}{suffix}"


def get(target: str, **params: str) -> requests.Response:
    """GET exactly ``target`` (plus encoded params).  requests would otherwise "requote" the
    URL, decoding %2E to "." so that a job named ".." turns into path navigation."""
    if params:
        target += "?" + urlencode(params, quote_via=quote)
    with requests.Session() as session:
        prepared = session.prepare_request(
            requests.Request("GET", target, headers={"X-Auth-Token": "sim-token"})
        )
        prepared.url = target
        return session.send(prepared, timeout=10)


def raw_status_line(sim: Simulator, path: str) -> bytes:
    host, port = sim.url.split("://")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: sim-token\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.fixture
def odd_sim(make_simulator: Callable[..., Simulator]) -> tuple[Simulator, str]:
    sim = make_simulator(clusters=1, jobs=2, time_scale=60.0)
    cid = sim.world.clusters()[0].id
    for name in ODD:
        sim.world.add_job(cid, name)
        sim.world.start_run(cid, name, duration=3600)
    return sim, cid


@pytest.mark.parametrize("name", ODD)
def test_odd_names_are_served_and_logged_raw(odd_sim: tuple[Simulator, str], name: str) -> None:
    sim, cid = odd_sim
    r = get(job_url(sim, cid, enc(name), "/status"))
    assert r.status_code == 200, r.text
    sub = r.json()["submissions"][0]
    assert sub["job-name"] == name
    raw_path = f"/v1.1/{sim.settings.project_id}/clusters/{cid}/cdm/job/{enc(name)}/status"
    assert sim.stats.paths("job_status")[-1] == raw_path
    history = get(
        f"{sim.url}/v1.1/{sim.settings.project_id}/clusters/{cid}/cdm/submissions", jname=name
    ).json()
    assert [s["job-name"] for s in history["submissions"]] == [name]
    if name != "all":  # "job/all" is the listing; a job named "all" cannot be fetched alone
        single = get(job_url(sim, cid, enc(name))).json()
        assert single["total"] == 0 and single["jobs"][0]["name"] == name


def test_listing_returns_names_unchanged(odd_sim: tuple[Simulator, str]) -> None:
    sim, cid = odd_sim
    names = [j["name"] for j in get(job_url(sim, cid, "all"), page_size="100").json()["jobs"]]
    assert set(ODD) <= set(names)


def test_decoded_exactly_once(odd_sim: tuple[Simulator, str]) -> None:
    sim, cid = odd_sim
    r = get(job_url(sim, cid, quote(quote("100%", safe=""), safe=""), "/status"))  # 100%2525
    assert r.status_code == 400
    assert r.json()["externalMessage"] in ("Job[100%25] doesn't exist.", "Job 100%25 does not exist.")
    r = get(job_url(sim, cid, "%252F", "/status"))  # the job literally named "%2F"
    assert r.status_code == 200 and r.json()["submissions"][0]["job-name"] == "%2F"


@pytest.mark.parametrize(
    ("segment", "status"),
    [
        ("..", b"404"),  # navigates to .../cdm/status: no such API
        (".", b"400"),  # navigates to .../cdm/job/status: the (unknown) job "status"
        ('"quoted"', b"400"),  # must be encoded
        ("%zz", b"400"),  # malformed escape
        ("%ff", b"400"),  # not UTF-8
        ("100%", b"400"),
    ],
)
def test_unencoded_or_broken_segments_are_not_served(
    odd_sim: tuple[Simulator, str], segment: str, status: bytes
) -> None:
    sim, cid = odd_sim
    path = f"/v1.1/{sim.settings.project_id}/clusters/{cid}/cdm/job/{segment}/status"
    assert raw_status_line(sim, path).split(b" ")[1] == status


def test_fault_targets_an_odd_name(odd_sim: tuple[Simulator, str]) -> None:
    sim, cid = odd_sim
    sim.add_fault(Fault.parse(f"job_status@{cid}/{quote('a/b', safe='')}:503"))
    assert get(job_url(sim, cid, enc("a/b"), "/status")).status_code == 503
    assert get(job_url(sim, cid, enc("a"), "/status")).status_code == 400


def test_odd_job_names_setting(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=2, jobs=12, odd_job_names=True)
    first, second = sim.world.clusters()
    names = {j.name for j in sim.world.jobs(first.id)}
    assert {"a/b", "..", "?x#y", "100%", '"quoted"', "数据 迁移 🚀"} <= names
    assert not names & {j.name for j in sim.world.jobs(second.id)} - {"a/b"}
    for name in names:
        assert get(job_url(sim, first.id, enc(name), "/status")).status_code == 200
