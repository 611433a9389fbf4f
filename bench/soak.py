"""Soak: the exporter's memory, threads and open files over time, with job churn.

    python bench/soak.py [--minutes 10] [--clusters 3] [--jobs 100] [--latency-ms 50]
                         [--tracemalloc]

Starts ``cdm-exporter simulate`` (real rate limits; from the third cluster on some clusters are
not normal, so errors are part of the load) and ``cdm-exporter serve`` as subprocesses on
127.0.0.1, scrapes ``/metrics`` once per second for ``--minutes`` minutes, and meanwhile churns
the simulated world through its admin API (``/_sim/...``):

- every 5 s a new job is created and started (a third of them fail), and the oldest churn job
  is deleted once more than 40 exist, so job series keep appearing and disappearing;
- every 20 s a running generated job is made to fail now (error info series, log once);
- every 3 minutes a cluster of 20 jobs is added, and removed again 90 s later.

Records the exporter process's resident memory (``/proc/PID/status`` VmRSS), threads (Threads)
and open files (``/proc/PID/fd``) at start, every minute and at the end; in between, its RSS
after every scrape, and the scrapes and their latency. Each row describes the minute that ends
at its sample. Verdict: flat when, from the minute ending at ``--warmup`` minutes to the last
full minute, the RSS floor (the lowest RSS of the minute, i.e. without a scrape's transient
buffers) grew by at most max(10 %, 5 MiB) and threads and open files by at most 2; the slope of
the floors after warm-up, and over its second half, is printed too (a leak keeps its slope; a
warm-up curve flattens).

``--tracemalloc`` runs the exporter under ``tracemalloc`` (12 frames; roughly doubles its CPU
time and adds one thread, the one that dumps a snapshot every minute after a ``gc.collect()``).
The table then shows the Python heap (traced bytes) next to RSS, and the report lists the source
lines whose live memory grew most from the warm-up snapshot to the last one: RSS that grows while
the traced heap stays flat is the allocator, not the exporter holding on to objects.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import tempfile
import time
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    ProcSample,
    Tracemalloc,
    children,
    fmt_seconds,
    machine_facts,
    percentile,
    proc_sample,
    start_exporter,
    start_simulator,
    table,
)

SCRAPE_HEADERS = {"X-Prometheus-Scrape-Timeout-Seconds": "10", "Accept-Encoding": "gzip"}
CHURN_JOBS_MAX = 40
MIB = 2**20


@dataclass
class Point:
    """A sample at a minute mark, and what happened in the interval that ended there."""

    label: str
    elapsed: float
    sample: ProcSample
    scrapes: int = 0
    non_200: int = 0
    latencies: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # RSS after each scrape of the interval
    mono: float = 0.0  # CLOCK_MONOTONIC at the sample, to line up tracemalloc snapshots
    traced: int | None = None  # Python heap in the last snapshot before the sample (--tracemalloc)

    @property
    def rss_floor(self) -> int:
        """Lowest RSS of the interval: what stays allocated between scrapes (a leak lifts it;
        a scrape's transient buffers do not)."""
        return min(self.rss, default=self.sample.rss_bytes)


class Admin:
    """The simulator's admin API, with every call bounded by a timeout."""

    def __init__(self, url: str) -> None:
        self.url = url + "/_sim"
        self.errors = 0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10.0) as response:
                return json.loads(response.read() or b"null")
        except (urllib.error.URLError, OSError, ValueError):
            self.errors += 1  # e.g. 409: the job is already running; churn goes on
            return None


def seg(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class Churn:
    def __init__(self, admin: Admin, seed: int) -> None:
        self.admin = admin
        self.rnd = random.Random(seed)
        self.created: list[tuple[str, str]] = []
        self.serial = 0
        self.extra_cluster: tuple[str, float] | None = None  # (id, added at)
        clusters = admin.call("GET", "/clusters") or {"clusters": []}
        self.normal = [c["id"] for c in clusters["clusters"] if c["status"] == "200"]
        self.actions = 0
        self.next_cluster = 30.0

    def step(self, tick: int, elapsed: float) -> None:
        """The churn due at second ``tick`` (``elapsed`` seconds since the start)."""
        if tick % 5 == 0:
            self.new_job()
        if tick % 20 == 10:
            self.fail_one()
        if elapsed >= self.next_cluster:
            self.cluster_cycle(elapsed)
            self.next_cluster += 90.0  # add, remove 90 s later, add again 90 s after that

    def new_job(self) -> None:
        if not self.normal:
            return
        cluster_id = self.rnd.choice(self.normal)
        self.serial += 1
        name = f"soak_churn_{self.serial:05d}"
        if self.admin.call("POST", f"/clusters/{seg(cluster_id)}/jobs", {"name": name}) is None:
            return
        outcome = "FAILED" if self.serial % 3 == 0 else "SUCCEEDED"
        duration = self.rnd.uniform(10.0, 120.0)
        self.admin.call(
            "POST",
            f"/clusters/{seg(cluster_id)}/jobs/{seg(name)}/start",
            {"outcome": outcome, "duration": duration},
        )
        self.created.append((cluster_id, name))
        while len(self.created) > CHURN_JOBS_MAX:
            old_cluster, old_name = self.created.pop(0)
            self.admin.call("DELETE", f"/clusters/{seg(old_cluster)}/jobs/{seg(old_name)}")
        self.actions += 1

    def fail_one(self) -> None:
        if not self.normal:
            return
        cluster_id = self.rnd.choice(self.normal)
        jobs = self.admin.call("GET", f"/clusters/{seg(cluster_id)}/jobs") or {"jobs": []}
        running = [j["name"] for j in jobs["jobs"] if j["run_status"] == "RUNNING"]
        if running:
            name = self.rnd.choice(running)
            self.admin.call(
                "POST",
                f"/clusters/{seg(cluster_id)}/jobs/{seg(name)}/outcome",
                {"outcome": "FAILED", "end_now": True},
            )
            self.actions += 1

    def cluster_cycle(self, now: float) -> None:
        if self.extra_cluster is None:
            added = self.admin.call("POST", "/clusters", {"status": "200", "jobs": 20})
            if added is not None:
                self.extra_cluster = (added["id"], now)
                self.actions += 1
        elif now - self.extra_cluster[1] >= 90.0:
            self.admin.call("DELETE", f"/clusters/{seg(self.extra_cluster[0])}")
            self.extra_cluster = None
            self.actions += 1


def scrape(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", "/metrics", headers=SCRAPE_HEADERS)
    response = conn.getresponse()
    response.read()
    return str(response.status)


def soak(
    args: argparse.Namespace, workdir: Path, trace: Tracemalloc | None
) -> tuple[list[Point], Churn, int]:
    sim_args = ["--clusters", str(args.clusters), "--jobs", str(args.jobs)]
    sim_args += ["--latency-ms", f"{args.latency_ms:g}", "--seed", str(args.seed)]
    points: list[Point] = []
    with children() as started:
        sim = start_simulator(workdir, *sim_args)
        started.append(sim)
        exporter = start_exporter(workdir, sim.url, trace=trace, extra_env=dict(args.env))
        started.append(exporter)
        churn = Churn(Admin(sim.url), args.seed)
        host, port = exporter.url.split("//", 1)[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=15.0)
        began = time.monotonic()
        points.append(Point("start", 0.0, proc_sample(exporter.pid), mono=began))
        window = Point("", 0.0, points[0].sample)  # collects the interval up to the next sample
        total = args.minutes * 60.0
        next_minute = 60.0
        for tick in range(int(total) + 1):  # one scrape per second, bounded
            elapsed = time.monotonic() - began
            if elapsed >= total:
                break
            if elapsed >= next_minute:
                window.label, window.elapsed = f"{next_minute / 60:.0f} min", elapsed
                window.sample, window.mono = proc_sample(exporter.pid), time.monotonic()
                points.append(window)
                window = Point("", 0.0, window.sample)
                next_minute += 60.0
            t0 = time.perf_counter()
            try:
                status = scrape(conn)
            except (OSError, http.client.HTTPException) as error:
                status = type(error).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=15.0)
            window.latencies.append(time.perf_counter() - t0)
            window.scrapes += 1
            window.non_200 += status != "200"
            window.rss.append(proc_sample(exporter.pid).rss_bytes)
            churn.step(tick, elapsed)
            sleep = began + tick + 1 - time.monotonic()
            if sleep > 0:
                time.sleep(min(sleep, 1.0))
        conn.close()
        window.label, window.elapsed = "end", time.monotonic() - began
        window.sample, window.mono = proc_sample(exporter.pid), time.monotonic()
        points.append(window)
        tracebacks = exporter.log.read_text(errors="replace").count("Traceback")
    return points, churn, tracebacks


def slope(points: list[Point]) -> float:
    """Least-squares slope of the RSS floors, MiB per minute."""
    xs = [p.elapsed / 60.0 for p in points]
    ys = [p.rss_floor / MIB for p in points]
    if len(xs) < 2:
        return math.nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else math.nan


def verdict(points: list[Point], warmup_minutes: int) -> tuple[str, list[str]]:
    """Compare the interval ending at ``warmup_minutes`` with the last full one."""
    measured = [p for p in points if p.rss]
    base = next((p for p in measured if p.elapsed >= warmup_minutes * 60 - 1), measured[0])
    full = [p for p in measured if p.label != "end" or p.scrapes >= 30]
    end = full[-1]
    growth = (end.rss_floor - base.rss_floor) / MIB
    allowed = max(5.0, 0.10 * base.rss_floor / MIB)
    threads = end.sample.threads - base.sample.threads
    fds = end.sample.open_files - base.sample.open_files
    after = [p for p in full if p.elapsed >= base.elapsed]
    notes = [
        f"RSS floor {base.rss_floor / MIB:.1f} MiB in the minute to {base.label} -> "
        f"{end.rss_floor / MIB:.1f} MiB in the minute to {end.label} ({growth:+.1f} MiB, allowed "
        f"+{allowed:.1f}; slope after warm-up {slope(after):+.2f} MiB/min, over its second half "
        f"{slope(after[len(after) // 2 :]):+.2f} MiB/min)",
        f"threads {base.sample.threads} -> {end.sample.threads} ({threads:+d}), "
        f"open files {base.sample.open_files} -> {end.sample.open_files} ({fds:+d})",
    ]
    flat = growth <= allowed and threads <= 2 and fds <= 2
    return ("FLAT" if flat else "GROWING"), notes


#: what tracemalloc's own bookkeeping and the snapshot thread allocate, not the exporter
_NOT_EXPORTER = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def heap_report(trace: Tracemalloc, points: list[Point], warmup_minutes: int, top: int) -> list[str]:
    """Fill ``Point.traced`` from the snapshots and compare the warm-up one with the last."""
    snapshots = trace.snapshots()
    if len(snapshots) < 2:
        return [f"only {len(snapshots)} tracemalloc snapshot(s); run longer than 2 minutes"]
    loaded: dict[Path, tracemalloc.Snapshot] = {}

    def load(path: Path) -> tracemalloc.Snapshot:
        if path not in loaded:
            loaded[path] = tracemalloc.Snapshot.load(str(path)).filter_traces(_NOT_EXPORTER)
        return loaded[path]

    for point in points:
        before = [path for when, path in snapshots if when <= point.mono]
        if before:
            point.traced = sum(stat.size for stat in load(before[-1]).statistics("filename"))
    began = points[0].mono
    base_when, base_path = next(
        ((w, p) for w, p in snapshots if w - began >= warmup_minutes * 60 - 1), snapshots[0]
    )
    end_when, end_path = snapshots[-1]
    base, end = load(base_path), load(end_path)
    base_total = sum(stat.size for stat in base.statistics("filename"))
    end_total = sum(stat.size for stat in end.statistics("filename"))
    lines = [
        f"Python heap (tracemalloc, after gc) {base_total / MIB:.2f} MiB at {(base_when - began) / 60:.1f} "
        f"min -> {end_total / MIB:.2f} MiB at {(end_when - began) / 60:.1f} min "
        f"({(end_total - base_total) / 1024:+.0f} KiB).",
        "",
        f"Largest changes of live memory by source line, {(base_when - began) / 60:.1f} -> "
        f"{(end_when - began) / 60:.1f} min:",
        "",
    ]
    rows = []
    for diff in end.compare_to(base, "lineno")[:top]:
        frame = diff.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        kib = f"{diff.size_diff / 1024:+.1f}"
        rows.append([where, kib, f"{diff.count_diff:+d}", f"{diff.size / 1024:.1f}"])
    lines.append(table(["line", "KiB change", "blocks change", "KiB now"], rows, "lrrr"))
    grown = [d for d in end.compare_to(base, "traceback")[:3] if d.size_diff > 0]
    for diff in grown:
        lines += ["", f"{diff.size_diff / 1024:+.1f} KiB in {diff.count_diff:+d} blocks allocated at:"]
        lines += [f"    {_short(f.filename)}:{f.lineno}" for f in reversed(diff.traceback)]
    return lines


def _short(filename: str) -> str:
    """A path from the package or library root, not the machine's."""
    for marker in ("/cdm_exporter/", "/site-packages/", "/lib/python"):
        if marker in filename:
            return filename[filename.index(marker) + 1 :]
    return filename


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="minutes before the reference sample: the churned world reaches its steady size "
        "(40 churn jobs) at 3.5 min and a cluster cycle takes 3 min",
    )
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=100, help="jobs per cluster")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tracemalloc", action="store_true", help="trace the exporter's Python heap")
    parser.add_argument("--frames", type=int, default=1, help="frames per trace with --tracemalloc")
    parser.add_argument(
        "--env",
        type=env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the exporter's environment, e.g. MALLOC_ARENA_MAX=2 (repeatable)",
    )
    parser.add_argument("--top", type=int, default=15, help="source lines in the --tracemalloc report")
    args = parser.parse_args()
    facts = machine_facts()  # before the run: the commit that ran, not one checked out since
    began = time.monotonic()
    heap: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cdm-soak-") as tmp:
        trace = Tracemalloc(Path(tmp) / "heap-", frames=args.frames) if args.tracemalloc else None
        points, churn, tracebacks = soak(args, Path(tmp), trace)
        if trace is not None:
            heap = heap_report(trace, points, args.warmup, args.top)
    rows = [
        [
            p.label,
            f"{p.elapsed:.0f}",
            f"{p.sample.rss_bytes / MIB:.1f}",
            f"{p.rss_floor / MIB:.1f} / {max(p.rss) / MIB:.1f}" if p.rss else "",
            *([f"{p.traced / MIB:.2f}" if p.traced is not None else ""] if args.tracemalloc else []),
            str(p.sample.threads),
            str(p.sample.open_files),
            f"{p.sample.cpu_seconds:.1f}",
            str(p.scrapes) if p.scrapes else "",
            str(p.non_200) if p.scrapes else "",
            fmt_seconds(percentile(p.latencies, 50)) if p.latencies else "",
            fmt_seconds(max(p.latencies)) if p.latencies else "",
        ]
        for p in points
    ]
    print(
        f"Machine: {facts}; {args.clusters} clusters x {args.jobs} jobs, API latency "
        f"{args.latency_ms:g} ms, {args.minutes:g} min, one scrape per second"
        + "".join(f"; exporter with {name}={value}" for name, value in args.env)
        + (f"; under tracemalloc ({args.frames} frames)" if args.tracemalloc else "")
        + ".\n"
    )
    print(
        table(
            [
                "sample",
                "s",
                "RSS MiB",
                "RSS min / max since last sample",
                *(["Python heap MiB"] if args.tracemalloc else []),
                "threads",
                "open files",
                "CPU s",
                "scrapes",
                "non-200",
                "scrape p50",
                "scrape max",
            ],
            rows,
            "l" + "r" * (len(rows[0]) - 1),
        )
    )
    outcome, notes = verdict(points, args.warmup)
    scrapes = sum(p.scrapes for p in points)
    non_200 = sum(p.non_200 for p in points)
    print(f"\nVerdict: {outcome}. " + "; ".join(notes) + ".")
    print(
        f"{scrapes} scrapes, {non_200} not 200; {churn.actions} churn actions "
        f"({churn.admin.errors} refused); {tracebacks} tracebacks in the exporter log."
    )
    if heap:
        print("\n" + "\n".join(heap))
    print(f"Total run time: {time.monotonic() - began:.0f} s real.")


if __name__ == "__main__":
    main()
