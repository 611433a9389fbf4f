"""Size and speed of the status page (``/``) and its JSON twin at 100 to 5,000 jobs.

    python bench/status_page.py [--jobs 100 1000 5000] [--repeat 5]
    python bench/status_page.py --screenshot docs/status-page.png

For each size, a simulator (1,000 jobs a cluster, no rate limit) and an exporter in this process,
warmed up until every job is listed. Then (medians of --repeat):

- server: building the page's data from the known state and rendering the HTML (first page of
  200 rows), and the JSON answer; their sizes, raw and gzipped;
- HTTP: ``GET /`` and ``GET /api/v1/jobs`` over loopback, gzip asked (each includes the short
  collection every load makes);
- browser: headless Chromium (Debian's ``chromium`` with ``chromium-driver``) opening the page:
  DOMContentLoaded, and the script's first refresh from the JSON done (fetch, parse, redraw);
  then a filter by name and a sort by name done in the browser (DOM and layout).

``--screenshot FILE`` instead saves the page of a demo-sized world (three clusters of twelve
jobs, the simulator's stopped third cluster) as the README shows it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from common import REPO, machine_facts, sim_config, table

from cdm_exporter.cli.service import Service
from cdm_exporter.config import CollectionConfig
from cdm_exporter.simulator import Simulator, SimulatorSettings
from cdm_exporter.web.status_data import status_data
from cdm_exporter.web.status_page import View, render_page

sys.path.insert(0, str(REPO / "tests"))
from browser import WebDriver, chromium, wait_for  # the tests' browser helper

JOBS_PER_CLUSTER = 1000
ASSETS = {"css": "/static/status.css", "js": "/static/status.js"}


def median_ms(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def started(
    jobs: int, clusters: int | None = None, time_scale: float = 60.0, *, all_normal: bool = True
) -> tuple[Simulator, Service, str]:
    """A simulator with ``jobs`` jobs and an exporter on it, once every cluster's list was read.
    ``all_normal`` sets every cluster normal (the simulator stops or freezes some, whose jobs
    then cannot be listed)."""
    clusters = clusters or max(1, jobs // JOBS_PER_CLUSTER)
    settings = SimulatorSettings(
        clusters=clusters, jobs=jobs // clusters, rate_limit=0, time_scale=time_scale
    )
    sim = Simulator(settings)
    sim.start("127.0.0.1", 0)
    if all_normal:
        for cluster in sim.world.clusters():
            sim.world.set_cluster_status(cluster.id, "200")
    service = Service(sim_config(sim, CollectionConfig(job_list_interval=15.0)))
    base = service.start("127.0.0.1:0").url()
    deadline = time.monotonic() + 300
    while True:
        data = requests.get(base + "/api/v1/jobs", timeout=60).json()
        listed = [c["job_list_up"] is not None for t in data["targets"] for c in t["clusters"]]
        if len(listed) == clusters and all(listed) and (len(data["jobs"]) == jobs or not all_normal):
            return sim, service, base
        if time.monotonic() > deadline:
            raise TimeoutError(f"the exporter never listed {jobs} jobs")
        time.sleep(0.5)


def browser_figures(browser: WebDriver, base: str, repeat: int) -> tuple[float, float, float, float]:
    """DOMContentLoaded, first refresh done, filter, sort (ms); medians of ``repeat`` loads."""
    loaded, refreshed, filtered, sorted_ = [], [], [], []
    for _ in range(repeat):
        browser.get(base + "/")
        wait_for(
            browser, lambda b: b.execute_script("return document.body.dataset.refreshes"), 120, "refresh"
        )
        marks = browser.execute_script(
            "const nav = performance.getEntriesByType('navigation')[0];"
            "const drawn = performance.getEntriesByName('cdm:refreshed')[0];"
            "return [nav.domContentLoadedEventEnd, drawn.startTime];"
        )
        loaded.append(float(marks[0]))
        refreshed.append(float(marks[1]))
        filtered.append(
            float(
                browser.execute_script(
                    "const form = document.getElementById('filter'); const t0 = performance.now();"
                    "form.elements.q.value = '_1'; form.requestSubmit(); document.body.offsetHeight;"
                    "return performance.now() - t0;"
                )
            )
        )
        sorted_.append(
            float(
                browser.execute_script(
                    "const form = document.getElementById('filter'); const t0 = performance.now();"
                    "form.elements.q.value = ''; form.elements.sort.value = 'name'; form.requestSubmit();"
                    "document.body.offsetHeight; return performance.now() - t0;"
                )
            )
        )
    return tuple(statistics.median(v) for v in (loaded, refreshed, filtered, sorted_))  # type: ignore[return-value]


def kb(size: int) -> str:
    return f"{size / 1000:,.0f} KB" if size >= 10_000 else f"{size / 1000:,.1f} KB"


def measure_one(jobs: int, repeat: int, browser: WebDriver) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(server row, browser row) of the tables for ``jobs`` jobs."""
    sim, service, base = started(jobs)
    try:
        snapshot = service.exporter.snapshot()
        now = time.time()

        def page() -> bytes:
            data = status_data(snapshot, now)
            return render_page(data, View(), telemetry_path="/metrics", assets=ASSETS).encode()

        def body() -> bytes:
            return json.dumps(status_data(snapshot, now), separators=(",", ":")).encode()

        def get(path: str) -> object:
            return requests.get(base + path, headers={"Accept-Encoding": "gzip"}, timeout=60)

        html, data = page(), body()
        server = (
            f"{jobs:,}",
            kb(len(html)),
            kb(len(gzip.compress(html, 6))),
            f"{median_ms(page, repeat):.0f} ms",
            f"{median_ms(lambda: get('/'), repeat):.0f} ms",
            kb(len(data)),
            kb(len(gzip.compress(data, 6))),
            f"{median_ms(body, repeat):.0f} ms",
            f"{median_ms(lambda: get('/api/v1/jobs'), repeat):.0f} ms",
        )
        figures = browser_figures(browser, base, repeat)
        return server, (f"{jobs:,}", *(f"{value:.0f} ms" for value in figures))
    finally:
        service.stop()
        sim.stop()


def measure(jobs_list: list[int], repeat: int) -> None:
    print(machine_facts())
    server_rows, browser_rows = [], []
    with chromium(width=1400, height=1000) as browser:
        for jobs in jobs_list:
            server, client = measure_one(jobs, repeat, browser)
            server_rows.append(server)
            browser_rows.append(client)
    print()
    header = (
        "jobs",
        "page",
        "page gzipped",
        "data + HTML",
        "GET /",
        "JSON",
        "JSON gzipped",
        "data + JSON",
        "GET /api/v1/jobs",
    )
    print(table(header, server_rows))
    print()
    print(
        table(
            ("jobs", "DOMContentLoaded", "first refresh drawn", "filter by name", "sort by name"),
            browser_rows,
        )
    )


def screenshot(path: Path) -> None:
    sim, service, base = started(36, clusters=3, time_scale=1.0, all_normal=False)
    try:
        time.sleep(3)  # a second collection: statuses, counters and last successes fetched
        with chromium(width=1400, height=1250) as browser:
            browser.get(base + "/")
            wait_for(
                browser, lambda b: b.execute_script("return document.body.dataset.refreshes"), 60, "refresh"
            )
            browser.save_screenshot(str(path))
    finally:
        service.stop()
        sim.stop()
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of a demo-sized page here instead")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(args.screenshot)
    else:
        measure(args.jobs, args.repeat)


if __name__ == "__main__":
    main()
