"""``check --record`` in parts: what an exchange keeps, how secrets and names are removed, and
the transport hook that hands every exchange (failures included) to the recorder."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from sim_targets import sim_target

from cdm_exporter.api.auth import AkSkAuth, TokenAuth
from cdm_exporter.api.client import CdmClient
from cdm_exporter.api.errors import NotFound, TransportError
from cdm_exporter.api.recording import (
    REDACTED,
    ExchangeRecorder,
    Pseudonyms,
    SecretScrubber,
    encoded_forms,
)
from cdm_exporter.api.transport import RawResponse, RecordingObserver
from cdm_exporter.simulator import Simulator

SECRET = 'Se/cr+et="1"&ü'


def prepared(url: str, **headers: str) -> requests.PreparedRequest:
    return requests.Request("GET", url, headers=headers).prepare()


def answer(status: int, payload: object, **headers: str) -> RawResponse:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawResponse(status, {"Content-Type": "application/json", **headers}, data)


def lines(recorder: ExchangeRecorder, *, redact_names: bool = False) -> list[dict[str, Any]]:
    return [json.loads(line) for line in recorder.lines(redact_names=redact_names)]


def test_every_encoding_of_a_secret_is_scrubbed() -> None:
    scrubber = SecretScrubber([SECRET])
    forms = encoded_forms(SECRET)
    assert {
        quote(SECRET, safe=""),
        base64.b64encode(SECRET.encode()).decode(),
        json.dumps(SECRET)[1:-1],
    } <= forms
    for form in forms:
        assert scrubber.scrub(f"before {form} after") == f"before {REDACTED} after"
    nested = {"a": [f"x{SECRET}y", {SECRET: 1}], "n": 5}
    assert scrubber.scrub_json(nested) == {"a": [f"x{REDACTED}y", {REDACTED: 1}], "n": 5}


def test_an_exchange_keeps_the_answer_and_none_of_the_credentials() -> None:
    recorder = ExchangeRecorder([SECRET])
    request = prepared(
        "https://cdm.example/v1.1/p/clusters?x=1",
        **{
            "X-Auth-Token": "token-from-the-wire",
            "Authorization": "SDK-HMAC-SHA256 Access=AKWIRE, SignedHeaders=host, Signature=abc123sig",
            "X-Security-Token": "security-from-the-wire",
        },
    )
    body = {"clusters": [], "echo": ["token-from-the-wire", "AKWIRE", "abc123sig", SECRET]}
    response = answer(200, body, **{"X-Request-Id": "rid", "Set-Cookie": "session=1", "Server": "x"})
    recorder.record("list_clusters", request, response, None, 0.1234)
    header, line = lines(recorder)
    assert header["format"] == "cdm-exporter-recording" and header["version"] == 1
    assert line["method"] == "GET" and line["path"] == "/v1.1/p/clusters" and line["query"] == [["x", "1"]]
    assert line["status"] == 200 and line["seconds"] == 0.123
    assert line["headers"] == {"Content-Type": "application/json", "X-Request-Id": "rid"}
    assert line["body"] == {"json": {"clusters": [], "echo": [REDACTED] * 4}}
    text = "\n".join(recorder.lines())
    for leaked in ("token-from-the-wire", "AKWIRE", "abc123sig", "security-from-the-wire", "Authorization"):
        assert leaked not in text


def test_a_token_learnt_late_is_scrubbed_from_earlier_exchanges() -> None:
    recorder = ExchangeRecorder()
    recorder.record("list_clusters", prepared("https://h/a"), answer(200, {"said": "tok-123"}), None, 0.0)
    iam = answer(201, {"token": {}}, **{"X-Subject-Token": "tok-123"})
    recorder.record("iam_token", prepared("https://h/v3/auth/tokens"), iam, None, 0.0)
    first, second = lines(recorder)[1:]
    assert first["body"] == {"json": {"said": REDACTED}}
    assert second["headers"]["X-Subject-Token"] == REDACTED


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        (b'{"a": 1.5}', "json", {"a": 1.5}),
        (b"<html>gateway</html>", "text", "<html>gateway</html>"),
        (b'{"huge": 1e400}', "text", '{"huge": 1e400}'),  # parses as infinity: kept verbatim
        (b"\xff\xfe", "base64", "//4="),
        (b"", "text", ""),
    ],
)
def test_bodies_are_kept_as_json_text_or_base64(raw: bytes, kind: str, value: object) -> None:
    recorder = ExchangeRecorder()
    recorder.record("list_clusters", prepared("https://h/x"), answer(502, raw), None, 0.0)
    assert lines(recorder)[1]["body"] == {kind: value}


def test_names_become_the_same_pseudonym_everywhere() -> None:
    recorder = ExchangeRecorder()
    jobs = {
        "jobs": [
            {"name": "orders sync", "from-link-name": "mysql", "to-link-name": "dws_link",
             "creation-user": "alice", "job_type": "NORMAL_JOB", "status": "RUNNING",
             "from-connector-name": "generic-jdbc-connector"},
            {"name": "job-1", "creation-user": "cdm"},
            {"name": "ab"},
        ]
    }  # fmt: skip
    base = "https://h/v1.1/p/clusters/c1/cdm"
    recorder.record("list_jobs", prepared(f"{base}/job/all?jobType=NORMAL_JOB"), answer(200, jobs), None, 0)
    summary = "link mysql of orders sync refused alice; mysqlx stays"
    run = {
        "job-name": "orders sync",
        "last-udpate-user": "alice",
        "status": "FAILED",
        "error-summary": summary,
    }
    status = {"submissions": [run]}
    recorder.record(
        "job_status", prepared(f"{base}/job/{quote('orders sync')}/status"), answer(200, status), None, 0
    )
    failed = TransportError("submissions", "connection reset")
    recorder.record("submissions", prepared(f"{base}/submissions?jname=orders+sync"), None, failed, 0)
    clusters = {"clusters": [{"id": "c1", "name": "prod-etl", "datastore": {"type": "cdm"},
                              "instances": [{"name": "prod-etl-cdm-0", "type": "cdm"}]}]}  # fmt: skip
    recorder.record("list_clusters", prepared("https://h/v1.1/p/clusters"), answer(200, clusters), None, 0)

    listed, status_line, history, cluster_line = lines(recorder, redact_names=True)[1:]
    named = listed["body"]["json"]["jobs"]
    job = named[0]["name"]
    assert job.startswith("job-") and job != "job-1"  # never a real name of the same recording
    assert named[1]["name"].startswith("job-") and named[1]["name"] not in ("job-1", job)  # its own
    assert (named[0]["job_type"], named[0]["status"]) == ("NORMAL_JOB", "RUNNING")
    assert named[0]["from-connector-name"] == "generic-jdbc-connector"
    assert status_line["path"].endswith(f"/job/{job}/status")
    run = status_line["body"]["json"]["submissions"][0]
    assert run["job-name"] == job
    link, user = named[0]["from-link-name"], named[0]["creation-user"]
    assert link.startswith("link-") and user.startswith("user-") and run["last-udpate-user"] == user
    assert run["error-summary"] == f"link {link} of {job} refused {user}; mysqlx stays"
    assert history["query"] == [["jname", job]] and history["error"] == "transport: connection reset"
    assert "status" not in history and "body" not in history
    cluster = cluster_line["body"]["json"]["clusters"][0]
    assert cluster["name"].startswith("cluster-") and cluster["datastore"] == {"type": "cdm"}
    # inside a text a name ends at any non-word character: over-replacing ("cdm" is also a user
    # here) costs a little fidelity, stopping at "-" would leak "prod-etl" in "prod-etl-cdm-0"
    assert cluster["instances"][0]["name"].startswith(f"{cluster['name']}-")
    text = "\n".join(recorder.lines(redact_names=True))
    for real in ("orders sync", "orders+sync", "alice", "prod-etl", "dws_link"):
        assert real not in text
    assert '"ab"' not in text  # a short name is replaced where it stands whole


def test_short_names_are_not_replaced_inside_words() -> None:
    names = Pseudonyms([("job", "ab"), ("user", "cdm")])
    assert names.text("ab") == "job-1"
    assert names.text("about ab") == "about ab"  # too short to look for inside a text
    assert names.text("cdm user; cdmx") == "user-1 user; cdmx"


def test_the_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    recorder = ExchangeRecorder()
    recorder.record("list_clusters", prepared("https://h/c"), answer(200, {"clusters": []}), None, 0.0)
    path = tmp_path / "rec.jsonl"
    path.write_text("old content\n")
    assert recorder.write(path) == 1
    assert (path.stat().st_mode & 0o777) == 0o600
    assert path.read_text().startswith('{"format":"cdm-exporter-recording"')
    assert [p.name for p in tmp_path.iterdir()] == ["rec.jsonl"]  # no temporary file left


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_transport_hands_over_every_exchange(simulator: Simulator) -> None:
    secret_key = simulator.settings.secret_key
    recorder = ExchangeRecorder([secret_key])
    telemetry: list[tuple[str, str]] = []
    observer = RecordingObserver(lambda endpoint, code, _s: telemetry.append((endpoint, code)), recorder)
    target = sim_target(simulator)
    auth = AkSkAuth(simulator.settings.access_key, secret_key, target.project_id)
    with CdmClient(
        endpoint=simulator.url, project_id=target.project_id, auth=auth, observer=observer
    ) as client:
        clusters = client.list_clusters()
        with pytest.raises(NotFound):
            client.job_status(clusters[0].id, "no-such-job")
    refused = CdmClient(
        endpoint=f"http://127.0.0.1:{_closed_port()}", project_id=target.project_id,
        auth=TokenAuth("t0ken-never-sent"), observer=observer,
    )  # fmt: skip
    with refused, pytest.raises(TransportError):
        refused.list_clusters()
    recorded = lines(recorder)[1:]
    assert [r["endpoint"] for r in recorded] == ["list_clusters", "job_status", "list_clusters"]
    assert telemetry[0] == ("list_clusters", "200") and len(telemetry) == 3  # telemetry unchanged
    assert recorded[1]["status"] == 400 and "Cdm." in json.dumps(recorded[1]["body"])
    assert recorded[2]["error"] == "transport: connection refused" and "status" not in recorded[2]
    text = "\n".join(recorder.lines())
    assert simulator.settings.access_key not in text and secret_key not in text  # learnt from the wire
    assert "t0ken-never-sent" not in text
