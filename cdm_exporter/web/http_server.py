"""A threaded WSGI server on the standard library, with optional TLS.

The TLS handshake runs in the request's own thread, not in the accept loop, so a client that
connects and never speaks cannot stall other scrapes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

#: seconds a client has to finish the TLS handshake and send its request
CLIENT_TIMEOUT = 30.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ThreadedWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog of 5 drops connections when many scrapers arrive at
    # once, and a dropped SYN costs the client a retransmission (1 s, then 3 s, ...)
    request_queue_size = 128
    ssl_context: ssl.SSLContext | None = None

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(CLIENT_TIMEOUT)
            if self.ssl_context is not None:
                request = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as error:
            log.debug("TLS handshake with %s failed: %s", client_address, error)
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error serving %s", client_address, exc_info=True)


class _IPv6Server(ThreadedWSGIServer):
    address_family = socket.AF_INET6


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT`` to (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 0.0.0.0:9792 or :9792)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - ':PORT' means every interface, as in Go exporters


class HTTPServer:
    """Serve ``app`` on ``address`` in a background thread until ``stop()``."""

    def __init__(self, app: WSGIApplication, address: str, ssl_context: ssl.SSLContext | None = None) -> None:
        host, port = parse_listen_address(address)
        server_class = _IPv6Server if ":" in host else ThreadedWSGIServer
        self._server = server_class((host, port), _QuietHandler)
        self._server.ssl_context = ssl_context
        self._server.set_app(app)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self.scheme = "https" if ssl_context is not None else "http"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def url(self, path: str = "") -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):  # noqa: S104
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
