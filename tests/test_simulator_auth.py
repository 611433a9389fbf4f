"""Gateway authentication: static token, IAM-issued tokens (expiry, revocation) and AK/SK
signatures, checked with the test vector of docs/api-notes.md ("AK/SK signing") and with the official
SDK's signer."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
import requests
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from cdm_exporter.simulator import ManualClock, Simulator
from cdm_exporter.simulator import auth as simauth

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")

VECTOR_CANONICAL = (
    "GET\n/v1.1/pid123/clusters/cid/cdm/job/all/\njobType=NORMAL_JOB&page_no=1&page_size=100\n"
    "content-type:application/json\nhost:cdm.cn-north-4.myhuaweicloud.com\nx-project-id:pid123\n"
    "x-sdk-date:20240101T000000Z\n\ncontent-type;host;x-project-id;x-sdk-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
VECTOR_SIGNATURE = "325bab1198cb0e5ffc37d10f2ab40ad26a5ea66d65029086025bd1eb62d9a9b2"
VECTOR_HEADERS = {
    "content-type": "application/json",
    "host": "cdm.cn-north-4.myhuaweicloud.com",
    "x-project-id": "pid123",
    "x-sdk-date": "20240101T000000Z",
    "authorization": "SDK-HMAC-SHA256 Access=AKEXAMPLE, "
    f"SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature={VECTOR_SIGNATURE}",
}
VECTOR_TIME = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


def _verify_vector(secret: str, now: float, query: str = "page_no=1&page_size=100&jobType=NORMAL_JOB") -> str:
    verdict = simauth.verify_aksk(
        "GET",
        "/v1.1/pid123/clusters/cid/cdm/job/all",
        query,
        VECTOR_HEADERS,
        b"",
        secret_for=lambda ak: secret if ak == "AKEXAMPLE" else None,
        now=now,
    )
    return "ok" if verdict.ok else verdict.reason


def test_verifier_reproduces_the_test_vector() -> None:
    canonical = simauth.canonical_request(
        "GET",
        simauth.canonical_uri_whole_path("/v1.1/pid123/clusters/cid/cdm/job/all"),
        simauth.canonical_query("page_no=1&page_size=100&jobType=NORMAL_JOB"),
        VECTOR_HEADERS,
        signed_headers=["content-type", "host", "x-project-id", "x-sdk-date"],
        body_hash=simauth.EMPTY_BODY_SHA256,
    )
    assert canonical == VECTOR_CANONICAL
    assert (
        simauth.signature("SKEXAMPLE", simauth.string_to_sign("20240101T000000Z", canonical))
        == VECTOR_SIGNATURE
    )
    assert _verify_vector("SKEXAMPLE", VECTOR_TIME) == "ok"
    assert _verify_vector("SKEXAMPLE", VECTOR_TIME + 14 * 60) == "ok"


def test_verifier_refuses_wrong_key_skew_and_tampering() -> None:
    assert _verify_vector("SKWRONG", VECTOR_TIME) == "verify aksk signature fail"
    assert "15 minutes" in _verify_vector("SKEXAMPLE", VECTOR_TIME + 16 * 60)
    assert _verify_vector("SKEXAMPLE", VECTOR_TIME, query="page_no=2&page_size=100&jobType=NORMAL_JOB") == (
        "verify aksk signature fail"
    )


def test_both_canonical_uris_of_an_encoded_slash() -> None:
    path = "/v1.1/p/clusters/c/cdm/job/a%2Fb/status"
    assert simauth.canonical_uri_whole_path(path) == "/v1.1/p/clusters/c/cdm/job/a/b/status/"
    assert simauth.canonical_uri_per_segment(path) == "/v1.1/p/clusters/c/cdm/job/a%2Fb/status/"


# --- over HTTP ----------------------------------------------------------------------------------


class _Credentials:
    def __init__(self, ak: str, sk: str) -> None:
        self.ak = ak
        self.sk = sk


def sdk_signed_get(
    sim: Simulator,
    path: str,
    query: list[tuple[str, Any]] | None = None,
    *,
    ak: str = "SIMAK",
    sk: str = "SIMSK",
    sdk_date: str | None = None,
) -> requests.Response:
    """Sign with the official SDK's Signer (the gateway's reference) and send with requests."""
    headers = {"Content-Type": "application/json", "X-Project-Id": sim.settings.project_id}
    if sdk_date is not None:
        headers["X-Sdk-Date"] = sdk_date
    scheme, host = sim.url.split("://")
    request = SdkRequest("GET", scheme, host, path, query_params=query or [], header_params=headers, body="")
    Signer(_Credentials(ak, sk)).sign(request)
    return requests.get(request.url, headers=request.header_params, timeout=10)


def token_get(sim: Simulator, path: str, token: str) -> requests.Response:
    return requests.get(sim.url + path, headers={"X-Auth-Token": token}, timeout=10)


def clusters_path(sim: Simulator) -> str:
    return f"/v1.1/{sim.settings.project_id}/clusters"


def password_body(password: str = "sim-password", scope: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "sim-user", "password": password, "domain": {"name": "sim-domain"}}
                },
            },
            "scope": {"project": scope or {"id": "0123456789abcdef0123456789abcdef"}},
        }
    }


def issue(sim: Simulator, body: Any, query: str = "") -> requests.Response:
    return requests.post(f"{sim.url}/v3/auth/tokens{query}", json=body, timeout=10)


def test_static_token_and_missing_or_unknown_tokens(simulator: Simulator) -> None:
    assert token_get(simulator, clusters_path(simulator), "sim-token").status_code == 200
    r = requests.get(simulator.url + clusters_path(simulator), timeout=10)
    assert r.status_code == 401
    body = r.json()
    assert body["error_code"] == "APIGW.0301"
    assert body["error_msg"] == "Incorrect IAM authentication information: x-auth-token not found"
    assert body["request_id"] == r.headers["X-Request-Id"]
    r = token_get(simulator, clusters_path(simulator), "MIIforged")
    assert r.status_code == 401 and r.json()["error_msg"].endswith("decrypt token fail")
    assert simulator.stats.requests[("list_clusters", "sim-user")] == 1
    assert simulator.stats.requests[("list_clusters", "anonymous")] == 2


@pytest.mark.parametrize("scope", [{"id": "0123456789abcdef0123456789abcdef"}, {"name": "cn-north-4"}])
def test_iam_issues_a_project_token(simulator: Simulator, scope: dict[str, str]) -> None:
    r = issue(simulator, password_body(scope=scope))
    assert r.status_code == 201
    token = r.headers["X-Subject-Token"]
    assert len(token) > 1000
    body = r.json()["token"]
    assert ISO_Z.match(body["expires_at"]) and ISO_Z.match(body["issued_at"])
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    issued = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert (expires - issued).total_seconds() == pytest.approx(24 * 3600)
    assert body["methods"] == ["password"]
    assert body["project"]["id"] == simulator.settings.project_id
    assert body["project"]["name"] == "cn-north-4"
    assert body["project"]["domain"]["name"] == "sim-domain" and body["project"]["domain"]["id"]
    assert body["catalog"][0]["endpoints"][0]["url"].startswith(simulator.url)
    assert token_get(simulator, clusters_path(simulator), token).status_code == 200
    assert "catalog" not in issue(simulator, password_body(), "?nocatalog=true").json()["token"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (password_body(password="wrong"), 401),
        ({"auth": {"identity": {"methods": ["token"]}}}, 400),
        (password_body(scope={"id": "ffffffffffffffffffffffffffffffff"}), 400),
        (password_body(scope={"name": "eu-west-0"}), 400),
        ({"auth": {"identity": password_body()["auth"]["identity"]}}, 400),
        ("not json", 400),
    ],
)
def test_iam_refusals(simulator: Simulator, body: Any, status: int) -> None:
    r = (
        issue(simulator, body)
        if not isinstance(body, str)
        else requests.post(f"{simulator.url}/v3/auth/tokens", data=body, timeout=10)
    )
    assert r.status_code == status
    assert r.json()["error"]["code"] == status
    assert "X-Subject-Token" not in r.headers


def test_issued_token_expires(make_simulator: Callable[..., Simulator], manual_clock: ManualClock) -> None:
    sim = make_simulator(token_ttl_seconds=100.0, clock=manual_clock)
    r = issue(sim, password_body())
    token = r.headers["X-Subject-Token"]
    manual_clock.advance(99)
    assert token_get(sim, clusters_path(sim), token).status_code == 200
    manual_clock.advance(1)
    r = token_get(sim, clusters_path(sim), token)
    assert r.status_code == 401
    assert r.json()["error_msg"].startswith(
        "Incorrect IAM authentication information: token expires, expires_at: "
    )
    assert token_get(sim, clusters_path(sim), "sim-token").status_code == 200


def test_revoked_tokens_are_refused_until_a_new_one_is_issued(simulator: Simulator) -> None:
    old = issue(simulator, password_body()).headers["X-Subject-Token"]
    assert simulator.revoke_tokens() == 1
    assert token_get(simulator, clusters_path(simulator), old).status_code == 401
    new = issue(simulator, password_body()).headers["X-Subject-Token"]
    assert new != old
    assert token_get(simulator, clusters_path(simulator), new).status_code == 200
    assert simulator.stats.count("iam_token") == 2


def test_aksk_signed_by_the_official_signer(simulator: Simulator) -> None:
    cid = simulator.world.clusters()[0].id
    r = sdk_signed_get(
        simulator,
        f"{clusters_path(simulator)}/{cid}/cdm/job/all",
        [("page_no", 1), ("page_size", 100), ("jobType", "BATCH_JOB"), ("filter", "entire db+x")],
    )
    assert r.status_code == 200, r.text
    assert simulator.stats.requests[("list_jobs", "SIMAK")] == 1


def test_aksk_refusals(simulator: Simulator) -> None:
    path = clusters_path(simulator)
    for ak, sk in (("SIMAK", "not-the-secret"), ("OTHERAK", "SIMSK")):
        r = sdk_signed_get(simulator, path, ak=ak, sk=sk)
        assert r.status_code == 401
        assert r.json()["error_code"] == "APIGW.0301"
        assert "verify aksk signature fail" in r.json()["error_msg"]
    stale = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 20 * 60))
    r = sdk_signed_get(simulator, path, sdk_date=stale)
    assert r.status_code == 401 and "15 minutes" in r.json()["error_msg"]


def _sign_per_segment(sim: Simulator, raw_path: str) -> dict[str, str]:
    """Sign the way a client that splits before decoding would (not the SDK's way)."""
    host = sim.url.split("://")[1]
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = {"host": host, "x-sdk-date": date}
    signed = ["host", "x-sdk-date"]
    canonical = simauth.canonical_request(
        "GET",
        simauth.canonical_uri_per_segment(raw_path),
        "",
        headers,
        signed_headers=signed,
        body_hash=simauth.EMPTY_BODY_SHA256,
    )
    sig = simauth.signature("SIMSK", simauth.string_to_sign(date, canonical))
    return {
        "X-Sdk-Date": date,
        "Authorization": f"SDK-HMAC-SHA256 Access=SIMAK, SignedHeaders=host;x-sdk-date, Signature={sig}",
    }


def test_aksk_accepts_either_canonical_form_of_an_encoded_slash(simulator: Simulator) -> None:
    cid = simulator.world.clusters()[0].id
    simulator.world.add_job(cid, "a/b")
    raw_path = f"{clusters_path(simulator)}/{cid}/cdm/job/{quote('a/b', safe='')}/status"
    assert sdk_signed_get(simulator, raw_path).status_code == 200  # SDK: decode whole path, then split
    r = requests.get(simulator.url + raw_path, headers=_sign_per_segment(simulator, raw_path), timeout=10)
    assert r.status_code == 200, r.text
    assert simulator.stats.paths("job_status") == [raw_path, raw_path]


def test_unsupported_authorization_scheme(simulator: Simulator) -> None:
    r = requests.get(
        simulator.url + clusters_path(simulator), headers={"Authorization": "Basic c2ltOnNpbQ=="}, timeout=10
    )
    assert r.status_code == 401 and "verify aksk signature fail" in r.json()["error_msg"]
