"""Concurrent scrapers against ``cdm-exporter serve``: answers, latency, and API calls not multiplied.

    python bench/load.py [--scrapers 50] [--seconds 60] [--interval 0] [--clusters 2] [--jobs 250]
                         [--latency-ms 100] [--backlog N]

Two runs of ``--seconds`` each, every one with a fresh simulator (``cdm-exporter simulate``,
real rate limits, ``--latency-ms`` of latency) and a fresh exporter (``cdm-exporter serve``), both
subprocesses on 127.0.0.1:

1. one scraper;
2. ``--scrapers`` scrapers at once (threads, each with its own ``http.client`` connection).

Every scraper scrapes ``/metrics`` back to back (closed loop, no pause), or with ``--interval``
on common ticks (all scrapers at the same instant, the hardest case for single flight),
announcing ``X-Prometheus-Scrape-Timeout-Seconds: 10`` and asking for gzip, as Prometheus does;
back to back is far more than 50 Prometheus servers would ask. Each scraper keeps its connection
alive while the exporter does (the figures in docs/benchmarks.md before issue 13 were measured
with a server that closed every connection, so each scrape was a new TCP connection there).

Reported per run: scrapes, non-200 answers (including connection errors), latency p50/p99/max
(scrapes still running at the end are waited for); the simulator's request counts per policy
from the exporter's start to the end of the ``--seconds`` (total and max over rolling minutes),
its 429s, and how many list pages and history reads were asked for a second time (same path and
query: a collection repeating another's work); the exporter's CPU time, RSS and threads then.
Single flight and the budget should make the API calls of run 2 equal to those of run 1 within
a small margin: the scrapers share collections, they do not each start one. Prints markdown tables.

``--backlog N`` is a what-if: the exporter process is started with its HTTP server's listen
backlog (``http_server.BACKLOG``: 128 in the exporter's code; ``socketserver``'s default is 5) set to N,
without changing the exporter's code, to show what the backlog does to simultaneous scrapes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    Child,
    children,
    fmt_seconds,
    machine_facts,
    percentile,
    proc_sample,
    start_exporter,
    start_simulator,
    table,
)

from cdm_exporter.api.endpoints import ENDPOINT_POLICY

SCRAPE_HEADERS = {
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
    "Accept-Encoding": "gzip",
    "Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
}
REQUEST_TIMEOUT = 30.0


@dataclass
class Run:
    scrapers: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)  # per policy
    endpoints: dict[str, int] = field(default_factory=dict)
    max_per_minute: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    repeats: int = 0  # list pages and history reads asked for again (same path and query)
    cpu_seconds: float = 0.0
    rss_mib: float = 0.0
    threads: int = 0

    @property
    def scrapes(self) -> int:
        return len(self.latencies)

    @property
    def non_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10.0) as response:
        return json.loads(response.read())


def scraper(url: str, ticks: tuple[float, float, float], run: Run, lock: threading.Lock) -> None:
    """Scrape ``url`` from ``began`` until ``until`` (monotonic), back to back (``interval`` 0) or
    at ``began + n * interval`` (all scrapers on the same ticks); keeps its connection while the
    server does (it closes each one: HTTP/1.0)."""
    began, until, interval = ticks
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    conn: http.client.HTTPConnection | None = None
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    for n in range(1_000_000):  # bounded; the time limit ends it long before
        if interval > 0 or n == 0:
            pause = began + n * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        if time.monotonic() >= until:
            break
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT)
        sent = time.perf_counter()
        try:
            conn.request("GET", "/metrics", headers=SCRAPE_HEADERS)
            response = conn.getresponse()
            response.read()
            status = str(response.status)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as error:
            status = type(error).__name__
            if conn is not None:
                conn.close()
            conn = None
        latencies.append(time.perf_counter() - sent)
        statuses[status] = statuses.get(status, 0) + 1
    if conn is not None:
        conn.close()
    with lock:
        run.latencies += latencies
        for status, count in statuses.items():
            run.statuses[status] = run.statuses.get(status, 0) + count


def one_run(
    scrapers: int, seconds: float, interval: float, sim_args: list[str], workdir: Path, backlog: int | None
) -> Run:
    run = Run(scrapers)
    with children() as started:
        sim = start_simulator(workdir, *sim_args)
        started.append(sim)
        exporter: Child = start_exporter(workdir, sim.url, backlog=backlog)
        started.append(exporter)
        lock = threading.Lock()
        began = time.monotonic() + 0.5  # every thread is up by then
        until = began + seconds
        threads = [
            threading.Thread(
                target=scraper,
                args=(exporter.url + "/metrics", (began, until, interval), run, lock),
                name=f"scraper-{i}",
            )
            for i in range(scrapers)
        ]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, until - time.monotonic()))
        # the API calls of the same window in both runs: from the exporter's start to ``until``
        stats = get_json(sim.url + "/_sim/stats")
        sample = proc_sample(exporter.pid)
        run.cpu_seconds, run.threads = sample.cpu_seconds, sample.threads
        run.rss_mib = sample.rss_bytes / 2**20
        for thread in threads:
            thread.join(timeout=2 * REQUEST_TIMEOUT)
        run.seconds = time.monotonic() - began
    for row in stats["requests"]:
        run.endpoints[row["endpoint"]] = run.endpoints.get(row["endpoint"], 0) + row["count"]
        name = ENDPOINT_POLICY.get(row["endpoint"])
        if name is not None:
            run.calls[name] = run.calls.get(name, 0) + row["count"]
    for row in stats["max_per_minute"]:
        run.max_per_minute[row["policy"]] = max(run.max_per_minute.get(row["policy"], 0), row["max"])
    run.throttled = int(stats["throttled"])
    seen: set[tuple[str, str]] = set()
    for record in stats["log"]:  # the last 1000 requests: all of them in a 60 s run
        if record["endpoint"] in ("list_jobs", "submissions"):
            key = (record["path"], record["query"])
            run.repeats += key in seen
            seen.add(key)
    return run


def report(runs: list[Run]) -> str:
    answers = table(
        [
            "scrapers",
            "seconds",
            "scrapes",
            "scrapes/s",
            "non-200",
            "p50",
            "p99",
            "max",
            "exporter CPU",
            "exporter RSS",
            "threads",
        ],
        [
            [
                str(r.scrapers),
                f"{r.seconds:.0f}",
                f"{r.scrapes:,}",
                f"{r.scrapes / r.seconds:.1f}",
                str(r.non_200) + ("" if not r.non_200 else f" {r.statuses}"),
                fmt_seconds(percentile(r.latencies, 50)),
                fmt_seconds(percentile(r.latencies, 99)),
                fmt_seconds(max(r.latencies, default=float("nan"))),
                f"{r.cpu_seconds:.1f} s",
                f"{r.rss_mib:.0f} MiB",
                str(r.threads),
            ]
            for r in runs
        ],
    )
    base = runs[0]
    calls = table(
        [
            "scrapers",
            "job_status calls",
            "common calls",
            "list_jobs",
            "submissions",
            "job_status max/min",
            "common max/min",
            "429s",
            "list pages / history reads repeated",
            "calls vs 1 scraper",
        ],
        [
            [
                str(r.scrapers),
                str(r.calls.get("job_status", 0)),
                str(r.calls.get("common", 0)),
                str(r.endpoints.get("list_jobs", 0)),
                str(r.endpoints.get("submissions", 0)),
                str(r.max_per_minute.get("job_status", 0)),
                str(r.max_per_minute.get("common", 0)),
                str(r.throttled),
                str(r.repeats),
                f"{sum(r.calls.values()) / max(1, sum(base.calls.values())):.2f} x",
            ]
            for r in runs
        ],
    )
    return answers + "\n\n" + calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds between a scraper's scrapes; 0: back to back"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=None,
        help="what-if: run the exporter with this listen backlog (its code sets 128)",
    )
    parser.add_argument("--clusters", type=int, default=2, help="simulated clusters (the first 2 are normal)")
    parser.add_argument("--jobs", type=int, default=250, help="jobs per cluster")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sim_args = [
        "--clusters",
        str(args.clusters),
        "--jobs",
        str(args.jobs),
        "--latency-ms",
        f"{args.latency_ms:g}",
        "--seed",
        str(args.seed),
    ]
    facts = machine_facts()  # before the run: the commit that ran, not one checked out since
    began = time.monotonic()
    runs = []
    for scrapers in (1, args.scrapers):
        with tempfile.TemporaryDirectory(prefix="cdm-load-") as tmp:
            runs.append(one_run(scrapers, args.seconds, args.interval, sim_args, Path(tmp), args.backlog))
    print(
        f"Machine: {facts}; {args.clusters} clusters x {args.jobs} jobs, "
        f"API latency {args.latency_ms:g} ms, {args.seconds:g} s per run, "
        + (f"every scraper every {args.interval:g} s" if args.interval > 0 else "back-to-back scrapes")
        + ("" if args.backlog is None else f", exporter listen backlog set to {args.backlog}")
        + ".\n"
    )
    print(report(runs))
    print(f"\nTotal run time: {time.monotonic() - began:.0f} s real.")


if __name__ == "__main__":
    main()
