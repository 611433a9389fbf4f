"""``simulate --replay``: how a recording is read and served back, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from cdm_exporter.cli.simulate import simulate
from cdm_exporter.simulator.replay import REPLAY_TOKEN, RecordingError, Replay, ReplayServer

HEADER = {"format": "cdm-exporter-recording", "version": 1}
JOBS = "/v1.1/p1/clusters/c1/cdm/job/all"


def recording(*exchanges: dict[str, Any]) -> list[str]:
    return [json.dumps(HEADER)] + [json.dumps(e) for e in exchanges]


def answer(
    path: str, status: int, payload: Any, query: list[list[str]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"method": "GET", "path": path, "query": query or [], "status": status,
            "headers": {"Content-Type": "application/json", "X-Request-Id": f"r{status}"},
            "body": {"json": payload}, **extra}  # fmt: skip


@pytest.fixture
def served() -> Iterator[ReplayServer]:
    token = {"token": {"expires_at": "2030-01-01T00:00:00Z"}}
    html = {"body": {"text": "<html>bad gateway</html>"}, "headers": {"Content-Type": "text/html"}}
    lines = recording(
        answer(JOBS, 200, {"page": 1}, [["jobType", "NORMAL_JOB"], ["page_no", "1"]], seq=1),
        answer(JOBS, 200, {"page": "again"}, [["jobType", "NORMAL_JOB"], ["page_no", "1"]], seq=2),
        answer("/v1.1/p1/clusters/c1/cdm/job/a%2Fb/status", 400, {"errCode": "Cdm.0100"}, seq=3),
        {
            "method": "GET",
            "path": "/v1.1/p1/clusters",
            "query": [],
            "error": "timeout: read timed out",
            "seq": 4,
        },
        answer("/v3/auth/tokens", 201, token, [["nocatalog", "true"]], seq=5, method="POST")
        | {"headers": {"Content-Type": "application/json", "X-Subject-Token": "<redacted>"}},
        answer("/v1.1/p1/clusters/c2/cdm/job/x/status", 502, None, seq=6) | html,
    )
    with ReplayServer(Replay.parse(lines)) as server:
        yield server


def test_answers_by_method_path_and_query_in_recorded_order(served: ReplayServer) -> None:
    url = f"{served.url}/v1.1/OTHER-PROJECT/clusters/c1/cdm/job/all"  # any project id matches
    answers = [
        requests.get(url, params={"page_no": "1", "jobType": "NORMAL_JOB"}, timeout=10) for _ in range(3)
    ]
    assert [a.json() for a in answers] == [{"page": 1}, {"page": "again"}, {"page": "again"}]
    assert answers[0].headers["X-Request-Id"] == "r200"
    assert served.replay.served(1) == 1 and served.replay.served(2) == 2
    served.replay.rewind()
    assert requests.get(url, params={"jobType": "NORMAL_JOB", "page_no": "1"}, timeout=10).json() == {
        "page": 1
    }


def test_paths_are_compared_decoded_and_error_answers_replayed(served: ReplayServer) -> None:
    missing = requests.get(f"{served.url}/v1.1/p1/clusters/c1/cdm/job/a%2fb/status", timeout=10)
    assert missing.status_code == 400 and missing.json() == {"errCode": "Cdm.0100"}
    html = requests.get(f"{served.url}/v1.1/p1/clusters/c2/cdm/job/x/status", timeout=10)
    assert (html.status_code, html.headers["Content-Type"], html.text) == (
        502,
        "text/html",
        "<html>bad gateway</html>",
    )


def test_a_recorded_failure_is_a_connection_closed(served: ReplayServer) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{served.url}/v1.1/p1/clusters", timeout=10)


def test_iam_gives_a_usable_token_recorded_or_not(served: ReplayServer) -> None:
    recorded = requests.post(f"{served.url}/v3/auth/tokens?nocatalog=true", json={"auth": {}}, timeout=10)
    assert recorded.status_code == 201 and recorded.headers["X-Subject-Token"] == REPLAY_TOKEN
    with ReplayServer(Replay.parse(recording())) as empty:
        synthesized = requests.post(f"{empty.url}/v3/auth/tokens?nocatalog=true", json={}, timeout=10)
    assert synthesized.status_code == 201 and synthesized.headers["X-Subject-Token"] == REPLAY_TOKEN
    assert "expires_at" in synthesized.json()["token"]


def test_what_was_not_recorded_is_a_404_and_listed(served: ReplayServer) -> None:
    lost = requests.get(f"{served.url}/v1.1/p1/clusters/c9/cdm/job/all?jobType=BATCH_JOB", timeout=10)
    assert lost.status_code == 404 and lost.json()["error_code"] == "REPLAY.0404"
    stats = requests.get(f"{served.url}/_sim/replay", timeout=10).json()
    assert stats["unmatched"] == ["GET /v1.1/p1/clusters/c9/cdm/job/all?jobType=BATCH_JOB"]
    assert stats["exchanges"] == 6


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty"),
        (["{}"], "line 1: not a cdm-exporter recording"),
        ([json.dumps({**HEADER, "version": 9})], "version 9"),
        (
            recording({"method": "GET", "path": "/x", "query": []}),
            "line 2: an exchange needs a status or an error",
        ),
        (recording(answer("x", 200, {})), "line 2: path must start"),
        (recording(answer("/x", 200, {}) | {"body": {"yaml": "a: 1"}}), "line 2: unknown body kind"),
        (recording(answer("/x", 200, {}) | {"body": {"base64": "***"}}), "not base64"),
        (recording(answer("/x", 200, {}, [["a"]])), "query must be"),
        (recording(answer("/x", 999, {})), "status must be"),
        ([json.dumps(HEADER), "{not json"], "line 2: not JSON"),
    ],
)
def test_a_bad_recording_is_refused_naming_the_line(lines: list[str], message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        Replay.parse(lines)


def test_the_command_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    result = CliRunner().invoke(simulate, ["--replay", str(bad)])
    assert result.exit_code == 1 and "not a cdm-exporter recording" in result.output
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(recording()) + "\n")
    result = CliRunner().invoke(simulate, ["--replay", str(good), "--fault", "job_status:500"])
    assert result.exit_code == 2 and "--fault cannot be used with --replay" in result.output
