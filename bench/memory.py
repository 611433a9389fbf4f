"""Memory of the exporter at scale: RSS with N jobs under concurrent 15 s scrapes, and the time to list them.

    python bench/memory.py [--jobs 1000 10000 50000] [--minutes 3] [--scrapers 3] [--interval 15]
                           [--latency-ms 20]

For each size N: a simulator (``cdm-exporter simulate``, N / 500 clusters of 500 jobs, every
cluster made normal through its admin API, its real rate limits, ``--latency-ms`` of latency)
and an exporter (``cdm-exporter serve``, default configuration), both subprocesses on 127.0.0.1.
``--scrapers`` threads scrape ``/metrics`` at the same instant every ``--interval`` seconds, as
that many Prometheus servers would, asking for gzip and announcing a 10 s timeout.

First the scrapes go on until the exposition has a ``cdm_job_info`` series for every job (the
time from the exporter's start is reported: the lists take N / 100 pages or so of the common
budget), then for ``--minutes`` more ("steady"). Reported per size: the exporter's RSS (VmRSS)
sampled every 0.2 s during the steady minutes (median and max), its peak RSS over the whole
run (VmHWM), the scrape latency p50 and max of the steady minutes, the size of a body
(uncompressed) and the scrapes that did not answer 200. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import Child, children, fmt_seconds, machine_facts, percentile, start_exporter, start_simulator

JOBS_PER_CLUSTER = 500
SCRAPE_HEADERS = {"X-Prometheus-Scrape-Timeout-Seconds": "10", "Accept-Encoding": "gzip"}
LIST_TIMEOUT = 30 * 60.0  # seconds to wait for every job to be listed


@dataclass
class Run:
    jobs: int
    listed_after: float = float("nan")
    rss: list[int] = field(default_factory=list)  # bytes, sampled during the steady minutes
    hwm: int = 0
    latencies: list[float] = field(default_factory=list)  # steady scrapes, seconds
    failures: int = 0
    body: int = 0  # bytes, uncompressed


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def make_clusters_normal(simulator: Child) -> None:
    with urllib.request.urlopen(simulator.url + "/_sim/clusters", timeout=30) as response:
        clusters = json.load(response)["clusters"]
    for cluster in clusters:
        request = urllib.request.Request(
            f"{simulator.url}/_sim/clusters/{cluster['id']}/status",
            data=json.dumps({"status": "200"}).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=30).close()


def scrape(url: str) -> tuple[int, bytes, float]:
    """One scrape as Prometheus does it: (status, uncompressed body, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    began = time.monotonic()
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", "/metrics", headers=SCRAPE_HEADERS)
        response = connection.getresponse()
        body = response.read()
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return response.status, body, time.monotonic() - began
    except OSError:
        return 0, b"", time.monotonic() - began
    finally:
        connection.close()


def round_of_scrapes(url: str, scrapers: int) -> list[tuple[int, bytes, float]]:
    """``scrapers`` scrapes started at the same instant."""
    results: list[tuple[int, bytes, float]] = [(0, b"", 0.0)] * scrapers

    def one(index: int) -> None:
        results[index] = scrape(url)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def one_run(jobs: int, minutes: float, scrapers: int, interval: float, latency_ms: float) -> Run:
    run = Run(jobs)
    clusters = max(1, jobs // JOBS_PER_CLUSTER)
    with tempfile.TemporaryDirectory(prefix="cdm-memory-") as tmp, children() as started:
        workdir = Path(tmp)
        simulator = start_simulator(
            workdir,
            "--clusters",
            str(clusters),
            "--jobs",
            str(JOBS_PER_CLUSTER),
            "--latency-ms",
            f"{latency_ms:g}",
        )
        started.append(simulator)
        make_clusters_normal(simulator)
        exporter = start_exporter(workdir, simulator.url)
        started.append(exporter)
        began = time.monotonic()
        steady_from: float | None = None
        sampling = threading.Event()
        stop = threading.Event()

        def sample_rss() -> None:
            while not stop.wait(0.2):
                if sampling.is_set():
                    run.rss.append(status_kib(exporter.pid, "VmRSS") * 1024)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        tick = time.monotonic()
        while True:
            results = round_of_scrapes(exporter.url, scrapers)
            now = time.monotonic()
            if steady_from is None:
                bodies = [body for status, body, _ in results if status == 200]
                if bodies and bodies[0].count(b"\ncdm_job_info{") >= jobs:
                    run.listed_after = now - began
                    steady_from = now
                    sampling.set()
                elif now - began > LIST_TIMEOUT:
                    raise TimeoutError(f"{jobs} jobs not listed after {LIST_TIMEOUT:g} s")
            else:
                run.latencies += [seconds for _, _, seconds in results]
                run.failures += sum(1 for status, _, _ in results if status != 200)
                run.body = max([run.body, *(len(body) for _, body, _ in results)])
                if now - steady_from >= minutes * 60:
                    break
            tick += interval
            time.sleep(max(0.0, tick - time.monotonic()))
        stop.set()
        sampler.join()
        run.hwm = status_kib(exporter.pid, "VmHWM") * 1024
    return run


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--minutes", type=float, default=3.0, help="steady minutes after every job is listed")
    parser.add_argument("--scrapers", type=int, default=3)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    print(
        f"Machine: {machine_facts()}; load average {os.getloadavg()[0]:.1f} before; "
        f"{args.scrapers} scrapers every {args.interval:g} s, gzip; API latency {args.latency_ms:g} ms.\n"
    )
    print(
        "| jobs | every job listed after | RSS steady median | RSS steady max | peak RSS (VmHWM) "
        "| scrape p50 | scrape max | body | non-200 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for jobs in args.jobs:
        run = one_run(jobs, args.minutes, args.scrapers, args.interval, args.latency_ms)
        print(
            f"| {jobs:,} | {fmt_seconds(run.listed_after)} | {mib(percentile(run.rss, 50))} "
            f"| {mib(max(run.rss))} | {mib(run.hwm)} | {fmt_seconds(percentile(run.latencies, 50))} "
            f"| {fmt_seconds(max(run.latencies))} | {run.body / 1e6:.1f} MB | {run.failures} |",
            flush=True,
        )
    print(f"\nLoad average {os.getloadavg()[0]:.1f} after.")


if __name__ == "__main__":
    main()
