"""The lifecycle of one local HTTP(S) endpoint serving an :class:`Application`.

Shared by :class:`~cdm_exporter.simulator.simulator.Simulator` (the simulated API) and
:class:`~cdm_exporter.simulator.replay.ReplayServer` (a recording played back): start on a port,
serve in background threads, stop promptly (closing connections stuck in injected hangs).
"""

from __future__ import annotations

import ssl
import threading
from types import TracebackType
from typing import Self

from cdm_exporter.simulator.server import Application, SimulatorHTTPServer


class HttpService:
    """A running (or ready-to-run) endpoint; ``certfile``/``keyfile`` make it HTTPS."""

    def __init__(self, app: Application, certfile: str | None = None, keyfile: str | None = None) -> None:
        self._app = app
        self._certfile = certfile
        self._keyfile = keyfile
        self._stop_event = threading.Event()
        self._stop_requested = threading.Event()
        self._server: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """``http(s)://HOST:PORT`` of the running server."""
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and serve in background threads; returns once the socket is listening."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the server is already started")
            if self._stop_event.is_set():
                raise RuntimeError("a stopped server cannot be started again")
            context: ssl.SSLContext | None = None
            if self._certfile is not None and self._keyfile is not None:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(self._certfile, self._keyfile)
            server = SimulatorHTTPServer((host, port), self._app, self._stop_event, context)
            bound_port = server.server_address[1]
            url_host = host
            if host in ("", "0.0.0.0"):  # noqa: S104 - only for the URL shown to clients
                url_host = "127.0.0.1"
            elif host == "::":
                url_host = "::1"
            if ":" in url_host:
                url_host = f"[{url_host}]"
            self._url = f"{'https' if context else 'http'}://{url_host}:{bound_port}"
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="cdm-simulator"
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving: close the socket and all connections, end hanging handlers. Idempotent."""
        with self._lock:
            self._stop_event.set()
            self._stop_requested.set()
            server, thread = self._server, self._thread
            self._server = None
            self._thread = None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        server.join_workers(timeout=5.0)
        if thread is not None:
            thread.join(timeout=5.0)

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

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
