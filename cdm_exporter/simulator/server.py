"""The HTTP layer: a threading ``http.server`` that carries out response plans.

One thread per connection, HTTP/1.1 keep-alive, optional TLS (the handshake happens in the
connection's thread so a slow client cannot stall ``accept``).  Besides answering normally it
can misbehave on purpose (see ``exchange.Plan``): hang until stopped, trickle a body, stream a
huge one, or abort mid-body with a TCP RST (``SO_LINGER`` 0).

Stopping closes the listening socket, shuts down every open connection and wakes every
sleeping or hanging handler, so ``stop()`` returns promptly even with clients mid-request.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from cdm_exporter.simulator.exchange import Plan, Request

log = logging.getLogger("cdm_exporter.simulator")

_FILL_CHUNK = b"x" * 65536
MAX_REQUEST_BODY = 1024 * 1024


class Application(Protocol):
    """What the HTTP layer serves: the simulated API, or a recording played back."""

    def handle(self, req: Request) -> Plan: ...


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops SYNs under a burst of concurrent clients,
    # which then wait a full second to retry.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: Application,
        stop_event: threading.Event,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.app = app
        self.stop_event = stop_event
        self.ssl_context = ssl_context
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every response.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._work, args=(request, client_address), daemon=True, name="cdm-sim-connection"
        )
        with self._lock:
            self._connections.add(request)
            self._workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.discard(request)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-response is routine here (timeouts, injected resets).
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def join_workers(self, timeout: float) -> None:
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cdm-simulator"
    sys_version = ""
    server: SimulatorHTTPServer

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.settimeout(10.0)
                self.connection.do_handshake()
                self.connection.settimeout(None)
            except (OSError, ssl.SSLError):
                log.debug("TLS handshake with %s failed", self.client_address, exc_info=True)
                return
        super().handle()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BODY:
            self.send_error(400, "bad Content-Length")
            return
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        plan = self.server.app.handle(Request(self.command, self.path, headers, body))
        try:
            self._execute(plan)
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            self.close_connection = True

    def _execute(self, plan: Plan) -> None:
        stop = self.server.stop_event
        if plan.delay > 0 and stop.wait(plan.delay):
            self.close_connection = True
            return
        if plan.action == "hang":
            stop.wait()
            self.close_connection = True
            return
        if plan.action == "close":
            self.close_connection = True
            return
        self.send_response(plan.status)
        self.send_header("Content-Type", plan.content_type)
        self.send_header("Content-Length", str(plan.content_length))
        for name, value in plan.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if plan.action == "respond":
            self.wfile.write(plan.body)
        elif plan.action == "stream":
            self.wfile.write(plan.stream_prefix)
            left = plan.stream_fill
            while left > 0 and not stop.is_set():
                chunk = _FILL_CHUNK[: min(left, len(_FILL_CHUNK))]
                self.wfile.write(chunk)
                left -= len(chunk)
            self.wfile.write(plan.stream_suffix)
        elif plan.action == "trickle":
            for i in range(0, len(plan.body), plan.chunk_size):
                self.wfile.write(plan.body[i : i + plan.chunk_size])
                self.wfile.flush()
                if stop.wait(plan.interval):
                    self.close_connection = True
                    return
        elif plan.action == "reset":
            self.wfile.write(plan.body[: plan.reset_after])
            self.wfile.flush()
            self._abort()

    def _abort(self) -> None:
        """Close with RST instead of FIN: the client sees 'connection reset by peer'."""
        self.close_connection = True
        conn = self.connection
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
