"""``cdm-exporter check`` as an operator runs it: a real process against the simulator.

It spends one call per thing its report shows and no more, says so when it could not read
something (and exits 3), names the server that refused a connection and the settings behind a
refused credential, sends a refused signature once, and keeps stderr for problems the report
does not show.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings

REPO = Path(__file__).resolve().parent.parent
EXIT_FAILED, EXIT_INCOMPLETE = 1, 3
WRONG_SECRET = "not-the-secret-key"


def cdm_exporter(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m cdm_exporter ARGS`` with none of the caller's exporter variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CDM_EXPORTER_", "CDM_SIMULATOR_", "HUAWEICLOUD_SDK_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "cdm_exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
        cwd=REPO,
        check=False,
    )


def write_config(directory: Path, target: dict[str, Any], collection: dict[str, Any] | None = None) -> Path:
    document: dict[str, Any] = {"targets": [target]}
    if collection:
        document["collection"] = collection
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def aksk_target(sim: Simulator, directory: Path, secret_key: str | None = None) -> dict[str, Any]:
    """The simulator's AK/SK, the secret key in a file next to the configuration."""
    secret = directory / "secret_key"
    secret.write_text(secret_key or sim.settings.secret_key)
    secret.chmod(0o600)
    return {
        "name": "prod",
        "region": sim.settings.region,
        "project_id": sim.settings.project_id,
        "endpoint": sim.url,
        "auth": {"aksk": {"access_key": sim.settings.access_key, "secret_key_file": "secret_key"}},
    }


@pytest.fixture
def frozen_sim() -> Iterator[Simulator]:
    """2 clusters of 10 jobs, CDM's 120 per minute, and a clock that stands still: every check of
    a test falls in the same rate-limit minute."""
    settings = SimulatorSettings(clusters=2, jobs=10, rate_limit=120, clock=ManualClock(time.time()))
    with Simulator(settings) as sim:
        yield sim


def table_rows(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("CLUSTER "))
    end = lines.index("", start)
    return lines[start + 2 : end]


# --- 1. calls and throttling --------------------------------------------------------------------------


def test_check_sends_one_status_call_per_job_so_four_runs_in_a_minute_are_not_throttled(
    frozen_sim: Simulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, aksk_target(frozen_sim, tmp_path))
    for run in range(4):
        result = cdm_exporter("check", "--config.file", str(config))
        assert result.returncode == 0, (run, result.stdout[-3000:], result.stderr)
        # 1 cluster list, 2 clusters x 3 job types, one ShowJobStatus per job; no run history
        assert result.stdout.endswith("\nAPI calls: 27 (list_clusters 1, list_jobs 6, job_status 20)\n")
        assert "*" not in "".join(table_rows(result.stdout))
        assert "INCOMPLETE" not in result.stdout
        # the failed runs are in the report, not repeated on stderr
        assert "FAILED" in result.stdout
        assert result.stderr == ""
    stats = frozen_sim.stats
    assert stats.count("job_status") == 80
    assert stats.count("list_jobs") == 24
    assert stats.count("submissions") == 0
    assert stats.throttled == 0


def test_a_throttled_check_marks_what_it_could_not_read_and_exits_3(tmp_path: Path) -> None:
    settings = SimulatorSettings(clusters=2, jobs=10, rate_limit=10, clock=ManualClock(time.time()))
    with Simulator(settings) as sim:
        # one request at a time: 10 statuses read, the 11th refused, the other 9 not sent
        config = write_config(tmp_path, aksk_target(sim, tmp_path), {"concurrency": 1})
        result = cdm_exporter("check", "--config.file", str(config))
        sent = sim.stats.count("job_status")
    assert result.returncode == EXIT_INCOMPLETE, (result.stdout[-3000:], result.stderr)
    assert sent == 11
    rows = table_rows(result.stdout)
    assert len(rows) == 20
    assert sum(1 for row in rows if re.search(r"^\S+\s+\S+\s+\S+\*\s", row)) == 10
    lines = result.stdout.splitlines()
    start = lines.index(
        "INCOMPLETE: the status of 10 of 20 jobs was not read (marked *: STATUS, rows and bytes are the "
        "job list's; progress, last error and error details are missing):"
    )
    assert lines[start + 1].startswith(
        "  1 job: job_status HTTP 429 APIGW.0308: The throttling threshold has been reached: "
        "policy user over ratelimit,limit:10,time:1 minute (request id "
    )
    assert lines[start + 2 : start + 4] == [
        "  9 jobs: not sent, the API throttled this IAM user (after a 429 the exporter pauses instead of "
        "retrying)",
        "  The IAM user's API rate limit is used up, maybe by another check, exporter or tool using the "
        "same user; run check again in a minute.",
    ]
    assert lines[-1] == "API calls: 18 (list_clusters 1, list_jobs 6, job_status 11)"
    assert result.stderr == ""


def test_a_check_out_of_budget_says_which_setting_limits_it(tmp_path: Path) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=12, rate_limit=0)) as sim:
        target = aksk_target(sim, tmp_path)
        target["jobs"] = {"types": ["NORMAL_JOB"]}
        config = write_config(tmp_path, target, {"budget_per_minute": {"job_status": 5}})
        result = cdm_exporter("check", "--config.file", str(config))
        sent = sim.stats.count("job_status")
    assert result.returncode == EXIT_INCOMPLETE, (result.stdout[-3000:], result.stderr)
    assert sent == 5
    jobs = len(table_rows(result.stdout))
    assert f"INCOMPLETE: the status of {jobs - 5} of {jobs} jobs was not read" in result.stdout
    assert (
        f"  {jobs - 5} jobs: not sent, the API budget "
        "(collection.budget_per_minute.job_status, 5 per minute) or --timeout ran out\n"
    ) in result.stdout
    assert "throttled" not in result.stdout


# --- 2. a refused connection names the server ---------------------------------------------------------


def test_connection_refused_names_the_server_and_logs_no_empty_fields(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once the socket is closed
    with Simulator(SimulatorSettings(clusters=1, jobs=1)) as sim:
        target = aksk_target(sim, tmp_path)
    target["endpoint"] = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, target)
    result = cdm_exporter("check", "--config.file", str(config), "--log.level", "debug")
    assert result.returncode == EXIT_FAILED
    assert f"  error: list_clusters: connection refused by http://127.0.0.1:{port}\n" in result.stdout
    assert "no jobs shown: no target could be read\n" in result.stdout
    assert "no jobs found" not in result.stdout
    failed = [line for line in result.stderr.splitlines() if 'msg="API call failed"' in line]
    assert len(failed) == 1
    assert f'error="connection refused by http://127.0.0.1:{port}"' in failed[0]
    assert "None" not in failed[0] and "status=" not in failed[0] and "request_id=" not in failed[0]


# --- 3. refused credentials ---------------------------------------------------------------------------


def test_a_wrong_secret_key_names_its_settings_and_is_sent_once(
    frozen_sim: Simulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, aksk_target(frozen_sim, tmp_path, WRONG_SECRET))
    result = cdm_exporter("check", "--config.file", str(config))
    assert result.returncode == EXIT_FAILED
    lines = result.stdout.splitlines()
    assert lines[0] == f"target prod (region cn-north-4, project {frozen_sim.settings.project_id}): DOWN"
    assert re.fullmatch(
        r"  error: list_clusters HTTP 401 APIGW\.0301: Incorrect IAM authentication information: "
        r"verify aksk signature fail \(request id [0-9a-f]+\)",
        lines[1],
    )
    assert lines[2] == (
        "  hint: check the access key and secret key of target prod: targets[0].auth.aksk.access_key "
        "and targets[0].auth.aksk.secret_key_file"
    )
    assert lines[3:] == ["", "no jobs shown: no target could be read", "", "API calls: 1 (list_clusters 1)"]
    assert result.stderr == ""
    assert WRONG_SECRET not in result.stdout
    # CDM locks an access key after 5 bad signatures in a row: one check sends one
    assert frozen_sim.stats.responses == {("list_clusters", 401): 1}


def test_a_signature_date_complaint_points_at_the_clock(frozen_sim: Simulator, tmp_path: Path) -> None:
    body = (
        '{"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information: '
        'verify aksk signature fail: X-Sdk-Date is more than 15 minutes off"}'
    )
    frozen_sim.add_fault(Fault("list_clusters", status=401, body=body, content_type="application/json"))
    config = write_config(tmp_path, aksk_target(frozen_sim, tmp_path))
    result = cdm_exporter("check", "--config.file", str(config))
    assert result.returncode == EXIT_FAILED
    assert (
        "  hint: the API says the signature's date is off: check this machine's clock (it must be within "
        "15 minutes of the API's; keep it synchronised with NTP)\n"
    ) in result.stdout
    assert frozen_sim.stats.count("list_clusters") == 1


def test_a_wrong_password_names_the_password_settings(frozen_sim: Simulator, tmp_path: Path) -> None:
    settings = frozen_sim.settings
    target = {
        "name": "sim",
        "region": settings.region,
        "project_id": settings.project_id,
        "endpoint": frozen_sim.url,
        "iam_endpoint": frozen_sim.url,
        "auth": {
            "password": {"domain": settings.iam_domain, "user": settings.iam_user, "password_env": "PW"}
        },
    }
    config = write_config(tmp_path, target)
    result = cdm_exporter("check", "--config.file", str(config), env={"PW": "wrong-password"})
    assert result.returncode == EXIT_FAILED
    assert "  error: iam_token HTTP 401" in result.stdout
    assert (
        "  hint: check the domain, user and password of target sim: targets[0].auth.password.domain, "
        "targets[0].auth.password.user and targets[0].auth.password.password_env\n"
    ) in result.stdout
    assert "no jobs found" not in result.stdout
    assert result.stderr == ""
    assert frozen_sim.stats.count("iam_token") == 1
    assert frozen_sim.stats.count("list_clusters") == 0


def test_environment_credentials_are_named_by_their_variables(frozen_sim: Simulator) -> None:
    settings = frozen_sim.settings
    region_var = "HUAWEICLOUD_SDK_REGION_CDM_" + settings.region.upper().replace("-", "_")
    env = {
        "HUAWEICLOUD_SDK_AK": settings.access_key,
        "HUAWEICLOUD_SDK_SK": WRONG_SECRET,
        "HUAWEICLOUD_SDK_PROJECT_ID": settings.project_id,
        "HUAWEICLOUD_SDK_REGION": settings.region,
        region_var: frozen_sim.url,
    }
    result = cdm_exporter("check", env=env)
    assert result.returncode == EXIT_FAILED
    assert (
        f"  hint: check the access key and secret key of target {settings.project_id}: HUAWEICLOUD_SDK_AK "
        "and HUAWEICLOUD_SDK_SK\n"
    ) in result.stdout


# --- 4. logs: a failed run once, its details at debug ------------------------------------------------------


def test_check_shows_failed_runs_and_api_failures_on_stderr_only_at_debug(
    frozen_sim: Simulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path, aksk_target(frozen_sim, tmp_path))
    quiet = cdm_exporter("check", "--config.file", str(config))
    loud = cdm_exporter("check", "--config.file", str(config), "--log.level", "debug")
    assert quiet.returncode == loud.returncode == 0
    assert quiet.stderr == ""
    assert 'msg="job run failed"' in loud.stderr
    details = [line for line in loud.stderr.splitlines() if 'msg="job run error details"' in line]
    assert details and all("org.apache.sqoop" in line and "level=debug" in line for line in details)
