"""The status page at ``/`` and its JSON twin, served by a real exporter on the simulator and looked
at in headless Chromium, with JavaScript on and off: what a person sees (statuses in colour and
words, progress bars as wide as the progress, error summaries with details behind a click, the
filter and the sort), that hostile names stay text, the JSON's shape, and the headers.

The simulator's clock stands still (an hour and a half in the past), so runs do not move while a test
looks at them; it moves only where a test advances it.
"""

from __future__ import annotations

import calendar
import gzip
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bcrypt
import pytest
import requests
from browser import WebDriver, chromium, console_errors, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from sim_targets import sim_target
from tls_certs import make_tls_certs, openssl_available

from cdm_exporter.cli.service import Service
from cdm_exporter.config import CollectionConfig, Config
from cdm_exporter.config.webconfig import load_web_config
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings
from cdm_exporter.web.app import SECURITY_HEADERS
from cdm_exporter.web.status_page import ago

REPO = Path(__file__).resolve().parent.parent
TOKEN = "S3CRET-status-page-token"
HOSTILE_JOB = '<img src=x onerror="window.__pwned=1">'
HOSTILE_CLUSTER = '<b id="injected">bold</b><script>window.__pwned=4</script>'
HOSTILE_SUMMARY = '<script>window.__pwned=2</script> & "quotes"'
HOSTILE_DETAILS = '</pre><img src=y onerror="window.__pwned=3">\n\tat line two'
RUNNING_JOB = "orders_copy"  # RUNNING at a known progress, after one successful run
LIVE_JOB = "ledger_live"  # RUNNING until a test ends its run
FAILED_JOB = "ledger_load"  # its latest run FAILED
CSP = dict(SECURITY_HEADERS)["Content-Security-Policy"]
WAIT = 30.0  # seconds: generous, the machine may be loaded


@dataclass
class World:
    sim: Simulator
    clock: ManualClock
    service: Service
    base: str
    cluster_id: str
    stopped_cluster: str

    def jobs_json(self) -> dict[str, Any]:
        response = requests.get(f"{self.base}/api/v1/jobs", timeout=30)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def job(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [j for j in data["jobs"] if j["name"] == name]
        assert len(found) == 1, (name, [j["name"] for j in data["jobs"]])
        return found[0]


def failed_run_body(name: str, created_ms: int) -> str:
    """A ShowJobStatus answer for ``name``: one FAILED run with hostile error texts."""
    run = {
        "job-name": name,
        "status": "FAILED",
        "submission-id": 7,
        "creation-date": created_ms,
        "last-update-date": created_ms,
        "progress": -1,
        "error-summary": HOSTILE_SUMMARY,
        "error-details": HOSTILE_DETAILS,
    }
    return json.dumps({"submissions": [run]})


def wait_json(world: World, ready: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Ask /api/v1/jobs (each ask is a collection) until ``ready`` holds."""
    deadline = time.monotonic() + WAIT
    while True:
        data = world.jobs_json()
        if ready(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {json.dumps(data)[:3000]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    clock = ManualClock(time.time() - 5400)  # in the past: an hour and a half, less the advances
    settings = SimulatorSettings(clusters=2, jobs=4, rate_limit=0, clock=clock, token=TOKEN, seed=7)
    with Simulator(settings) as sim:
        world_ = sim.world
        cluster_id = world_.clusters()[0].id
        stopped = world_.add_cluster(name="cdm-stopped", status="900", jobs=1).id
        hostile_cluster = world_.add_cluster(name=HOSTILE_CLUSTER, jobs=0).id
        world_.add_job(hostile_cluster, "plain_job_in_hostile_cluster")
        for name in (RUNNING_JOB, LIVE_JOB, FAILED_JOB, HOSTILE_JOB):
            world_.add_job(cluster_id, name)
        world_.start_run(cluster_id, RUNNING_JOB, outcome="SUCCEEDED", duration=60)
        clock.advance(120)
        world_.start_run(cluster_id, RUNNING_JOB, outcome="SUCCEEDED", duration=1000)
        world_.start_run(cluster_id, LIVE_JOB, outcome="SUCCEEDED", duration=1000)
        world_.start_run(cluster_id, FAILED_JOB, outcome="FAILED", duration=100)
        clock.advance(537)
        sim.add_fault(
            Fault(
                endpoint="job_status",
                job_name=HOSTILE_JOB,
                status=200,
                body=failed_run_body(HOSTILE_JOB, int(clock() * 1000)),
                content_type="application/json",
            )
        )
        service = Service(
            Config(targets=(sim_target(sim),), collection=CollectionConfig(job_list_interval=1.0))
        )
        http = service.start("127.0.0.1:0")
        w = World(sim, clock, service, http.url(), cluster_id, stopped)
        try:
            wait_json(
                w,
                lambda d: (
                    w.job(d, RUNNING_JOB)["progress_percent"] is not None
                    and w.job(d, RUNNING_JOB)["last_success_at"] is not None
                    and w.job(d, FAILED_JOB)["error_summary"] is not None
                    and w.job(d, HOSTILE_JOB)["status"] == "FAILED"
                ),
                "the first collections",
            )
            yield w
        finally:
            service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser_off() -> Iterator[WebDriver]:
    with chromium(javascript=False) as driver:
        yield driver


# --- looking at the page ---------------------------------------------------------------------------


def load(browser: WebDriver, url: str, *, javascript: bool = True) -> None:
    """Open ``url``; with JavaScript on, wait until the page's script has refreshed it once."""
    browser.get(url)
    if javascript:
        wait_for(
            browser, lambda b: b.execute_script("return document.body.dataset.refreshes"), WAIT, "refresh"
        )


def rows(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")


def row(browser: WebDriver, name: str) -> WebElement:
    """The job table's row of job ``name`` (compared as text, so any name works)."""
    found = browser.execute_script(
        "return Array.from(document.querySelectorAll('#jobs tbody tr'))"
        ".filter(r => r.querySelector('td.name').textContent === arguments[0])",
        name,
    )
    assert len(found) == 1, f"{len(found)} rows for {name!r}"
    element: WebElement = found[0]
    return element


def names(browser: WebDriver) -> list[str]:
    result: list[str] = browser.execute_script(
        "return Array.from(document.querySelectorAll('#jobs tbody td.name')).map(c => c.textContent)"
    )
    return result


def text_of(element: WebElement) -> str:
    return str(element.get_attribute("textContent"))


def bar_ratio(browser: WebDriver, job_row: WebElement) -> float:
    """How much of its progress bar is filled, from the rendered boxes."""
    widths = browser.execute_script(
        "const bar = arguments[0].querySelector('.bar');"
        "return [bar.querySelector('.fill').getBoundingClientRect().width, bar.clientWidth];",
        job_row,
    )
    fill, whole = float(widths[0]), float(widths[1])
    assert whole > 20, f"the bar is {whole}px wide"
    return fill / whole


def exact_utc(stamp: str) -> str:
    return stamp.replace("T", " ").replace("Z", " UTC")


def epoch(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def check_progress_bar(browser: WebDriver, world: World) -> None:
    run = world.sim.world.job(world.cluster_id, RUNNING_JOB).latest
    assert run is not None and run.status == "RUNNING" and 5 < run.progress < 95, run
    job_row = row(browser, RUNNING_JOB)
    whole = math.floor(run.progress)
    assert job_row.find_element(By.CSS_SELECTOR, ".pct").text == f"{whole}%"
    assert job_row.find_element(By.CSS_SELECTOR, ".bar").get_attribute("aria-valuenow") == str(whole)
    assert bar_ratio(browser, job_row) == pytest.approx(run.progress / 100, abs=0.02)


# --- the tests -------------------------------------------------------------------------------------


def test_what_a_person_sees_statuses_progress_successes_and_errors(world: World, browser: WebDriver) -> None:
    load(browser, world.base + "/")
    data = world.jobs_json()

    # statuses: words and colour
    running = row(browser, RUNNING_JOB)
    failed = row(browser, FAILED_JOB)
    running_status = running.find_element(By.CSS_SELECTOR, ".status")
    failed_status = failed.find_element(By.CSS_SELECTOR, ".status")
    assert running_status.text == "RUNNING" and failed_status.text == "FAILED"
    assert running_status.value_of_css_property("color") != failed_status.value_of_css_property("color")
    assert "s-active" in str(running_status.get_attribute("class"))
    assert "s-failed" in str(failed_status.get_attribute("class"))

    # the progress bar is as wide as the progress; rows and bytes of the run
    check_progress_bar(browser, world)
    run = world.sim.world.job(world.cluster_id, RUNNING_JOB).latest
    assert run is not None and run.rows_written > 0
    rows_cell, bytes_cell = running.find_elements(By.CSS_SELECTOR, "td.num")
    assert rows_cell.text == f"{run.rows_written:,}"
    assert rows_cell.get_attribute("title") == f"read {run.rows_read:,}, written {run.rows_written:,}"
    assert bytes_cell.get_attribute("title") == (
        f"read {run.bytes_read:,} bytes, written {run.bytes_written:,} bytes"
    )
    assert re.fullmatch(r"\d+\.\d (KiB|MiB|GiB)", bytes_cell.text), bytes_cell.text

    # last success: relative, the exact UTC time on hover
    history = world.sim.world.history(world.cluster_id, RUNNING_JOB)
    success = next(r for r in history.runs if r.status == "SUCCEEDED")
    stamp = world.job(data, RUNNING_JOB)["last_success_at"]
    assert stamp == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(success.end or 0))
    shown = running.find_elements(By.TAG_NAME, "time")[0]
    assert shown.get_attribute("title") == exact_utc(stamp)
    generated = str(browser.find_element(By.CSS_SELECTOR, "#freshness time").get_attribute("datetime"))
    assert shown.text == ago(epoch(generated) - epoch(stamp))
    assert shown.text == "1 h ago"  # for the next half hour
    refreshed = running.find_elements(By.TAG_NAME, "time")[1]
    assert re.fullmatch(r"\d+ s ago", refreshed.text), refreshed.text

    # the error summary, and its details behind a click
    expected = world.sim.world.job(world.cluster_id, FAILED_JOB).latest
    assert expected is not None and expected.error_summary and expected.error_details
    summary = failed.find_element(By.CSS_SELECTOR, "td.error summary")
    assert text_of(summary) == expected.error_summary
    details = failed.find_element(By.CSS_SELECTOR, "td.error details")
    pre = details.find_element(By.TAG_NAME, "pre")
    assert details.get_property("open") is False and not pre.is_displayed()
    summary.click()
    assert details.get_property("open") is True and pre.is_displayed()
    assert text_of(pre) == expected.error_details

    # counts per status, the clusters, and the problems in words
    counts = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "#counts a")]
    assert counts == [f"all {len(data['jobs'])}", *(f"{s} {n}" for s, n in data["counts"].items())]
    assert counts[1].startswith("FAILED ")  # what needs a look comes first
    problems = browser.find_element(By.ID, "problems").text
    assert "The status of cluster cdm-stopped (target sim) is stopped, not normal." in problems
    assert "The job list of cluster cdm-stopped (target sim) cannot be read" in problems
    stopped = browser.execute_script(
        "return Array.from(document.querySelectorAll('#targets tr.cluster'))"
        ".find(r => r.textContent.includes(arguments[0])).innerText",
        world.stopped_cluster,
    )
    assert "stopped" in stopped and "FAILING" in stopped

    # the page's links still lead to the metrics, the probe and the health checks
    hrefs = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "nav.links a")]
    for path in ("/metrics", "/probe?target=sim", "/api/v1/jobs", "/-/healthy", "/-/ready"):
        assert world.base + path in hrefs, (path, hrefs)
    assert console_errors(browser) == []  # no CSP violation, no script error, no missing file


def test_filter_sort_and_refresh_without_a_reload(world: World, browser: WebDriver) -> None:
    load(browser, world.base + "/")
    browser.execute_script("window.__same_page = true")
    data = world.jobs_json()

    box = browser.find_element(By.CSS_SELECTOR, "#filter input[name=q]")
    box.send_keys("LEDGER")
    wanted = sorted(j["name"] for j in data["jobs"] if "ledger" in j["name"].lower())
    wait_for(browser, lambda b: sorted(names(b)) == wanted, WAIT, f"only {wanted} listed")
    assert "q=LEDGER" in browser.current_url
    box.clear()
    box.send_keys(" ")  # an input event: the filter is cleared
    wait_for(browser, lambda b: len(rows(b)) == len(data["jobs"]), WAIT, "every job listed again")

    browser.find_element(By.CSS_SELECTOR, "#counts a.s-failed").click()
    failed = [j["name"] for j in data["jobs"] if j["status"] == "FAILED"]
    wait_for(browser, lambda b: sorted(names(b)) == sorted(failed), WAIT, "only FAILED jobs")
    statuses = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody .status")}
    assert statuses == {"FAILED"}
    assert "status=FAILED" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, "#counts a.s-all").click()

    heading = browser.find_element(By.CSS_SELECTOR, "#jobs thead a[data-sort=name]")
    heading.click()
    everyone = [j["name"] for j in data["jobs"]]
    wait_for(browser, lambda b: names(b) == sorted(everyone, key=str.lower), WAIT, "names ascending")
    browser.find_element(By.CSS_SELECTOR, "#jobs thead a[data-sort=name]").click()
    wait_for(
        browser, lambda b: names(b) == sorted(everyone, key=str.lower, reverse=True), WAIT, "names descending"
    )
    assert "sort=-name" in browser.current_url

    # the world changes; the page follows from its JSON twin, with no reload
    world.sim.world.finish_run(world.cluster_id, LIVE_JOB, "FAILED")

    def live_job_failed(b: WebDriver) -> bool:
        b.execute_script("document.dispatchEvent(new Event('visibilitychange'))")  # refresh now
        time.sleep(0.3)
        status = row(b, LIVE_JOB).find_element(By.CSS_SELECTOR, ".status").text
        return status == "FAILED"

    wait_for(browser, live_job_failed, WAIT, f"{LIVE_JOB} shown FAILED")
    assert browser.execute_script("return window.__same_page") is True
    assert console_errors(browser) == []


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_hostile_names_and_error_texts_stay_text(
    world: World, browser: WebDriver, browser_off: WebDriver, javascript: bool
) -> None:
    driver = browser if javascript else browser_off
    load(driver, world.base + "/", javascript=javascript)
    assert driver.execute_script("return window.__pwned === undefined")
    injected = driver.execute_script(
        "return document.querySelectorAll('main img, main script, b#injected, [onerror]').length"
    )
    assert injected == 0
    hostile = row(driver, HOSTILE_JOB)
    assert hostile.find_element(By.CSS_SELECTOR, ".status").text == "FAILED"
    assert text_of(hostile.find_element(By.CSS_SELECTOR, "td.error summary")) == HOSTILE_SUMMARY
    assert text_of(hostile.find_element(By.CSS_SELECTOR, "td.error pre")) == HOSTILE_DETAILS
    cluster_cells = driver.execute_script(
        "return Array.from(document.querySelectorAll('#jobs td.cluster, #targets td.indent'))"
        ".filter(c => c.textContent.includes(arguments[0])).length",
        HOSTILE_CLUSTER,
    )
    assert cluster_cells == 2  # its one job's row and its row in the clusters table
    assert driver.title.startswith("cdm-exporter: ")


def test_without_javascript_the_server_filters_sorts_and_draws_the_bars(
    world: World, browser_off: WebDriver
) -> None:
    browser_off.get(world.base + "/")
    assert browser_off.find_element(By.ID, "live").text == "Reload the page for newer data."
    assert browser_off.execute_script("return document.body.dataset.refreshes") is None  # no script ran
    check_progress_bar(browser_off, world)
    data = world.jobs_json()

    Select(browser_off.find_element(By.CSS_SELECTOR, "#filter select[name=status]")).select_by_value("FAILED")
    browser_off.find_element(By.CSS_SELECTOR, "#filter input[name=q]").send_keys("ledger")
    browser_off.find_element(By.CSS_SELECTOR, "#filter button").click()
    wait_for(browser_off, lambda b: "status=FAILED" in b.current_url, WAIT, "the form's GET")
    wanted = [j["name"] for j in data["jobs"] if j["status"] == "FAILED" and "ledger" in j["name"]]
    assert sorted(names(browser_off)) == sorted(wanted) and wanted

    browser_off.get(world.base + "/")
    browser_off.find_element(By.CSS_SELECTOR, "#jobs thead a[data-sort=name]").click()
    wait_for(browser_off, lambda b: "sort=name" in b.current_url, WAIT, "the sort link")
    assert names(browser_off) == sorted((j["name"] for j in data["jobs"]), key=str.lower)

    details = row(browser_off, FAILED_JOB).find_element(By.CSS_SELECTOR, "details")
    details.find_element(By.TAG_NAME, "summary").click()
    assert details.get_property("open") is True


@pytest.fixture(scope="module")
def many_jobs() -> Iterator[str]:
    """An exporter on 450 jobs in one cluster: three pages of the job table."""
    with Simulator(SimulatorSettings(clusters=1, jobs=450, rate_limit=0, time_scale=60)) as sim:
        service = Service(Config(targets=(sim_target(sim),)))
        http = service.start("127.0.0.1:0")
        try:
            deadline = time.monotonic() + WAIT
            while len(requests.get(http.url("/api/v1/jobs"), timeout=30).json()["jobs"]) < 450:
                assert time.monotonic() < deadline, "the 450 jobs were never listed"
                time.sleep(0.2)
            yield http.url()
        finally:
            service.stop()


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_pages_of_200_jobs(
    many_jobs: str, browser: WebDriver, browser_off: WebDriver, javascript: bool
) -> None:
    driver = browser if javascript else browser_off
    load(driver, many_jobs + "/?sort=name", javascript=javascript)
    driver.execute_script("window.__same_page = true")
    assert driver.find_element(By.ID, "shown").text == "Jobs 1\u2013200 of 450."
    first_page = names(driver)
    assert len(first_page) == 200 and first_page == sorted(first_page, key=str.lower)
    driver.find_element(By.CSS_SELECTOR, "#pager a[rel=next]").click()
    wait_for(
        driver, lambda b: b.find_element(By.ID, "shown").text == "Jobs 201\u2013400 of 450.", WAIT, "page 2"
    )
    second_page = names(driver)
    assert len(second_page) == 200 and second_page[0].lower() > first_page[-1].lower()
    assert "page=2" in driver.current_url
    # with the script, pages turn in place; without it, each page is a new one from the server
    assert driver.execute_script("return window.__same_page === true") is javascript
    load(driver, many_jobs + "/?sort=name&page=99", javascript=javascript)
    assert driver.find_element(By.ID, "shown").text == "Jobs 401\u2013450 of 450."
    assert driver.find_element(By.CSS_SELECTOR, "#pager span").text == "page 3 of 3"


def test_json_twin_has_the_documented_shape_and_no_secret(world: World) -> None:
    response = requests.get(f"{world.base}/api/v1/jobs", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    data = response.json()
    assert TOKEN not in response.text
    readme = (REPO / "README.md").read_text()
    documented = readme[readme.index("### The status page") :]
    shapes = {
        "": (data, {"exporter_version", "generated_at", "counts", "problems", "targets", "jobs"}),
        "targets[]": (
            data["targets"][0],
            {"name", "project_id", "region", "up", "error", "throttled_at", "budget_remaining", "clusters"},
        ),
        "clusters[]": (
            data["targets"][0]["clusters"][0],
            {"id", "name", "status", "job_list_up", "job_list_error", "jobs"},
        ),
        "jobs[]": (
            data["jobs"][0],
            {
                "target", "cluster_id", "cluster_name", "name", "type", "status", "status_group",
                "progress_percent", "submission_id", "rows_read", "rows_written", "bytes_read",
                "bytes_written", "last_success_at", "refreshed_at", "error_summary", "error_details",
            },
        ),
        "problems[]": (data["problems"][0], {"severity", "target", "cluster_id", "message", "detail"}),
    }  # fmt: skip
    for where, (record, keys) in shapes.items():
        assert set(record) == keys, where
        for key in keys:
            assert f"`{key}`" in documented or f"`{key}[]`" in documented, f"README lacks {where}.{key}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["generated_at"])
    assert sum(data["counts"].values()) == len(data["jobs"])
    running = world.job(data, RUNNING_JOB)
    assert running["status_group"] == "active" and 5 < running["progress_percent"] < 95
    assert {p["severity"] for p in data["problems"]} <= {"error", "warning", "info"}

    one = requests.get(f"{world.base}/api/v1/jobs", params={"target": "sim"}, timeout=30).json()
    assert [t["name"] for t in one["targets"]] == ["sim"] and len(one["jobs"]) == len(data["jobs"])
    unknown = requests.get(f"{world.base}/api/v1/jobs", params={"target": "nope"}, timeout=30)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown target 'nope'; configured targets: sim"}

    zipped = requests.get(
        f"{world.base}/api/v1/jobs", headers={"Accept-Encoding": "gzip"}, timeout=30, stream=True
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(zipped.raw.read()))["targets"][0]["name"] == "sim"


def test_headers_methods_and_files(world: World) -> None:
    for path in ("/", "/api/v1/jobs", "/static/status.js", "/static/status.css", "/metrics", "/nope"):
        response = requests.get(world.base + path, timeout=30)
        assert response.headers["Content-Security-Policy"] == CSP, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
    assert CSP == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    page = requests.get(world.base + "/", timeout=30)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from elsewhere
    script = requests.get(world.base + "/static/status.js", timeout=30)
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "innerHTML" not in script.text and "eval(" not in script.text
    assert requests.get(world.base + "/static/nope.js", timeout=30).status_code == 404

    # a HEAD of what is built from the known state builds nothing: no collection, no rendering,
    # so no Content-Length; the other headers are GET's
    collections = world.service.exporter.collections
    for path in ("/", "/api/v1/jobs"):
        head = requests.head(world.base + path, headers={"Accept-Encoding": "gzip"}, timeout=30)
        got = requests.get(world.base + path, headers={"Accept-Encoding": "gzip"}, timeout=30)
        assert head.status_code == 200 and head.content == b"", path
        assert "Content-Length" not in head.headers, path
        for name in ("Content-Type", "Content-Encoding", "Vary", "Cache-Control", "Content-Security-Policy"):
            assert head.headers[name] == got.headers[name], (path, name)
    assert world.service.exporter.collections == collections + 2  # the two GETs only
    static = requests.head(world.base + "/static/status.css", timeout=30)
    assert static.content == b"" and int(static.headers["Content-Length"]) > 1000  # built anyway
    post = requests.post(world.base + "/", timeout=30)
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"


WEB_USER, WEB_PASSWORD = "operator", "S3CRET-web-password"


def test_basic_auth_and_tls_guard_the_page_its_data_and_its_files(tmp_path: Path, browser: WebDriver) -> None:
    digest = bcrypt.hashpw(WEB_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    users = f"basic_auth_users:\n  {WEB_USER}: '{digest}'\n"
    paths = ("/", "/?status=FAILED", "/api/v1/jobs", "/static/status.js", "/static/status.css")
    with Simulator(SimulatorSettings(clusters=1, jobs=3, rate_limit=0)) as sim:
        (tmp_path / "web.yml").write_text(users)
        service = Service(
            Config(targets=(sim_target(sim),)), web_config=load_web_config(tmp_path / "web.yml")
        )
        http = service.start("127.0.0.1:0")
        try:
            for path in paths:
                refused = requests.get(http.url(path), timeout=30)
                assert refused.status_code == 401 and "sim" not in refused.text, path
                assert requests.get(http.url(path), auth=(WEB_USER, WEB_PASSWORD), timeout=30).ok, path
            # a person who gave the password once: the page's own requests carry it too
            load(browser, f"http://{WEB_USER}:{quote(WEB_PASSWORD)}@127.0.0.1:{http.port}/")
            assert browser.find_element(By.ID, "live").text.startswith("Updates itself every")
            assert len(rows(browser)) == 3
            assert console_errors(browser) == []
        finally:
            service.stop()
        if not openssl_available():
            pytest.fail("needs the openssl binary (Debian package openssl) for the TLS half", pytrace=False)
        certs = make_tls_certs(tmp_path)
        tls = f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
        (tmp_path / "web-tls.yml").write_text(tls + users)
        service = Service(
            Config(targets=(sim_target(sim),)), web_config=load_web_config(tmp_path / "web-tls.yml")
        )
        https = service.start("127.0.0.1:0")
        try:
            assert https.url().startswith("https://")
            for path in paths:
                url, ca = https.url(path), str(certs.ca_cert)
                assert requests.get(url, verify=ca, timeout=30).status_code == 401, path
                assert requests.get(url, verify=ca, auth=(WEB_USER, WEB_PASSWORD), timeout=30).ok, path
        finally:
            service.stop()


def test_a_machine_without_the_browser_fails_the_test_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import browser as browser_module

    monkeypatch.setattr(browser_module, "CHROMIUM_BIN", tmp_path / "chromium")
    with pytest.raises(pytest.fail.Exception) as failure:
        browser_module.require_browser()
    message = str(failure.value)
    assert str(tmp_path / "chromium") in message
    assert "apt-get install -y --no-install-recommends chromium chromium-driver" in message
