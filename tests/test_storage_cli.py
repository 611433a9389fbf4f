"""``--storage.*`` through the real command line: bad flags, a restart mid-run, a crash loop.

The exporter runs as a process (``python -m cdm_exporter serve``) against the simulator with its
real rate limits; restarts are SIGKILL (an OOM kill, a node lost), which leave no chance to
write anything on the way out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from exporter_stack import Exposition
from storage_stack import ExporterProcess, assert_within_budget, eventually, write_config

from cdm_exporter.cli import cli
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings

BUDGET = 100  # the default collection.budget_per_minute of each policy


# --- flags -------------------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    with Simulator(SimulatorSettings(clusters=1, jobs=1)) as sim:
        yield write_config(tmp_path / "c.yml", sim)


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (
            ["--storage.redis-url", "redis://:hunter2@127.0.0.1:1/0"],
            {},
            "a password in the URL would be on the command line",
        ),
        (["--storage.redis-url", "http://127.0.0.1:1"], {}, "the scheme must be one of"),
        (
            ["--storage.path", "{tmp}/s.db", "--storage.redis-url", "redis://127.0.0.1:1/0"],
            {},
            "use one",
        ),
        (["--storage.path", "{tmp}/nowhere/s.db"], {}, "is not a directory"),
        (["--storage.redis-password-file", "{tmp}/pw"], {}, "needs --storage.redis-url"),
        (
            ["--storage.redis-url", "redis://127.0.0.1:1/0", "--storage.lease-period", "100ms"],
            {},
            "--storage.lease-period: must be between",
        ),
        (
            ["--storage.redis-url", "redis://127.0.0.1:1/0", "--storage.redis-password-file", "{tmp}/pw"],
            {"CDM_EXPORTER_STORAGE_REDIS_PASSWORD": "hunter2"},
            "use one",
        ),
        (["--storage.write-interval", "soon"], {}, "invalid duration"),
    ],
)
def test_bad_storage_flags_exit_2_naming_the_flag_and_no_secret(
    config: Path, tmp_path: Path, flags: list[str], env: dict[str, str], message: str
) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    args = ["serve", "--config.file", str(config), *(f.replace("{tmp}", str(tmp_path)) for f in flags)]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "hunter2" not in result.output


# --- a restart mid-run ------------------------------------------------------------------------------


def shared_series(exposition: Exposition, *names: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    return {name: exposition.select(name) for name in names}


REMEMBERED = (
    "cdm_job_last_success_timestamp_seconds",
    "cdm_job_refresh_timestamp_seconds",
    "cdm_job_read_rows",
    "cdm_job_written_rows",
    "cdm_job_read_bytes",
    "cdm_job_written_bytes",
    "cdm_job_submission_id",
    "cdm_job_status",
)


def test_a_process_killed_mid_run_serves_everything_it_knew_at_its_first_scrape(tmp_path: Path) -> None:
    settings = SimulatorSettings(clusters=2, jobs=8, time_scale=600)
    with Simulator(settings) as sim:
        config = write_config(tmp_path / "c.yml", sim, {"history_interval": "0s"})
        flags = ["--storage.path", str(tmp_path / "state.db"), "--storage.write-interval", "200ms"]
        first = ExporterProcess(config, flags, tmp_path / "first.log")
        try:

            def enough() -> Exposition | None:
                exposition = first.try_scrape()
                if exposition is None:
                    return None
                refreshed = exposition.select("cdm_job_refresh_timestamp_seconds")
                succeeded = exposition.select("cdm_job_last_success_timestamp_seconds")
                return exposition if len(refreshed) == 16 and len(succeeded) >= 6 else None

            eventually(enough, 90, "every job refreshed and six with a last success", every=0.5)
            sim.add_fault(Fault("*", status=503))  # from now on the state cannot change
            first.scrape()
            _, before = first.scrape()
            time.sleep(1.0)  # five write intervals: it is in the file
            first.kill()

            second = ExporterProcess(config, flags, tmp_path / "second.log")
            try:
                after = second.wait_serving()  # its very first scrape, with the API still down
            finally:
                second.stop()
        finally:
            first.stop()
    remembered = shared_series(before, *REMEMBERED)
    assert len(remembered["cdm_job_last_success_timestamp_seconds"]) >= 6
    assert len(remembered["cdm_job_read_rows"]) >= 1
    assert shared_series(after, *REMEMBERED) == remembered
    assert after.value("cdm_exporter_storage_up") == 1.0


# --- a crash loop -------------------------------------------------------------------------------------


def test_a_crash_loop_of_ten_restarts_in_a_minute_stays_within_the_budget(tmp_path: Path) -> None:
    # 80 jobs, fewer than a minute's budget: a life whose bucket and rolling minute allow it fetches
    # every job's status in its first scrape (a new bucket holds a whole minute), so every life
    # would, were the calls of the lives before not counted
    with Simulator(SimulatorSettings(clusters=2, jobs=40, time_scale=60)) as sim:
        config = write_config(tmp_path / "c.yml", sim)
        flags = ["--storage.path", str(tmp_path / "state.db"), "--storage.write-interval", "1s"]
        started = time.monotonic()
        for life in range(10):
            process = ExporterProcess(config, flags, tmp_path / f"life{life}.log")
            try:
                process.wait_serving()
                process.try_scrape()
            finally:
                process.kill()  # no clean stop, nothing written on the way out
        elapsed = time.monotonic() - started
        status_calls = sim.stats.count("job_status")
        worst = assert_within_budget(sim, BUDGET)
    assert status_calls >= BUDGET // 2, "the lives did poll (the first alone fetches all 80 jobs)"
    print(f"10 lives in {elapsed:.1f} s; {status_calls} status calls; most in a rolling minute: {worst}")
