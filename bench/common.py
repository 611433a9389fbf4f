"""Helpers shared by the benchmark scripts: clocks, percentiles, tables, local processes.

Nothing here talks to anything but 127.0.0.1, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cdm_exporter
from cdm_exporter.config import CollectionConfig, Config, Secret, TargetConfig, TokenAuthConfig
from cdm_exporter.simulator import ManualClock, Simulator, SimulatorSettings

REPO = Path(__file__).resolve().parent.parent
# The checkout whose code is measured: PYTHONPATH may point at another one (an older commit, for a
# "before" figure); its commit is the one reported and child processes import from it.
CODE = Path(cdm_exporter.__file__).resolve().parent.parent


class FlowingClock(ManualClock):
    """A :class:`ManualClock` that also runs at real speed.

    Time passes normally (so request latency, deadlines and read timeouts are real), and
    :meth:`advance` skips idle stretches, e.g. the wait between two 15 s scrapes. A plain
    ``ManualClock`` would freeze the exporter's monotonic clock during a scrape, so its deadline
    (``now + timeout``) would never arrive in fake time and requests would all look simultaneous.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__(start)
        self._origin = time.monotonic()

    def __call__(self) -> float:
        return super().__call__() + (time.monotonic() - self._origin)

    def advance_to(self, when: float) -> None:
        """Jump forward to ``when`` (no-op when it is already past)."""
        gap = when - self()
        if gap > 0:
            self.advance(gap)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def fmt_seconds(value: float) -> str:
    """Seconds with sensible precision; '-' for NaN."""
    if math.isnan(value):
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 100:
        return f"{value:.1f} s"
    return f"{value:.0f} s"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one character per column, 'l' or 'r' (default: right)."""
    align = align or "r" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def git_commit() -> str:
    """The checked-out commit, with "+dirty" when tracked files differ from it (read-only git
    commands), or '?' outside a repository."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=str(CODE), capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (commit + ("+dirty" if dirty else "")) if commit else "?"


def machine_facts() -> str:
    """Where the figures come from; call it before a run, so the commit is the code that ran."""
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, commit {git_commit()}"
    )


# --- in-process simulator and exporter configuration ------------------------------------------


def sim_config(sim: Simulator, collection: CollectionConfig | None = None) -> Config:
    """A one-target exporter configuration for ``sim`` using its static token."""
    settings = sim.settings
    target = TargetConfig(
        name="sim",
        region=settings.region,
        project_id=settings.project_id,
        endpoint=sim.url,
        iam_endpoint=sim.url,
        auth=TokenAuthConfig(Secret(settings.token)),
    )
    return Config(targets=(target,), collection=collection or CollectionConfig())


def config_yaml(url: str, settings: SimulatorSettings | None = None) -> str:
    """The same configuration as YAML, for ``cdm-exporter serve --config.file``."""
    s = settings or SimulatorSettings()
    return (
        "targets:\n"
        "  - name: sim\n"
        f"    region: {s.region}\n"
        f'    project_id: "{s.project_id}"\n'
        f"    endpoint: {url}\n"
        f"    iam_endpoint: {url}\n"
        "    auth:\n"
        f"      token: {s.token}\n"
    )


# --- subprocesses ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers 200 (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2.0) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


@dataclass
class Child:
    """A child process started by a bench script, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM this child (only it, by its pid), then SIGKILL it after ``timeout``."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)


#: runs the CLI with the exporter's listen backlog set to argv[1] (a what-if, see load.py)
_WITH_BACKLOG = (
    "import sys\n"
    "from cdm_exporter.web import http_server\n"
    "http_server.BACKLOG = int(sys.argv.pop(1))\n"
    "from cdm_exporter.cli import main\n"
    "main()\n"
)

#: runs the CLI under tracemalloc (argv[1] frames per trace) and, every argv[2] seconds, dumps a
#: snapshot to argv[3] + "<CLOCK_MONOTONIC>.snap" (the clock is system-wide, so the parent can
#: line the files up with its own samples); gc runs first so only reachable memory is compared
_WITH_TRACEMALLOC = (
    "import gc, os, sys, threading, time, tracemalloc\n"
    "frames, every, prefix = int(sys.argv.pop(1)), float(sys.argv.pop(1)), sys.argv.pop(1)\n"
    "tracemalloc.start(frames)\n"
    "def dump():\n"
    "    while True:\n"
    "        time.sleep(every)\n"
    "        gc.collect()\n"
    "        snapshot = tracemalloc.take_snapshot()\n"
    "        path = f'{prefix}{time.monotonic():.3f}.snap'\n"
    "        snapshot.dump(path + '.tmp')\n"
    "        os.replace(path + '.tmp', path)\n"
    "threading.Thread(target=dump, name='tracemalloc-dump', daemon=True).start()\n"
    "from cdm_exporter.cli import main\n"
    "main()\n"
)


@dataclass(frozen=True)
class Tracemalloc:
    """Run the exporter under tracemalloc, dumping a snapshot every ``every`` seconds to
    ``prefix`` + monotonic time + ``.snap`` (see :data:`_WITH_TRACEMALLOC`)."""

    prefix: Path
    every: float = 60.0
    frames: int = 12

    def snapshots(self) -> list[tuple[float, Path]]:
        """The dumped snapshots as (CLOCK_MONOTONIC at dump, path), oldest first."""
        found = []
        for path in self.prefix.parent.glob(self.prefix.name + "*.snap"):
            found.append((float(path.name[len(self.prefix.name) : -len(".snap")]), path))
        return sorted(found)


def _spawn(
    name: str,
    args: list[str],
    log: Path,
    url: str,
    ready_path: str,
    backlog: int | None = None,
    trace: Tracemalloc | None = None,
    extra_env: dict[str, str] | None = None,
) -> Child:
    env = dict(os.environ) | (extra_env or {})
    env["PYTHONPATH"] = str(CODE) + os.pathsep + env.get("PYTHONPATH", "")
    if backlog is not None and trace is not None:
        raise ValueError("backlog and tracemalloc wrappers do not combine")
    command = ["-m", "cdm_exporter"]
    if backlog is not None:
        command = ["-c", _WITH_BACKLOG, str(backlog)]
    elif trace is not None:
        command = ["-c", _WITH_TRACEMALLOC, str(trace.frames), f"{trace.every:g}", str(trace.prefix)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *command, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO),
        )
    child = Child(name, proc, url, log)
    try:
        wait_http(url + ready_path, timeout=30.0, proc=proc)
    except BaseException:
        child.stop()
        raise
    return child


def start_simulator(workdir: Path, *args: str) -> Child:
    """``cdm-exporter simulate`` on a free 127.0.0.1 port, with extra ``args``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return _spawn(
        "simulator",
        ["simulate", "--web.listen-address", f"127.0.0.1:{port}", *args],
        workdir / "simulator.log",
        url,
        "/_sim/",
    )


def start_exporter(
    workdir: Path,
    simulator_url: str,
    log_level: str = "warning",
    backlog: int | None = None,
    trace: Tracemalloc | None = None,
    extra_env: dict[str, str] | None = None,
) -> Child:
    """``cdm-exporter serve`` on a free 127.0.0.1 port, configured for the simulator.

    ``backlog`` replaces the HTTP server's listen backlog (``http_server.BACKLOG``) in that
    process only, without changing the exporter's code: a what-if for ``load.py``."""
    config = workdir / "config.yml"
    config.write_text(config_yaml(simulator_url))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return _spawn(
        "exporter",
        [
            "serve",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--log.level",
            log_level,
        ],
        workdir / "exporter.log",
        url,
        "/-/healthy",
        backlog,
        trace,
        extra_env,
    )


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """Collects started children and stops every one of them on the way out."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


# --- /proc ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    rss_bytes: int
    threads: int
    open_files: int
    cpu_seconds: float


def proc_sample(pid: int) -> ProcSample:
    """VmRSS and Threads from ``/proc/PID/status``, the ``/proc/PID/fd`` count, user+system CPU."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    rss = int(fields["VmRSS"].split()[0]) * 1024
    threads = int(fields["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_name = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(after_name[11]) + int(after_name[12])) / ticks  # utime, stime
    return ProcSample(rss, threads, fds, cpu)
