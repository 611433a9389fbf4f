"""``Simulator``: a fake Huawei Cloud CDM + IAM account on local ports.

Start it, point a client at ``sim.url`` (both the primary project's CDM paths and IAM's
``/v3/auth/tokens`` and ``/v3/auth/projects`` live there), and inspect or change what it does
through ``sim.world``, ``sim.stats`` and ``sim.add_fault``.  With ``extra_projects`` or
``regions_without_cdm`` in its settings, every other region is served on a port of its own
(``sim.region_url(region)``; IAM answers there too), and ``sim.projects`` adds, disables and
removes projects at run time.  It serves in background threads; ``stop()`` (or leaving the
``with`` block) closes everything, including connections stuck in injected hangs.
"""

from __future__ import annotations

import functools
import ssl
import threading
from types import TracebackType

from cdm_exporter.simulator.app import SimulatorApp
from cdm_exporter.simulator.auth import TokenStore
from cdm_exporter.simulator.components import Components
from cdm_exporter.simulator.faults import ActiveFault, Fault, FaultSet
from cdm_exporter.simulator.projects import Projects
from cdm_exporter.simulator.server import SimulatorHTTPServer
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.stats import SimulatorStats
from cdm_exporter.simulator.world import World


class Simulator:
    """A running (or ready-to-run) simulated CDM endpoint. See the package docstring."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings if settings is not None else SimulatorSettings()
        self._parts = Components.create(self.settings)
        self._app = SimulatorApp(self._parts, lambda: self.url, self.settings.region, self.region_url)
        self._stop_event = threading.Event()
        self._stop_requested = threading.Event()
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        # the other regions: region -> (server, its thread, its URL)
        self._regions: dict[str, tuple[SimulatorHTTPServer, threading.Thread, str]] = {}
        self._lock = threading.Lock()

    # --- the parts --------------------------------------------------------------------------

    @property
    def world(self) -> World:
        return self._parts.world

    @property
    def stats(self) -> SimulatorStats:
        return self._parts.stats

    @property
    def faults(self) -> FaultSet:
        return self._parts.faults

    @property
    def tokens(self) -> TokenStore:
        return self._parts.tokens

    @property
    def projects(self) -> Projects:
        """The account's IAM projects, each with its world (``projects.world(project_id)``)."""
        return self._parts.projects

    def region_url(self, region: str) -> str:
        """``http(s)://HOST:PORT`` of the CDM endpoint of ``region`` (``url`` for the primary one)."""
        if region == self.settings.region:
            return self.url
        served = self._regions.get(region)
        if served is None:
            raise KeyError(
                f"region {region!r} is not served (served: {', '.join(self._parts.projects.regions)})"
            )
        return served[2]

    def add_fault(self, fault: Fault) -> int:
        """Inject a fault; returns its id (for :meth:`remove_fault`)."""
        return self._parts.faults.add(fault)

    def remove_fault(self, fault_id: int) -> bool:
        return self._parts.faults.remove(fault_id)

    def clear_faults(self) -> None:
        self._parts.faults.clear()

    def active_faults(self) -> list[ActiveFault]:
        return self._parts.faults.active()

    def revoke_tokens(self) -> int:
        """Invalidate every IAM-issued token (clients must get a new one after their 401)."""
        return self._parts.tokens.revoke_all()

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http(s)://HOST:PORT`` of the running server."""
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and serve in background threads; returns once the socket is listening."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the simulator is already started")
            if self._stop_event.is_set():
                raise RuntimeError("a stopped simulator cannot be started again")
            context: ssl.SSLContext | None = None
            if self.settings.certfile is not None and self.settings.keyfile is not None:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(self.settings.certfile, self.settings.keyfile)
            server, thread, self._url = self._serve(self._app, host, port, context)
            self._server, self._thread = server, thread
            for region in self._parts.projects.regions[1:]:
                app = SimulatorApp(
                    self._parts, functools.partial(self.region_url, region), region, self.region_url
                )
                self._regions[region] = self._serve(app, host, 0, context)

    def _serve(
        self, app: SimulatorApp, host: str, port: int, context: ssl.SSLContext | None
    ) -> tuple[SimulatorHTTPServer, threading.Thread, str]:
        server = SimulatorHTTPServer((host, port), app, self._stop_event, context)
        bound_port = server.server_address[1]
        url_host = host
        if host in ("", "0.0.0.0"):  # noqa: S104 - only for the URL shown to clients
            url_host = "127.0.0.1"
        elif host == "::":
            url_host = "::1"
        if ":" in url_host:
            url_host = f"[{url_host}]"
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="cdm-simulator"
        )
        thread.start()
        return server, thread, f"{'https' if context else 'http'}://{url_host}:{bound_port}"

    def stop(self) -> None:
        """Stop serving: close the socket and all connections, end hanging handlers. Idempotent."""
        with self._lock:
            self._stop_event.set()
            self._stop_requested.set()
            server, thread = self._server, self._thread
            self._server = None
            self._thread = None
            regions = list(self._regions.values())
        if server is None or thread is None:
            return
        for each, its_thread in [(server, thread), *((r[0], r[1]) for r in regions)]:
            each.shutdown()
            each.close_connections()
            each.server_close()
            each.join_workers(timeout=5.0)
            its_thread.join(timeout=5.0)

    def request_stop(self) -> None:
        """Ask :meth:`run_forever` to stop; safe to call from a signal handler."""
        self._stop_requested.set()

    def run_forever(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start (unless started) and block until :meth:`request_stop` or :meth:`stop`."""
        if self._server is None:
            self.start(host, port)
        try:
            while not self._stop_requested.wait(0.5):
                pass
        finally:
            self.stop()

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
