"""AK/SK signing: the test vector of docs/api-notes.md ("AK/SK signing") and equality with the
official SDK signer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from cdm_exporter.api.auth import AkSkAuth
from cdm_exporter.api.client import path_segment, query_string
from cdm_exporter.api.signer import EMPTY_BODY_SHA256, canonical_query, canonical_uri, sign

NOW = datetime(2024, 1, 1, tzinfo=UTC)
VECTOR_URL = (
    "https://cdm.cn-north-4.myhuaweicloud.com/v1.1/pid123/clusters/cid/cdm/job/all"
    "?page_no=1&page_size=100&jobType=NORMAL_JOB"
)
VECTOR_HEADERS = {
    "Content-Type": "application/json",
    "X-Project-Id": "pid123",
    "X-Sdk-Date": "20240101T000000Z",
}


def test_vector_canonical_request_and_signature() -> None:
    signed = sign(
        "GET",
        VECTOR_URL,
        headers=VECTOR_HEADERS,
        body=b"",
        access_key="AKEXAMPLE",
        secret_key="SKEXAMPLE",
        now=NOW,
    )
    assert signed.canonical_request == (
        "GET\n/v1.1/pid123/clusters/cid/cdm/job/all/\njobType=NORMAL_JOB&page_no=1&page_size=100\n"
        "content-type:application/json\nhost:cdm.cn-north-4.myhuaweicloud.com\nx-project-id:pid123\n"
        "x-sdk-date:20240101T000000Z\n\ncontent-type;host;x-project-id;x-sdk-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert signed.authorization == (
        "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
        "Signature=325bab1198cb0e5ffc37d10f2ab40ad26a5ea66d65029086025bd1eb62d9a9b2"
    )
    assert signed.headers["Host"] == "cdm.cn-north-4.myhuaweicloud.com"
    assert signed.headers["X-Sdk-Date"] == "20240101T000000Z"


def test_date_comes_from_now_not_from_a_stale_header() -> None:
    later = sign(
        "GET",
        VECTOR_URL,
        headers=VECTOR_HEADERS,
        body=None,
        access_key="AKEXAMPLE",
        secret_key="SKEXAMPLE",
        now=NOW + timedelta(seconds=1),
    )
    assert later.headers["X-Sdk-Date"] == "20240101T000001Z"
    assert "Signature=325bab11" not in later.authorization
    # a naive datetime is UTC; an aware one in another zone is converted
    east = datetime(2024, 1, 1, 8, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert (
        sign("GET", VECTOR_URL, headers={}, body=None, access_key="a", secret_key="s", now=east).headers[
            "X-Sdk-Date"
        ]
        == "20240101T080000Z"
    )


def test_canonical_uri() -> None:
    assert canonical_uri("/v1.1/p/clusters") == "/v1.1/p/clusters/"
    assert canonical_uri("/already/") == "/already/"
    assert canonical_uri("") == "/"
    # %2F is decoded and then split, as the SDK does: more segments than on the wire
    assert canonical_uri("/cdm/job/a%2Fb/status") == "/cdm/job/a/b/status/"
    assert canonical_uri("/cdm/job/%E6%97%A5%20x~(1)/status") == "/cdm/job/%E6%97%A5%20x~%281%29/status/"
    assert canonical_uri("/cdm/job/%2E%2E/status") == "/cdm/job/../status/"


def test_canonical_query() -> None:
    assert canonical_query("") == ""
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    # decoded pairs are sorted, then encoded with only ~ left as is; "+" is not a space
    assert canonical_query("jname=a%2Fb%20c&x=%7E+") == "jname=a%2Fb%20c&x=~%2B"
    assert canonical_query("flag&=v") == "=v&flag="


def test_unsigned_payload_and_header_rules() -> None:
    signed = sign(
        "POST",
        "https://h.example/p",
        headers={
            "Content-Type": "text/plain",
            "X_Custom": "no",
            "X-Padded": "  v  ",
            "authorization": "stale",
        },
        body="data",
        access_key="a",
        secret_key="s",
        now=NOW,
    )
    assert signed.headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert signed.canonical_request.endswith("\nUNSIGNED-PAYLOAD")
    assert "x_custom" not in signed.signed_headers  # names with "_" are never signed
    assert "authorization" not in signed.signed_headers
    assert signed.headers["X-Padded"] == "v"  # sent exactly as signed
    assert "x-padded:v\n" in signed.canonical_request
    json_body = sign(
        "POST",
        "https://h.example/p",
        headers={"Content-Type": "application/json"},
        body=b"{}",
        access_key="a",
        secret_key="s",
        now=NOW,
    )
    assert "X-Sdk-Content-Sha256" not in json_body.headers
    assert not json_body.canonical_request.endswith(EMPTY_BODY_SHA256)
    with pytest.raises(ValueError, match="secret key"):
        sign("GET", "https://h.example/", headers={}, body=None, access_key="a", secret_key="", now=NOW)


# --- equality with the official SDK signer (test-only dependency) --------------------------------

sdk_signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")
sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")


@dataclass
class _Credentials:
    ak: str
    sk: str


def _both(
    method: str,
    host: str,
    segments: list[str],
    *,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    body: str = "",
) -> tuple[dict[str, str], dict[str, Any]]:
    """Sign the same wire request with ours and the SDK's; return both final header sets."""
    path = "/" + "/".join(path_segment(s, "job_status") for s in segments)
    query = query_string(params)
    url = f"https://{host}{path}" + (f"?{query}" if query else "")
    ours = sign(
        method, url, headers=headers, body=body, access_key="AKEXAMPLE", secret_key="SKEXAMPLE", now=NOW
    )
    request = sdk_request.SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,  # what the SDK would put on the wire: pre-encoded, so wire and signature agree
        query_params=list(params),
        header_params={**headers, "X-Sdk-Date": "20240101T000000Z"},
        body=body,
    )
    sdk_signer.Signer(_Credentials("AKEXAMPLE", "SKEXAMPLE")).sign(request)
    return ours.headers, request.header_params


BASE = ["v1.1", "pid123", "clusters", "cid", "cdm", "job"]
SDK_CASES = [
    ("plain name", [*BASE, "jdbc2hive", "status"], []),
    ("slash", [*BASE, "a/b", "status"], []),
    ("dot dot", [*BASE, "..", "status"], []),
    ("query-ish", [*BASE, "x?y#z&w=1", "status"], []),
    ("percent", [*BASE, "50%25 done%", "status"], []),
    ("quotes and spaces", [*BASE, 'it\'s a "job"', "status"], []),
    ("non-ascii", [*BASE, "日本語 ジョブ", "status"], []),
    ("reserved", [*BASE, "(a)[b]{c}!$&'*+,;=:@", "status"], []),
    ("tilde", [*BASE, "~home~", "status"], []),
    ("empty query", [*BASE, "all"], []),
    ("list query", [*BASE, "all"], [("page_no", "1"), ("page_size", "100"), ("jobType", "NORMAL_JOB")]),
    (
        "special query",
        ["v1.1", "pid123", "clusters", "cid", "cdm", "submissions"],
        [("jname", "a/b c&d=e+f%g"), ("filter", "日本"), ("z", ""), ("a", "~*'()")],
    ),
    ("repeated keys", [*BASE, "all"], [("k", "2"), ("k", "1"), ("K", "0")]),
]


@pytest.mark.parametrize(
    ("segments", "params"), [case[1:] for case in SDK_CASES], ids=[c[0] for c in SDK_CASES]
)
def test_same_signature_as_sdk(segments: list[str], params: list[tuple[str, str]]) -> None:
    headers = {
        "Content-Type": "application/json",
        "X-Project-Id": "pid123",
        "User-Agent": "cdm-exporter/test",
    }
    ours, sdk = _both("GET", "cdm.cn-north-4.myhuaweicloud.com", segments, params=params, headers=headers)
    assert ours["Authorization"] == sdk["Authorization"]
    assert ours == sdk


def test_same_signature_as_sdk_with_body_port_and_security_token() -> None:
    headers = {
        "Content-Type": "application/json;charset=utf8",
        "X-Security-Token": "tmp",
        "X-Project-Id": "p",
    }
    ours, sdk = _both(
        "POST",
        "127.0.0.1:8443",
        ["v3", "auth", "tokens"],
        params=[("nocatalog", "true")],
        headers=headers,
        body='{"auth": {}}',
    )
    assert ours["Authorization"] == sdk["Authorization"]


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    name=names,
    params=st.lists(st.tuples(names, st.text(st.characters(codec="utf-8"), max_size=8)), max_size=4),
)
def test_same_signature_as_sdk_for_any_name(name: str, params: list[tuple[str, str]]) -> None:
    ours, sdk = _both(
        "GET",
        "cdm.example",
        [*BASE, name, "status"],
        params=params,
        headers={"Content-Type": "application/json"},
    )
    assert ours["Authorization"] == sdk["Authorization"]


def test_aksk_auth_signs_the_final_url_with_a_fresh_date() -> None:
    """The auth object signs the request as prepared, and a new date each time."""
    ticks = iter([NOW, NOW + timedelta(seconds=5)])
    auth = AkSkAuth("AKEXAMPLE", "SKEXAMPLE", "pid123", security_token="TMPTOKEN", clock=lambda: next(ticks))
    url = "https://cdm.example/v1.1/pid123/clusters/cid/cdm/job/%2E%2E/status"
    seen = []
    for _ in range(2):
        prepared = requests.Request("GET", url, headers={"Content-Type": "application/json"}).prepare()
        prepared.url = url
        auth.apply(prepared)
        seen.append(dict(prepared.headers))
        expected = sign(
            "GET",
            url,
            headers={
                "Content-Type": "application/json",
                "X-Project-Id": "pid123",
                "X-Security-Token": "TMPTOKEN",
            },
            body=None,
            access_key="AKEXAMPLE",
            secret_key="SKEXAMPLE",
            now=_date(prepared),
        )
        assert prepared.headers["Authorization"] == expected.authorization
    assert seen[0]["X-Sdk-Date"] == "20240101T000000Z"
    assert seen[1]["X-Sdk-Date"] == "20240101T000005Z"
    assert seen[0]["Authorization"] != seen[1]["Authorization"]
    assert "x-security-token" in seen[0]["Authorization"]


def _date(prepared: requests.PreparedRequest) -> datetime:
    return datetime.strptime(prepared.headers["X-Sdk-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
