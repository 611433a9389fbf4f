"""Record a "real account" and replay it, all through the real command line, as an operator would.

A simulator whose world stands still (a time scale of one millionth) plays the real account,
with credentials that must not leak. ``check --record`` writes the recording;
``simulate --replay`` serves it; ``check`` and ``serve`` against the replay must show what they
showed against the account, and the file must hold none of the secrets, in any encoding.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests
import yaml
from exporter_stack import TIMEOUT_HEADER
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import free_port, promtool_check_metrics, require_prometheus_tools

PROJECT = "0123456789abcdef0123456789abcdef"
REGION = "cn-north-4"
# Test credentials chosen to be hard to redact: characters that percent- and JSON-encoding change.
SECRETS = {
    "token": 'tok/en+static=Secret"1',
    "access_key": "AKrecordTEST1",
    "secret_key": "sk/Secret+key=2&x",
    "iam_password": "p@ss w0rd/Secret%3",
    "security_token": "st+Security/Token=4",
}
#: series that depend on when and how often the exporter ran, not on what the account said
VOLATILE = (
    "cdm_api_",
    "cdm_scrape_duration",
    "cdm_job_refresh_timestamp",
    "cdm_job_history_timestamp",
    "cdm_exporter_build",
)


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cdm_exporter", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def listening(*args: str, banner: str) -> Iterator[str]:
    """Run a command that prints ``<banner> <url>`` and serves until SIGTERM; yield the URL."""
    process = spawn(*args)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {banner!r} line; got {seen}") from None
            seen.append(line)
            if line.startswith(banner):
                yield line.split()[-1]
                break
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def write_config(path: Path, url: str) -> Path:
    common = {"region": REGION, "project_id": PROJECT, "endpoint": url, "iam_endpoint": url}
    targets = [
        {**common, "name": "by-password", "auth": {"password": {
            "domain": "rec-domain", "user": "rec-user", "password": SECRETS["iam_password"]}}},
        {**common, "name": "by-aksk", "auth": {"aksk": {
            "access_key": SECRETS["access_key"], "secret_key": SECRETS["secret_key"],
            "security_token": SECRETS["security_token"]}}},
        {**common, "name": "by-token", "auth": {"token": SECRETS["token"]}},
    ]  # fmt: skip
    path.write_text(yaml.safe_dump({"targets": targets}))
    return path


def check(config: Path, *extra: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "cdm_exporter", "check", "--config.file", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def without_request_ids(report: str) -> str:
    """Three targets ask the failing cluster for the same list, and the replay hands the recorded
    answers out in order, whichever target asks first: only their request ids can swap."""
    return re.sub(r" \(request id [0-9a-f]+\)", "", report)


def samples(text: str) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {
        (s.name, frozenset(s.labels.items()), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("cdm_") and not s.name.startswith(VOLATILE)
    }


def settled_exposition(config: Path) -> str:
    """``serve`` with ``config``, scraped until two scrapes in a row say the same."""
    with serving(config, free_port()) as url:
        deadline = time.monotonic() + 60
        previous: set[tuple[str, frozenset[tuple[str, str]], float]] | None = None
        while True:
            text = requests.get(f"{url}/metrics", headers={TIMEOUT_HEADER: "10"}, timeout=40).text
            now = samples(text)
            if now == previous and any(
                name == "cdm_job_last_success_timestamp_seconds" for name, _, _ in now
            ):
                return text
            if time.monotonic() > deadline:
                raise AssertionError("the exposition did not settle within 60 s")
            previous = now
            time.sleep(0.2)


@contextmanager
def serving(config: Path, port: int) -> Iterator[str]:
    process = spawn("serve", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/-/healthy", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError("serve did not come up")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def encodings(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1]}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(raw).decode()
        forms |= {text, text.rstrip("=")}
    return forms


@pytest.fixture(scope="module")
def account() -> Iterator[str]:
    """The "real account": a simulator whose world stands still, with hard-to-redact credentials."""
    with listening(
        "simulate", "--web.listen-address", "127.0.0.1:0", "--clusters", "3", "--jobs", "5",
        "--seed", "11", "--rate-limit", "0", "--time-scale", "0.000001",
        "--token", SECRETS["token"], "--access-key", SECRETS["access_key"],
        "--secret-key", SECRETS["secret_key"], "--iam-domain", "rec-domain", "--iam-user", "rec-user",
        "--iam-password", SECRETS["iam_password"],
        banner="CDM simulator listening on",
    ) as url:  # fmt: skip
        yield url


def test_a_recording_replays_to_what_the_account_showed(tmp_path: Path, account: str) -> None:
    live_config = write_config(tmp_path / "live.yaml", account)
    recording = tmp_path / "recording.jsonl"
    code, live_report, err = check(live_config, "--record", str(recording))
    assert code == 1, err  # the third cluster of a simulator is not normal: its list fails
    assert f"to {recording}" in err
    live = settled_exposition(live_config)

    with listening("simulate", "--replay", str(recording), "--web.listen-address", "127.0.0.1:0",
                   banner="CDM replay listening on") as replay_url:  # fmt: skip
        replay_config = write_config(tmp_path / "replay.yaml", replay_url)
        # the same command as against the account (a recording check also reads the run history)
        replay_code, replay_report, _ = check(replay_config, "--record", str(tmp_path / "again.jsonl"))
        replayed = settled_exposition(replay_config)
        unmatched = requests.get(f"{replay_url}/_sim/replay", timeout=10).json()["unmatched"]

    assert replay_code == code
    assert without_request_ids(replay_report) == without_request_ids(live_report)
    assert samples(replayed) == samples(live)
    assert unmatched == []
    text = recording.read_text(encoding="utf-8")
    for name, secret in SECRETS.items():
        for form in encodings(secret):
            assert form not in text, f"{name} in the recording as {form!r}"
    assert "MIIsim" not in text  # the IAM-issued token (the simulator's tokens start so)
    assert "Signature=" not in text and "X-Auth-Token" not in text
    assert (recording.stat().st_mode & 0o077) == 0  # readable by its owner only


def test_a_recording_with_names_redacted_keeps_everything_but_the_names(tmp_path: Path, account: str) -> None:
    require_prometheus_tools()
    live_config = write_config(tmp_path / "live.yaml", account)
    recording = tmp_path / "redacted.jsonl"
    code, live_report, err = check(live_config, "--record", str(recording), "--redact-names")
    assert "names replaced by pseudonyms" in err
    live = settled_exposition(live_config)
    names = {
        labels[key]
        for _, label_set, _ in samples(live)
        for labels in [dict(label_set)]
        for key in ("cluster_name", "job_name", "from_link", "to_link", "creation_user", "last_update_user")
        if labels.get(key)
    }
    assert names
    text = recording.read_text(encoding="utf-8")
    leaked = {
        name for name in names if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    }
    assert leaked == set()

    with listening("simulate", "--replay", str(recording), "--web.listen-address", "127.0.0.1:0",
                   banner="CDM replay listening on") as replay_url:  # fmt: skip
        replay_config = write_config(tmp_path / "replay.yaml", replay_url)
        replay_code, replay_report, _ = check(replay_config)
        replayed = settled_exposition(replay_config)

    assert replay_code == code
    passed, output = promtool_check_metrics(replayed)
    assert passed, output

    def without_names(found: set[tuple[str, frozenset[tuple[str, str]], float]]) -> list[tuple[str, float]]:
        return sorted((name, value) for name, _, value in found)

    assert without_names(samples(replayed)) == without_names(samples(live))
    replayed_names = {dict(labels).get("job_name") for _, labels, _ in samples(replayed)} - {None}
    assert replayed_names and all(re.fullmatch(r"job-\d+", name or "") for name in replayed_names)

    # the report has the same rows, names aside
    def columns(report: str) -> list[str]:
        rows = report.split("\n\n")[1].splitlines()[2:]
        return sorted(" ".join(row.split()[2:]) for row in rows)

    assert columns(replay_report) == columns(live_report)
