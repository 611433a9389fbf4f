"""The exporter's HTTP surface, served for real on 127.0.0.1 against the simulator."""

from __future__ import annotations

import gzip
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import requests
import yaml
from exporter_stack import LATE, TIMEOUT_HEADER, scrape, wait_until
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import promtool_check_metrics, require_prometheus_tools
from sim_targets import sim_target

from cdm_exporter.cli.service import Service
from cdm_exporter.config import CollectionConfig, Config, Secret, TargetConfig, TokenAuthConfig, load_config
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings
from cdm_exporter.web.app import MAX_SCRAPE_SECONDS, MIN_SCRAPE_SECONDS, ExporterApp, accepts_gzip


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorSettings(clusters=2, jobs=6, rate_limit=0, time_scale=60)) as simulator:
        yield simulator


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[Service, str]]]:
    started: list[Service] = []

    def start(config: Config, **kwargs: object) -> tuple[Service, str]:
        service = Service(config, **kwargs)  # type: ignore[arg-type]
        http = service.start("127.0.0.1:0")
        started.append(service)
        return service, http.url()

    yield start
    for service in started:
        service.stop()


def wait_ready(base: str, timeout: float = 30.0) -> None:
    wait_until(
        lambda: requests.get(f"{base}/-/ready", timeout=5).status_code == 200,
        timeout,
        "exporter never became ready",
    )


def test_metrics_landing_health_and_readiness(
    sim: Simulator, serve: Callable[..., tuple[Service, str]]
) -> None:
    _, base = serve(Config(targets=(sim_target(sim),)))
    assert requests.get(f"{base}/-/healthy", timeout=5).text == "Healthy\n"
    wait_ready(base)
    response = requests.get(f"{base}/metrics", timeout=15)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert value(response.text, "cdm_up", project_id=sim.settings.project_id, region=sim.settings.region) == 1
    assert "process_resident_memory_bytes" in response.text
    landing = requests.get(base + "/", timeout=5)
    assert landing.status_code == 200 and "text/html" in landing.headers["Content-Type"]
    assert 'href="/metrics"' in landing.text and 'href="/probe?target=sim"' in landing.text
    assert sim.settings.token not in landing.text
    assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    assert requests.post(f"{base}/metrics", timeout=5).status_code == 405


def test_not_ready_while_no_target_can_authenticate(
    sim: Simulator, serve: Callable[..., tuple[Service, str]]
) -> None:
    service, base = serve(Config(targets=(sim_target(sim, auth=TokenAuthConfig(Secret("wrong-token"))),)))
    requests.get(f"{base}/metrics", timeout=15)
    ready = requests.get(f"{base}/-/ready", timeout=5)
    assert ready.status_code == 503
    assert "authentication failed" in ready.text
    assert requests.get(f"{base}/-/healthy", timeout=5).status_code == 200
    assert service.exporter.ready()[0] is False


def test_scrape_output_passes_promtool(sim: Simulator, serve: Callable[..., tuple[Service, str]]) -> None:
    require_prometheus_tools()
    _, base = serve(Config(targets=(sim_target(sim),)))
    wait_ready(base)
    text = requests.get(f"{base}/metrics", timeout=15).text
    ok, output = promtool_check_metrics(text)
    assert ok, output
    assert output.strip() == "", output  # not even a lint warning


def test_openmetrics_and_gzip_when_asked(sim: Simulator, serve: Callable[..., tuple[Service, str]]) -> None:
    _, base = serve(Config(targets=(sim_target(sim),)))
    wait_ready(base)
    om = requests.get(
        f"{base}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=15
    )
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    raw = requests.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=15, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(raw.raw.read())
    assert b"cdm_job_status{" in body


def test_probe_serves_one_target_and_refuses_unknown_ones(
    sim: Simulator, serve: Callable[..., tuple[Service, str]]
) -> None:
    with Simulator(SimulatorSettings(project_id="f" * 32, clusters=1, jobs=2, rate_limit=0)) as other:
        config = Config(targets=(sim_target(sim, "a"), sim_target(other, "b")))
        _, base = serve(config)
        wait_ready(base)
        both = requests.get(f"{base}/metrics", timeout=15).text
        only_b = requests.get(f"{base}/probe", params={"target": "b"}, timeout=15)
    assert only_b.status_code == 200
    assert value(both, "cdm_up", project_id=sim.settings.project_id, region=sim.settings.region) == 1
    assert value(both, "cdm_up", project_id="f" * 32, region=other.settings.region) == 1
    assert value(only_b.text, "cdm_up", project_id="f" * 32, region=other.settings.region) == 1
    assert (
        value(only_b.text, "cdm_up", project_id=sim.settings.project_id, region=sim.settings.region) is None
    )
    assert "process_resident_memory_bytes" not in only_b.text
    unknown = requests.get(f"{base}/probe", params={"target": "c"}, timeout=5)
    assert unknown.status_code == 400
    assert "unknown target 'c'" in unknown.text and "a, b" in unknown.text
    assert requests.get(f"{base}/probe", timeout=5).status_code == 400


#: how long the slow calls of these tests wait, and their read and default scrape timeouts: an
#: answer after LATE (well before this) shows that none of them was waited for
LONG = 60.0


def test_a_short_scrape_timeout_is_answered_in_time(
    sim: Simulator, serve: Callable[..., tuple[Service, str]]
) -> None:
    """Status calls that take a minute are cut at the deadline of a 1.5 s scrape; what is known
    is served. (``test_the_announced_timeout_less_the_offset_is_the_deadline`` pins the deadline.)"""
    collection = CollectionConfig(job_list_interval=0.0, read_timeout=LONG, default_scrape_timeout=LONG)
    _, base = serve(Config(targets=(sim_target(sim),), collection=collection))
    wait_ready(base)
    sim.add_fault(Fault(endpoint="job_status", kind="delay", delay=LONG))
    response = scrape(f"{base}/metrics", 1.5)
    assert response.status == 200
    assert response.elapsed < LATE, f"answered after {response.elapsed:.2f} s: it waited for the API"
    # what is known is still served
    assert value(response.body, "cdm_up", project_id=sim.settings.project_id, region=sim.settings.region) == 1
    assert "cdm_job_status{" in response.body


class _RecordingExporter(Exporter):
    """Records the timeout of each collection instead of collecting."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.timeouts: list[float] = []

    def collect(self, timeout: float, targets: Sequence[str] | None = None) -> None:
        self.timeouts.append(timeout)


@pytest.mark.parametrize(
    ("announced", "deadline"),
    [
        ("1.5", 1.0),
        ("30", 29.5),
        (None, 9.5),  # no header: default_scrape_timeout
        ("soon", 9.5),  # unreadable: as if none
        ("0.2", MIN_SCRAPE_SECONDS),
        ("100000", MAX_SCRAPE_SECONDS),
    ],
)
def test_the_announced_timeout_less_the_offset_is_the_deadline(
    announced: str | None, deadline: float
) -> None:
    """The deadline of a collection to the millisecond, which no timing of a real scrape can
    show on a loaded machine: defaults 10 s and 0.5 s offset."""
    target = TargetConfig(
        name="t",
        region="cn-north-4",
        project_id="0123456789abcdef0123456789abcdef",
        endpoint="http://127.0.0.1:9",
        iam_endpoint="http://127.0.0.1:9",
        auth=TokenAuthConfig(Secret("token")),
    )
    exporter = _RecordingExporter(Config(targets=(target,)))
    environ: dict[str, Any] = {"PATH_INFO": "/metrics"}
    if announced is not None:
        environ["HTTP_" + TIMEOUT_HEADER.upper().replace("-", "_")] = announced
    setup_testing_defaults(environ)
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Any:
        statuses.append(status)

    try:
        ExporterApp(exporter, process_metrics=False)(environ, start_response)
    finally:
        exporter.close()
    assert statuses == ["200 OK"]
    assert exporter.timeouts == [pytest.approx(deadline)]


def test_five_concurrent_scrapes_share_one_collection(
    sim: Simulator, serve: Callable[..., tuple[Service, str]]
) -> None:
    """Four scrapes arriving while a first one's collection waits for a 5 s cluster list join it."""
    service, base = serve(
        Config(targets=(sim_target(sim),), collection=CollectionConfig(discovery_interval=0.0))
    )
    wait_ready(base)
    # the warm-up collection must be over, or the scrapes join it
    wait_until(lambda: service.exporter.collections >= 1, LATE, "the warm-up collection never ended")
    sim.add_fault(Fault(endpoint="list_clusters", kind="delay", delay=5.0))
    before = sim.stats.count("list_clusters")
    codes: list[int] = []

    def one_scrape() -> None:
        codes.append(requests.get(f"{base}/metrics", timeout=30).status_code)

    threads = [threading.Thread(target=one_scrape) for _ in range(5)]
    threads[0].start()
    # the first scrape leads: its cluster list is under way for 5 s; the other four join it
    wait_until(lambda: sim.stats.count("list_clusters") > before, LATE, "the first scrape never collected")
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(40)
    assert codes == [200] * 5
    # discovery_interval 0 makes every collection list clusters: one call means one collection
    assert sim.stats.count("list_clusters") - before == 1


def test_reload_keeps_the_old_config_when_the_new_one_is_bad(
    sim: Simulator, serve: Callable[..., tuple[Service, str]], tmp_path: Path
) -> None:
    path = tmp_path / "config.yml"

    def write(targets: list[dict[str, object]]) -> None:
        path.write_text(yaml.safe_dump({"targets": targets}))

    def target(name: str) -> dict[str, object]:
        return {
            "name": name,
            "region": sim.settings.region,
            "project_id": sim.settings.project_id,
            "endpoint": sim.url,
            "iam_endpoint": sim.url,
            "auth": {"token": sim.settings.token},
        }

    write([target("one")])
    service, base = serve(load_config(path, {}), config_file=str(path))
    write([target("one"), {**target("two"), "project_id": sim.settings.project_id.upper()}])
    good = requests.post(f"{base}/-/reload", timeout=5)
    assert good.status_code == 200, good.text
    assert service.exporter.target_names == ["one", "two"]
    write([{**target("three"), "regoin": "typo"}])
    bad = requests.post(f"{base}/-/reload", timeout=5)
    assert bad.status_code == 500
    assert "regoin" in bad.text and "kept" in bad.text
    assert service.exporter.target_names == ["one", "two"]
    assert requests.get(f"{base}/-/reload", timeout=5).status_code == 405


def test_head_answers_headers_only_and_spends_no_api_call(
    sim: Simulator, serve: Callable[..., tuple[Service, str]]
) -> None:
    service, base = serve(
        Config(targets=(sim_target(sim),), collection=CollectionConfig(discovery_interval=0))
    )
    wait_ready(base)
    wait_until(lambda: service.exporter.collections >= 1, 30, "the warm-up collection never ended")
    collections = service.exporter.collections
    for path in ("/metrics", "/probe?target=sim"):
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10) as sock:
            sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/plain; version=0.0.4" in head, head
        assert body == b"", body[:100]
    assert service.exporter.collections == collections  # no collection, so no API call
    assert requests.head(f"{base}/probe?target=nope", timeout=5).status_code == 400


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("identity", False),
        ("*", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_gzip_only_when_accepted_with_a_q_value_above_0(accept_encoding: str, gzipped: bool) -> None:
    assert accepts_gzip(accept_encoding) is gzipped


def test_gzip_q_0_is_honoured_over_http(sim: Simulator, serve: Callable[..., tuple[Service, str]]) -> None:
    _, base = serve(Config(targets=(sim_target(sim),)))
    wait_ready(base)
    raw = requests.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip;q=0"}, timeout=15, stream=True)
    assert "Content-Encoding" not in raw.headers
    assert raw.raw.read().startswith(b"# HELP")


def test_the_announced_scrape_timeout_is_capped(sim: Simulator) -> None:
    exporter = Exporter(Config(targets=(sim_target(sim),)))
    try:
        app = ExporterApp(exporter, process_metrics=False)
        offset = CollectionConfig().scrape_timeout_offset
        announced: dict[str, Any] = {"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "300"}
        assert app._scrape_timeout(announced) == MAX_SCRAPE_SECONDS == 60.0
        announced["HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"] = "10"
        assert app._scrape_timeout(announced) == 10.0 - offset
    finally:
        exporter.close()


def test_readiness_names_no_target_to_an_anonymous_caller(
    sim: Simulator, serve: Callable[..., tuple[Service, str]]
) -> None:
    config = Config(targets=(sim_target(sim, "secret-name", auth=TokenAuthConfig(Secret("wrong-token"))),))
    _, base = serve(config)
    requests.get(f"{base}/metrics", timeout=15)
    ready = requests.get(f"{base}/-/ready", timeout=5)
    assert ready.status_code == 503
    assert "1 target(s) failing authentication" in ready.text
    assert "secret-name" not in ready.text


def test_reloads_storming_while_scrapes_run_break_nothing(
    serve: Callable[..., tuple[Service, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The config file alternates between two collection settings while /-/reload, SIGHUP's handler
    and direct reloads fire and scrapes run: no error logged, every scrape in time. The API answers
    in 50 ms, so reloads land while collections are under way."""
    sim = Simulator(SimulatorSettings(clusters=2, jobs=20, rate_limit=0, latency_ms=50))
    sim.start("127.0.0.1", 0)
    path = tmp_path / "config.yml"
    target = {
        "name": "sim",
        "region": sim.settings.region,
        "project_id": sim.settings.project_id,
        "endpoint": sim.url,
        "iam_endpoint": sim.url,
        "auth": {"token": sim.settings.token},
    }
    variants = [
        {"targets": [target], "collection": {"discovery_interval": "0s", "job_list_interval": "0s"}},
        {"targets": [target], "collection": {"discovery_interval": "1s", "job_list_interval": "1s"}},
    ]
    path.write_text(yaml.safe_dump(variants[0]))
    service, base = serve(load_config(path, {}), config_file=str(path))
    wait_ready(base)
    caplog.set_level(logging.WARNING)
    stop = threading.Event()
    scrapes: list[tuple[int, float]] = []

    def scraper() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                result = scrape(f"{base}/metrics", 2.0, session=session)
                scrapes.append((result.status, result.elapsed))

    threads = [threading.Thread(target=scraper) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(24):
            path.write_text(yaml.safe_dump(variants[round_ % 2]))
            if round_ % 3 == 0:
                assert requests.post(f"{base}/-/reload", timeout=30).status_code == 200
            elif round_ % 3 == 1:
                service._on_hup(signal.SIGHUP, None)
            else:
                assert service.reload()[0]
            done = len(scrapes)  # the next reload comes once a scrape ended since this one
            wait_until(lambda: len(scrapes) > done, LATE, "no scrape ended after a reload")  # noqa: B023
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        sim.stop()
    assert scrapes and all(status == 200 for status, _ in scrapes)
    slowest = max(elapsed for _, elapsed in scrapes)
    assert slowest < LATE, f"a scrape took {slowest:.2f} s against its 2 s timeout"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
