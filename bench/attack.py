"""The exporter attacked, on 127.0.0.1 only: auth floods, connection floods, slowloris, a huge job
list, reload storms, a hanging target, HEAD, ``gzip;q=0`` and 70,000-character names.

    python bench/attack.py [--rows auth,idle,slowloris,tls,bigpage,reload,hang,quick]
                           [--seconds 20] [--server builtin|cheroot|waitress|gunicorn]

The simulator runs in this process; each row starts its own ``cdm-exporter serve`` (a subprocess,
so its threads, RSS and CPU are its own) and stops it. Every loop is bounded in count and time;
nothing but 127.0.0.1 is contacted. Rows:

* ``auth``: 256 clients send wrong basic-auth passwords (a new one each time, so no cache helps)
  to an exporter whose user has a cost-12 bcrypt hash, for ``--seconds``; meanwhile one scraper
  with the right password scrapes every second and a prober asks ``/-/healthy`` twice a second.
* ``idle``: 2,000 TCP connections opened and left idle for ``--seconds``; scrapes during, then
  right after all 2,000 are closed at once; the exporter's threads and RSS.
* ``slowloris``: a request head sent one byte a second; how long the exporter keeps it (40 s max).
* ``tls``: 200 connections to a TLS listener that never send a ClientHello; scrapes over TLS
  meanwhile (the exporter-toolkit web config, client certificates required).
* ``bigpage``: a job list page holding 50,000 jobs (page size asked: 100), which the paging rule
  refuses (the cluster's list fails); three concurrent OpenMetrics + gzip scrapes once the
  exporter reports it; each one's time and the exporter's peak RSS.
* ``reload``: the config file alternates between two ``collection`` settings while ``/-/reload``
  and SIGHUP fire every 0.5 s and 5 scrapers scrape, for 75 s (more than a rolling minute); the
  most job-status calls in any rolling minute (budget 100), tracebacks in the log, slow scrapes.
* ``hang``: 80 scrapes of a hanging target announcing a 300 s timeout (the bench waits 30 s at
  most for each); another target's ``/probe`` every 0.5 s meanwhile.
* ``quick``: ``HEAD /metrics`` body bytes, ``Accept-Encoding: gzip;q=0``, and the longest label
  value with a 70,000-character job and cluster name.

``--server`` serves the same WSGI app with another server for the connection rows (idle,
slowloris, tls): ``cheroot`` (16 threads), ``waitress`` (16 threads, no TLS), ``gunicorn`` (one
gthread worker, 16 threads); they need ``pip install .[bench]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
from common import (
    REPO,
    Child,
    fmt_seconds,
    free_port,
    machine_facts,
    percentile,
    proc_sample,
    table,
)

from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings

PASSWORD = "right-password"
ROWS = ("auth", "idle", "slowloris", "tls", "bigpage", "reload", "hang", "quick")
TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


# --- processes --------------------------------------------------------------------------------------


def target_yaml(sim: Simulator, name: str = "sim") -> str:
    s = sim.settings
    return (
        f"  - name: {name}\n    region: {s.region}\n    project_id: '{s.project_id}'\n"
        f"    endpoint: {sim.url}\n    iam_endpoint: {sim.url}\n    auth:\n      token: {s.token}\n"
    )


def config_yaml(targets: list[tuple[Simulator, str]], collection: str = "") -> str:
    text = "targets:\n" + "".join(target_yaml(sim, name) for sim, name in targets)
    return text + (f"collection:\n{collection}" if collection else "")


#: serves ExporterApp with another server: argv = server, port, config file, web config file or ""
_OTHER_SERVER = """
import sys
from cdm_exporter.config import load_config
from cdm_exporter.config.webconfig import load_web_config
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.web.app import ExporterApp
import os
server, port, config_file, web_file = os.environ["ATTACK_SERVER"].split("|")
web = load_web_config(web_file) if web_file else None
exporter = Exporter(load_config(config_file, {}))
app = ExporterApp(exporter, web_config=web)
if __name__ == "__main__":
    if server == "cheroot":
        from cheroot import wsgi
        httpd = wsgi.Server(("127.0.0.1", int(port)), app, numthreads=16)
        if web is not None and web.tls is not None:
            from cheroot.ssl.builtin import BuiltinSSLAdapter
            adapter = BuiltinSSLAdapter(str(web.tls.cert_file), str(web.tls.key_file))
            adapter.context = web.ssl_context()
            httpd.ssl_adapter = adapter
        httpd.start()
    elif server == "waitress":
        import waitress
        waitress.serve(app, host="127.0.0.1", port=int(port), threads=16, _quiet=True)
"""


@contextlib.contextmanager
def exporter(
    workdir: Path, config: str, *, web: str | None = None, server: str = "builtin", scheme: str = "http"
) -> Iterator[Child]:
    """``cdm-exporter serve`` (or another server with the same app) on a free port."""
    config_file = workdir / "config.yml"
    config_file.write_text(config)
    config_file.chmod(0o600)
    web_file = workdir / "web.yml"
    if web is not None:
        web_file.write_text(web)
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if server == "builtin":
        command = [sys.executable, "-m", "cdm_exporter", "serve", "--config.file", str(config_file)]
        command += ["--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"]
        if web is not None:
            command += ["--web.config.file", str(web_file)]
    else:
        (workdir / "attack_app.py").write_text(_OTHER_SERVER)
        env["ATTACK_SERVER"] = "|".join((server, str(port), str(config_file), str(web_file) if web else ""))
        env["PYTHONPATH"] = str(workdir) + os.pathsep + env["PYTHONPATH"]
        if server == "gunicorn":
            command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "16", "-w", "1"]
            command += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", "--chdir", str(workdir)]
            if web is not None and "tls_server_config" in web:
                command += [
                    "--certfile",
                    str(workdir / "server.pem"),
                    "--keyfile",
                    str(workdir / "server.key"),
                ]
                command += ["--ca-certs", str(workdir / "ca.pem"), "--cert-reqs", "2"]
            command += ["attack_app:app"]
        else:
            command = [sys.executable, str(workdir / "attack_app.py")]
    log = workdir / "exporter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(REPO)
        )
    child = Child("exporter", proc, f"{scheme}://127.0.0.1:{port}", log)
    try:
        wait_listening(port, 30.0, proc)
        yield child
    finally:
        child.stop()


def wait_listening(port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError("exporter did not listen")


# --- HTTP helpers -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no answer (error or timeout)
    elapsed: float
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def get(
    url: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    method: str = "GET",
    context: ssl.SSLContext | None = None,
) -> Answer:
    host_port = url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    started = time.monotonic()
    conn: http.client.HTTPConnection
    if url.startswith("https"):
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return Answer(response.status, time.monotonic() - started, body, dict(response.getheaders()))
    except (OSError, http.client.HTTPException):
        return Answer(0, time.monotonic() - started)
    finally:
        conn.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def timed_loop(until: float, every: float, action: Callable[[], Answer], out: list[Answer]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        out.append(action())
        time.sleep(max(0.0, every - (time.monotonic() - started)))


def latency(answers: list[Answer]) -> str:
    ok = [a.elapsed for a in answers]
    bad = sum(1 for a in answers if a.status != 200)
    return f"{fmt_seconds(percentile(ok, 50))} / {fmt_seconds(max(ok, default=float('nan')))}" + (
        f" ({bad} of {len(answers)} not 200)" if bad else ""
    )


class Sampler:
    """Samples the exporter's threads and RSS every 0.2 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads = 0
        self.rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, KeyError):
                sample = proc_sample(self.pid)
                self.threads = max(self.threads, sample.threads)
                self.rss = max(self.rss, sample.rss_bytes)
            self._stop.wait(0.2)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def mib(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"


# --- rows -------------------------------------------------------------------------------------------


Row = tuple[str, str, str]  # probe, what was measured, figures


def row_auth(workdir: Path, sim: Simulator, seconds: float) -> list[Row]:
    digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode()
    web = f"basic_auth_users:\n  prometheus: '{digest}'\n"
    with exporter(workdir, config_yaml([(sim, "sim")]), web=web) as child:
        good = {"Authorization": basic("prometheus", PASSWORD), TIMEOUT_HEADER: "10"}
        wait_ok(lambda: get(child.url, "/metrics", headers=good).status == 200, 30)
        stop = time.monotonic() + seconds
        flood: list[int] = []
        lock = threading.Lock()

        def flooder() -> None:
            while time.monotonic() < stop:
                wrong = {"Authorization": basic("prometheus", secrets.token_hex(8))}
                answer = get(child.url, "/metrics", headers=wrong, timeout=30)
                with lock:
                    flood.append(answer.status)

        # the scraper and the prober run in a process of their own: the flood's 256 threads would
        # otherwise hold the GIL they need to time anything
        prober = subprocess.Popen(
            [sys.executable, "-c", _PROBER, child.url, str(seconds), good["Authorization"]],
            stdout=subprocess.PIPE,
            env=dict(
                os.environ, PYTHONPATH=str(REPO / "bench") + os.pathsep + os.environ.get("PYTHONPATH", "")
            ),
        )
        threads = [threading.Thread(target=flooder, daemon=True) for _ in range(256)]
        cpu0, wall0 = proc_sample(child.pid).cpu_seconds, time.monotonic()
        with Sampler(child.pid) as sampler:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(seconds + 70)
        cpu = (proc_sample(child.pid).cpu_seconds - cpu0) / (time.monotonic() - wall0)
        out, _ = prober.communicate(timeout=seconds + 130)
        measured = json.loads(out)
        scrapes = [Answer(status, elapsed) for status, elapsed in measured["scrapes"]]
        health = [Answer(status, elapsed) for status, elapsed in measured["health"]]
    codes = {code: flood.count(code) for code in sorted(set(flood))}
    return [
        (
            "256 clients, wrong basic-auth passwords (cost 12)",
            "flood answers; authenticated scrape p50 / max; /-/healthy p50 / max; exporter",
            f"{len(flood) / seconds:.0f} req/s {codes}; scrape {latency(scrapes)}; "
            f"healthy {latency(health)}; {sampler.threads} threads, {cpu:.2f} cores",
        )
    ]


#: argv: exporter URL, seconds, Authorization header; prints the answers' (status, elapsed) as JSON
_PROBER = """
import json, sys, threading, time
from attack import get, timed_loop
url, seconds, authorization = sys.argv[1], float(sys.argv[2]), sys.argv[3]
until = time.monotonic() + seconds
headers = {"Authorization": authorization, "X-Prometheus-Scrape-Timeout-Seconds": "10"}
scrapes, health = [], []
def scrape():
    return get(url, "/metrics", headers=headers, timeout=60)
def healthy():
    return get(url, "/-/healthy", timeout=60)
threads = [
    threading.Thread(target=timed_loop, args=(until, 1.0, scrape, scrapes)),
    threading.Thread(target=timed_loop, args=(until, 0.5, healthy, health)),
]
for t in threads:
    t.start()
for t in threads:
    t.join()
found = {"scrapes": scrapes, "health": health}
print(json.dumps({k: [(a.status, a.elapsed) for a in v] for k, v in found.items()}))
"""


def wait_ok(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError("the exporter never answered as expected")


def scrape_answers(url: str, count: int, context: ssl.SSLContext | None = None) -> list[Answer]:
    """``count`` scrapes, each given 30 s; after two failures the rest are not tried."""
    answers: list[Answer] = []
    for _ in range(count):
        answers.append(get(url, "/metrics", headers={TIMEOUT_HEADER: "10"}, timeout=30, context=context))
        if sum(1 for a in answers if a.status != 200) >= 2:
            break
    return answers


def row_idle(workdir: Path, sim: Simulator, seconds: float, server: str) -> list[Row]:
    with exporter(workdir, config_yaml([(sim, "sim")]), server=server) as child:
        wait_ok(lambda: get(child.url, "/metrics").status == 200, 30)
        port = int(child.url.rsplit(":", 1)[1])
        rss0 = proc_sample(child.pid).rss_bytes
        sockets: list[socket.socket] = []
        with Sampler(child.pid) as sampler:
            opening = time.monotonic() + 30  # a server that stops accepting: stop trying after 30 s
            for _ in range(2000):
                if time.monotonic() > opening:
                    break
                with contextlib.suppress(OSError):
                    sockets.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            time.sleep(1.0)
            during = scrape_answers(child.url, 5)
            time.sleep(max(0.0, seconds - 1.0))
            for sock in sockets:
                sock.close()
            after = scrape_answers(child.url, 5)
    return [
        (
            f"{len(sockets):,} idle TCP connections ({server})",
            "exporter threads max, RSS; scrape p50 / max during; right after closing them all",
            f"{sampler.threads} threads, RSS {mib(rss0)} -> {mib(sampler.rss)}; during {latency(during)}; "
            f"after {latency(after)}",
        )
    ]


def row_slowloris(workdir: Path, sim: Simulator, server: str) -> list[Row]:
    with exporter(workdir, config_yaml([(sim, "sim")]), server=server) as child:
        port = int(child.url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        started = time.monotonic()
        held = None
        head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        for byte in head:
            try:
                sock.send(bytes([byte]))
                sock.settimeout(1.0)
                if sock.recv(1) == b"":
                    held = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            except OSError:
                held = time.monotonic() - started
                break
            if time.monotonic() - started > 40:
                break
        sock.close()
    figure = f"closed after {held:.1f} s" if held is not None else "still open after 40 s"
    return [(f"slowloris, one header byte a second ({server})", "how long the request head is held", figure)]


def row_tls(workdir: Path, sim: Simulator, server: str) -> list[Row]:
    if server == "waitress":
        return [("200 silent TLS handshakes (waitress)", "", "waitress has no TLS")]
    certs = make_certs(workdir)
    web = (
        f"tls_server_config:\n  cert_file: {certs['server.pem']}\n  key_file: {certs['server.key']}\n"
        f"  client_ca_file: {certs['ca.pem']}\n  client_auth_type: RequireAndVerifyClientCert\n"
    )
    context = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    context.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    with exporter(workdir, config_yaml([(sim, "sim")]), web=web, server=server, scheme="https") as child:
        wait_ok(lambda: get(child.url, "/metrics", context=context).status == 200, 30)
        port = int(child.url.rsplit(":", 1)[1])
        before = scrape_answers(child.url, 3, context)
        silent: list[socket.socket] = []
        with Sampler(child.pid) as sampler:
            for _ in range(200):
                with contextlib.suppress(OSError):
                    silent.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(0.5)
            during = scrape_answers(child.url, 5, context)
        for sock in silent:
            sock.close()
    return [
        (
            f"200 connections that never start TLS, mutual TLS ({server})",
            "scrape p50 / max before; during; exporter threads",
            f"before {latency(before)}; during {latency(during)}; {sampler.threads} threads",
        )
    ]


def make_certs(workdir: Path) -> dict[str, Path]:
    sys.path.insert(0, str(REPO / "tests"))
    from tls_certs import make_tls_certs  # type: ignore[import-not-found, unused-ignore]

    (workdir / "tls").mkdir(exist_ok=True)
    certs = make_tls_certs(workdir / "tls")
    paths = {
        "ca.pem": certs.ca_cert,
        "server.pem": certs.server_cert,
        "server.key": certs.server_key,
        "client.pem": certs.client_cert,
        "client.key": certs.client_key,
    }
    for name, path in paths.items():  # where the gunicorn command line looks for them
        (workdir / name).write_bytes(path.read_bytes())
    return paths


def row_bigpage(workdir: Path) -> list[Row]:
    with Simulator(SimulatorSettings(clusters=1, jobs=1, rate_limit=0)) as sim:
        jobs = [
            {
                "name": f"job-{i:05d}",
                "job_type": "NORMAL_JOB",
                "status": "SUCCEEDED",
                "creation-user": "someone",
                "from-connector-name": "generic-jdbc-connector",
                "to-connector-name": "hive-connector",
            }
            for i in range(50_000)
        ]
        body = json.dumps({"total": 100, "jobs": jobs, "page_no": 1, "page_size": 100})
        sim.add_fault(Fault(endpoint="list_jobs", status=200, body=body, content_type="application/json"))
        collection = "  job_list_interval: 3600s\n  budget_per_minute: {job_status: 1, common: 100}\n"
        with exporter(workdir, config_yaml([(sim, "sim")], collection)) as child:
            # the page is more than was asked for: the list fails, and cdm_cluster_up says so
            wait_ok(
                lambda: (
                    b"\ncdm_cluster_up{"
                    in get(child.url, "/metrics", headers={TIMEOUT_HEADER: "60"}, timeout=120).body
                ),
                180,
            )
            headers = {
                TIMEOUT_HEADER: "30",
                "Accept": "application/openmetrics-text; version=1.0.0",
                "Accept-Encoding": "gzip",
            }
            alone = get(child.url, "/metrics", headers=headers, timeout=120)
            answers: list[Answer] = []
            rss0 = proc_sample(child.pid).rss_bytes
            with Sampler(child.pid) as sampler:
                threads = [
                    threading.Thread(
                        target=lambda: answers.append(
                            get(child.url, "/metrics", headers=headers, timeout=120)
                        )
                    )
                    for _ in range(3)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(150)
    times = " / ".join(fmt_seconds(a.elapsed) for a in answers)
    return [
        (
            "a job list page of 50,000 jobs (refused); 3 concurrent OpenMetrics + gzip scrapes",
            "one scrape alone; each of the 3; exporter RSS before -> peak",
            f"alone {fmt_seconds(alone.elapsed)} ({len(alone.body) / 2**20:.1f} MiB gzip); "
            f"concurrent {times}; RSS {mib(rss0)} -> {mib(sampler.rss)}",
        )
    ]


def row_reload(workdir: Path, seconds: float = 75.0) -> list[Row]:
    with Simulator(SimulatorSettings(clusters=2, jobs=250, rate_limit=0, latency_ms=20)) as sim:
        variants = [
            config_yaml([(sim, "sim")], "  discovery_interval: 0s\n  concurrency: 4\n"),
            config_yaml([(sim, "sim")], "  discovery_interval: 30s\n  concurrency: 8\n"),
        ]
        with exporter(workdir, variants[0]) as child:
            wait_ok(lambda: get(child.url, "/metrics").status == 200, 30)
            stop = time.monotonic() + seconds
            scrapes: list[Answer] = []
            lock = threading.Lock()

            def scraper() -> None:
                while time.monotonic() < stop:
                    answer = get(child.url, "/metrics", headers={TIMEOUT_HEADER: "5"}, timeout=60)
                    with lock:
                        scrapes.append(answer)

            threads = [threading.Thread(target=scraper) for _ in range(5)]
            for thread in threads:
                thread.start()
            reloads = 0
            while time.monotonic() < stop:
                (workdir / "config.yml").write_text(variants[reloads % 2])
                if reloads % 2:
                    child.proc.send_signal(signal.SIGHUP)
                else:
                    get(child.url, "/-/reload", method="POST", timeout=30)
                reloads += 1
                time.sleep(0.5)
            for thread in threads:
                thread.join(70)
            log = child.log.read_text(errors="replace")
        times = [r.time for r in sim.stats.log if r.endpoint == "job_status"]
    worst = max((sum(1 for t in times if start <= t < start + 60) for start in times), default=0)
    slow = sum(1 for s in scrapes if s.status != 200 or s.elapsed > 5.0)
    return [
        (
            f"config alternating, {reloads} reloads (/-/reload and SIGHUP) in {seconds:.0f} s, 5 scrapers",
            "job-status calls in the worst rolling minute (budget 100); tracebacks; scrapes late or failed",
            f"{worst} calls; {log.count('Traceback')} tracebacks "
            f"({log.count('cannot schedule new futures')} 'cannot schedule'); "
            f"{slow} of {len(scrapes)} scrapes late or failed; "
            f"scrape max {fmt_seconds(max(s.elapsed for s in scrapes))}",
        )
    ]


def row_hang(workdir: Path, seconds: float) -> list[Row]:
    with (
        Simulator(SimulatorSettings(clusters=1, jobs=10, rate_limit=0)) as healthy,
        Simulator(SimulatorSettings(clusters=1, jobs=10, rate_limit=0, project_id="f" * 32)) as hanging,
    ):
        config = config_yaml([(healthy, "healthy"), (hanging, "hanging")], "  discovery_interval: 0s\n")
        with exporter(workdir, config) as child:
            wait_ok(lambda: get(child.url, "/metrics").status == 200, 30)
            before = [
                get(child.url, "/probe?target=healthy", headers={TIMEOUT_HEADER: "10"}) for _ in range(5)
            ]
            hanging.add_fault(Fault(endpoint="list_clusters", kind="hang"))
            stuck: list[Answer] = []
            threads = [
                threading.Thread(
                    target=lambda: stuck.append(
                        get(child.url, "/probe?target=hanging", headers={TIMEOUT_HEADER: "300"}, timeout=30)
                    ),
                    daemon=True,
                )
                for _ in range(80)
            ]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            probes: list[Answer] = []
            timed_loop(
                time.monotonic() + seconds,
                0.5,
                lambda: get(child.url, "/probe?target=healthy", headers={TIMEOUT_HEADER: "10"}, timeout=30),
                probes,
            )
            for thread in threads:
                thread.join(40)
            with Sampler(child.pid) as sampler:
                time.sleep(0.5)
    answered = sum(1 for a in stuck if a.status == 200)
    return [
        (
            "80 scrapes of a hanging target announcing 300 s",
            "healthy /probe p50 / max before; during; hanging scrapes answered within 30 s",
            f"before {latency(before)}; during {latency(probes)}; {answered} of 80 answered; "
            f"{sampler.threads} threads after",
        )
    ]


def row_quick(workdir: Path) -> list[Row]:
    with Simulator(SimulatorSettings(clusters=1, jobs=5, rate_limit=0)) as sim:
        cluster = sim.world.add_cluster(name="c" * 70_000, status="200", jobs=0)
        sim.world.add_job(cluster.id, "j" * 70_000)
        with exporter(workdir, config_yaml([(sim, "sim")])) as child:
            wait_ok(lambda: b"jjjjjjjj" in get(child.url, "/metrics").body, 60)
            port = int(child.url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := sock.recv(65536):
                        data += chunk
            head_body = len(data.partition(b"\r\n\r\n")[2])
            refused = get(child.url, "/metrics", headers={"Accept-Encoding": "gzip;q=0"})
            text = get(child.url, "/metrics").body.decode()
    longest = max(len(v) for v in _label_values(text))
    return [
        ("HEAD /metrics", "body bytes", f"{head_body:,}"),
        (
            "Accept-Encoding: gzip;q=0",
            "Content-Encoding",
            refused.headers.get("Content-Encoding", "none (identity)"),
        ),
        ("job and cluster names of 70,000 characters", "longest label value", f"{longest:,} characters"),
    ]


def _label_values(text: str) -> Iterator[str]:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield from sample.labels.values()


# --- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the auth, idle and hang rows")
    parser.add_argument("--server", default="builtin", choices=("builtin", "cheroot", "waitress", "gunicorn"))
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; use {','.join(ROWS)}")
    if args.server != "builtin" and set(rows) - {"idle", "slowloris", "tls"}:
        parser.error("--server applies to the idle, slowloris and tls rows only")
    print(f"# bench/attack.py on {machine_facts()}, server {args.server}\n")
    found: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cdm-attack-") as tmp:
        workdir = Path(tmp)
        with Simulator(SimulatorSettings(clusters=2, jobs=50, rate_limit=0, latency_ms=20)) as sim:
            for row in rows:
                started = time.monotonic()
                if row == "auth":
                    found += row_auth(workdir, sim, args.seconds)
                elif row == "idle":
                    found += row_idle(workdir, sim, args.seconds, args.server)
                elif row == "slowloris":
                    found += row_slowloris(workdir, sim, args.server)
                elif row == "tls":
                    found += row_tls(workdir, sim, args.server)
                elif row == "bigpage":
                    found += row_bigpage(workdir)
                elif row == "reload":
                    found += row_reload(workdir)
                elif row == "hang":
                    found += row_hang(workdir, args.seconds)
                elif row == "quick":
                    found += row_quick(workdir)
                print(
                    f"{row}: {time.monotonic() - started:.0f} s: {found[-1][2]}", file=sys.stderr, flush=True
                )
    print(table(["probe", "measured", "figures"], [list(r) for r in found], "lll"))


if __name__ == "__main__":
    main()
