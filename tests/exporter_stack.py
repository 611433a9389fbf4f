"""The exporter in-process behind a real HTTP server, scraped over HTTP, and resource probes.

Shared by ``test_faults``, ``test_security`` and ``test_bad_input``:

* :class:`Exposition` parses a scrape and answers ``value("cdm_up", project_id=...)``;
* :func:`scrape` GETs a metrics URL the way Prometheus does (timeout header) and times it;
  :data:`LATE` bounds how long a scrape that cut what it had to cut may take on a loaded machine;
* :class:`ExporterServer` is one long-lived HTTP server whose exporter can be swapped per test,
  so a test module pays for one server shutdown instead of one per case;
* :class:`MonoClock` is a monotonic clock that can jump ahead (budgets refill, a 429 pause ends)
  without anybody sleeping;
* :func:`exporter_threads` and :func:`exporter_sockets` count this process' threads and sockets
  minus the simulator's own (:func:`simulator_threads`; an injected hang keeps a simulator thread
  and its socket until the simulator stops: that is the fake server's cost, not the exporter's).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests
from prometheus_client.parser import text_string_to_metric_families

from cdm_exporter.polling.targets import Exporter
from cdm_exporter.web.app import ExporterApp
from cdm_exporter.web.http_server import HTTPServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
#: names of the simulator's threads (``cdm_exporter.simulator.server`` and ``simulator``)
SIMULATOR_THREADS = frozenset({"cdm-simulator", "cdm-sim-connection"})

Labels = frozenset[tuple[str, str]]

#: Seconds after which a scrape answer is late: it waited for something it should have cut. A scrape
#: whose exporter gives up at its deadline (1-2 s in these tests) can still answer several seconds
#: after it on a loaded 2-core machine (up to 8 s seen), so deadlines are never asserted to the
#: second; the faults they cut last much longer than this (a hang until the simulator stops, a
#: delay or read timeout of 60 s, a trickled body of 700 bytes or more at 20 bytes/s).
LATE = 15.0


@dataclass(frozen=True)
class Exposition:
    """A parsed Prometheus text exposition."""

    text: str
    samples: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def select(self, name: str, **labels: str) -> dict[Labels, float]:
        """Every sample of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return {lab: v for (n, lab), v in self.samples.items() if n == name and wanted <= lab}

    def total(self, name: str, **labels: str) -> float:
        return sum(self.select(name, **labels).values())


@dataclass(frozen=True)
class Scrape:
    status: int
    elapsed: float
    body: str

    @property
    def exposition(self) -> Exposition:
        return Exposition.parse(self.body)


def scrape(
    url: str,
    timeout: float = 1.5,
    *,
    session: requests.Session | None = None,
    verify: bool | str = True,
    auth: tuple[str, str] | None = None,
) -> Scrape:
    """GET ``url`` announcing ``timeout`` as Prometheus does; the client waits a lot longer (until
    well past :data:`LATE`) so that a late answer is measured rather than cut off."""
    headers = {TIMEOUT_HEADER: f"{timeout:g}"}
    started = time.monotonic()
    patience = timeout + 2 * LATE
    try:
        response = (session or requests).get(url, headers=headers, timeout=patience, verify=verify, auth=auth)
    except requests.Timeout as error:
        raise AssertionError(f"no answer after {patience:g} s to a {timeout:g} s scrape") from error
    return Scrape(response.status_code, time.monotonic() - started, response.text)


class MonoClock:
    """``time.monotonic()`` plus an offset that only grows; give it to ``Exporter(mono=...)``."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        with self._lock:
            self._offset += seconds


class _Switch:
    """A WSGI app that forwards to the currently mounted one (503 while none is)."""

    def __init__(self) -> None:
        self.app: ExporterApp | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        app = self.app
        if app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"no exporter mounted\n"]
        return list(app(environ, start_response))


class ExporterServer:
    """One HTTP server on 127.0.0.1 serving whichever exporter is mounted."""

    def __init__(self) -> None:
        self._switch = _Switch()
        self.http = HTTPServer(self._switch, "127.0.0.1:0")
        self.http.start()
        self._session = requests.Session()
        self.exporter: Exporter | None = None

    def mount(self, exporter: Exporter | None, *, process_metrics: bool = False) -> None:
        """Serve ``exporter`` from now on (None: nothing); the previous one is closed."""
        previous = self.exporter
        self.exporter = exporter
        self._switch.app = (
            None if exporter is None else ExporterApp(exporter, process_metrics=process_metrics)
        )
        if previous is not None and previous is not exporter:
            previous.close()

    def scrape(self, timeout: float = 1.5, path: str = "/metrics") -> Scrape:
        return scrape(self.http.url(path), timeout, session=self._session)

    def close(self) -> None:
        self.mount(None)
        self._session.close()
        self.http.stop()


# --- resource probes -------------------------------------------------------------------------------


def simulator_threads() -> set[threading.Thread]:
    """The simulators' live threads: server loops and connection handlers."""
    return {t for t in threading.enumerate() if t.name in SIMULATOR_THREADS}


def exporter_threads() -> int:
    """Live threads of this process, the simulator's excepted."""
    return sum(1 for t in threading.enumerate() if t.name not in SIMULATOR_THREADS)


def _tcp_local_ports() -> dict[int, int]:
    """Socket inode -> local TCP port, from ``/proc/self/net/tcp`` and ``tcp6``."""
    ports: dict[int, int] = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, inode = fields[1], int(fields[9])
            ports[inode] = int(local.rsplit(":", 1)[1], 16)
    return ports


def exporter_sockets(simulator_ports: Iterable[int] = ()) -> int:
    """Open sockets of this process (``/proc/self/fd``), without the server side of the
    simulators' connections (their local port is a simulator's port)."""
    excluded = set(simulator_ports)
    ports = _tcp_local_ports() if excluded else {}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listdir fd itself, for one)
            continue
        if not target.startswith("socket:["):
            continue
        if ports.get(int(target[len("socket:[") : -1])) in excluded:
            continue
        count += 1
    return count


def wait_until(check: Callable[[], object], timeout: float, message: str) -> None:
    """Poll ``check()`` until it is true or ``timeout`` seconds passed (then fail with ``message``)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)
