"""The exporter's HTTP/1.1 server: one event-loop thread holds every connection, a bounded pool of
worker threads runs the WSGI application.

A thread per connection let 2,000 idle connections cost 2,000 threads, and a client sending its
request one byte a second held its thread for as long as it liked. Here a connection costs no
thread while it is idle, shaking hands or sending its request: the event loop reads the whole
request head and body first, and only a complete request reaches a worker. The limits:

* :data:`HEAD_TIMEOUT`: a request head and body must be complete this long after the connection
  was accepted (TLS handshake included) or, on a kept-alive connection, after its first byte;
  otherwise the connection is closed (slowloris).
* :data:`IDLE_TIMEOUT`: a kept-alive connection with no new request for this long is closed.
* :data:`MAX_CONNECTIONS`: at the limit, accepting one more closes the connection that has been
  waiting for its request the longest, so a flood of idle connections cannot lock a scraper out.
* :data:`WORKERS` threads run the application; requests for ``priority_paths`` (the health
  probes) that carry no credentials have two threads of their own, so that kubelet's probes never
  queue behind slow requests or password checks.
* :data:`MAX_HEAD_BYTES` and :data:`MAX_BODY_BYTES` bound what a request may send;
  :data:`WRITE_TIMEOUT` bounds how long a client may take to read an answer, which is written in
  :data:`WRITE_CHUNK` pieces so a slow reader holds no copy of a large body.

HTTP/1.1 with keep-alive; HTTP/1.0 is answered and closed. No chunked request bodies (nothing here
takes a body). ``HEAD`` answers never carry a body, whatever the application returns.

An application may call ``environ[DELAY_ANSWER](seconds)`` to have its answer held back that long
(at most :data:`MAX_ANSWER_DELAY`) by the event loop, which costs no thread: the app uses it to slow
down refused password guesses, so a flood of them cannot spin at thousands of requests a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import io
import logging
import resource
import socket
import ssl
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

#: seconds from accept (or from a kept-alive connection's first byte) to a complete request
HEAD_TIMEOUT = 10.0
#: seconds a kept-alive connection may wait for its next request
IDLE_TIMEOUT = 60.0
#: seconds a client has to read a whole answer
WRITE_TIMEOUT = 60.0
#: connections held at once (further lowered to half the process' file limit)
MAX_CONNECTIONS = 1024
#: threads running the application
WORKERS = 16
#: threads running requests for ``priority_paths``
PRIORITY_WORKERS = 2
MAX_HEAD_BYTES = 32 * 1024
MAX_BODY_BYTES = 64 * 1024
WRITE_CHUNK = 64 * 1024
#: the environ key of the callable that delays an answer (absent under other servers)
DELAY_ANSWER = "cdm_exporter.delay_answer"
MAX_ANSWER_DELAY = 5.0
#: socketserver's default listen backlog of 5 drops connections when many scrapers arrive at once,
#: and a dropped SYN costs the client a retransmission (1 s, then 3 s, ...)
BACKLOG = 128

_REASONS = {
    400: "Bad Request",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


class _BadRequest(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    busy: bool = False  # a worker runs its request or its answer is being written


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    keep_alive: bool = True
    expects_continue: bool = False
    content_length: int = 0


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT`` to (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 0.0.0.0:9792 or :9792)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - ':PORT' means every interface, as in Go exporters


def connection_limit(wanted: int = MAX_CONNECTIONS) -> int:
    """``wanted``, lowered to half the soft limit on open files (the rest is for API clients)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft // 2))


class HTTPServer:
    """Serve ``app`` on ``address`` in background threads until ``stop()``."""

    def __init__(
        self,
        app: WSGIApplication,
        address: str,
        ssl_context: ssl.SSLContext | None = None,
        *,
        workers: int = WORKERS,
        max_connections: int | None = None,
        head_timeout: float = HEAD_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        priority_paths: Iterable[str] = (),
    ) -> None:
        host, port = parse_listen_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self._app = app
        self._ssl_context = ssl_context
        self._head_timeout = head_timeout
        self._idle_timeout = idle_timeout
        self._write_timeout = write_timeout
        self._max_connections = max_connections if max_connections is not None else connection_limit()
        self._priority_paths = frozenset(priority_paths)
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http-worker")
        self._priority = ThreadPoolExecutor(max_workers=PRIORITY_WORKERS, thread_name_prefix="http-priority")
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_exception_handler)
        self._connections: dict[_Connection, None] = {}  # insertion order: waiting longest first
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._started = threading.Event()
        self.scheme = "https" if ssl_context is not None else "http"

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def host(self) -> str:
        return str(self._sock.getsockname()[0])

    @property
    def connections(self) -> int:
        """Connections held now (for tests and benchmarks)."""
        return len(self._connections)

    def url(self, path: str = "") -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):  # noqa: S104
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        else:
            self._sock.close()
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._priority.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, sock=self._sock, limit=MAX_HEAD_BYTES, backlog=BACKLOG)
            )
        finally:
            self._started.set()
        try:
            self._loop.run_forever()
        finally:
            if self._server is not None:
                self._server.close()
            for connection in list(self._connections):
                connection.writer.transport.abort()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    # --- connections -----------------------------------------------------------------------------

    def _admit(self, connection: _Connection) -> None:
        """Hold ``connection``; at the limit, close the one that has waited longest for a request."""
        while len(self._connections) >= self._max_connections:
            oldest = next((c for c in self._connections if not c.busy), None)
            if oldest is None:
                break  # every connection is being served: the newcomer still gets in (bounded by workers)
            del self._connections[oldest]
            oldest.writer.transport.abort()
        self._connections[connection] = None

    def _waiting(self, connection: _Connection) -> None:
        """``connection`` now waits for a request: it goes to the end of the eviction order."""
        connection.busy = False
        self._connections.pop(connection, None)
        self._connections[connection] = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self._admit(connection)
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            first = True
            while True:
                try:
                    request = await self._read_request(reader, writer, first)
                except _BadRequest as error:
                    await self._send_error(writer, error.code, str(error))
                    return
                if request is None:
                    return
                first = False
                connection.busy = True
                status, headers, body = await self._call(request, peer)
                keep_alive = request.keep_alive and not any(
                    name.lower() == "connection" and value.lower() == "close" for name, value in headers
                )
                await self._write(writer, status, headers, body, keep_alive, request.method != "HEAD")
                if not keep_alive:
                    return
                self._waiting(connection)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError) as error:
            log.debug("connection from %s closed: %s", peer[0], type(error).__name__)
        finally:
            self._connections.pop(connection, None)
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # a client that does not read gets no more time
            else:
                writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bool
    ) -> _Request | None:
        """The next complete request, or None when the client closed the connection between two."""
        start = b""
        if not first:
            async with asyncio.timeout(self._idle_timeout):
                start = await reader.read(1)
            if not start:
                return None
        async with asyncio.timeout(self._head_timeout):
            if first and self._ssl_context is not None:
                await writer.start_tls(self._ssl_context, ssl_handshake_timeout=self._head_timeout)
            try:
                head = start + await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise _BadRequest(431, "request head too large") from None
            except asyncio.IncompleteReadError as error:
                if not (start + error.partial).strip():
                    return None  # closed without sending anything
                raise
            request = _parse_head(head)
            if request.content_length:
                if request.expects_continue:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.body = await reader.readexactly(request.content_length)
        return request

    async def _call(
        self, request: _Request, peer: tuple[Any, ...]
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        environ = self._environ(request, peer)
        delays: list[float] = []
        environ[DELAY_ANSWER] = delays.append
        # only probes without credentials: one with credentials may wait for a password check
        priority = environ["PATH_INFO"] in self._priority_paths and "HTTP_AUTHORIZATION" not in environ
        pool = self._priority if priority else self._workers
        try:
            answer = await asyncio.wrap_future(pool.submit(self._run_app, environ))
        except RuntimeError:  # the pool was shut down: the server is stopping
            return "503 Service Unavailable", [("Content-Type", "text/plain")], b"stopping\n"
        if delays:
            await asyncio.sleep(min(MAX_ANSWER_DELAY, max(delays)))
        return answer

    def _run_app(self, environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer[:] = [status, headers]
            return lambda data: None  # the legacy write() callable; nothing here uses it

        try:
            result = self._app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            log.exception("internal error serving %s", environ.get("PATH_INFO", ""))
            return "500 Internal Server Error", [("Content-Type", "text/plain")], b"internal error\n"
        if not answer:
            return "500 Internal Server Error", [("Content-Type", "text/plain")], b"no response\n"
        return answer[0], list(answer[1]), body

    def _environ(self, request: _Request, peer: tuple[Any, ...]) -> WSGIEnvironment:
        path, _, query = request.target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "latin-1"),  # PEP 3333: bytes as latin-1 characters
            "QUERY_STRING": query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(peer[0]) if peer else "",
            "REMOTE_PORT": str(peer[1]) if len(peer) > 1 else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.scheme,
            "wsgi.input": io.BytesIO(request.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key == "CONTENT_LENGTH":
                environ["CONTENT_LENGTH"] = value
            else:
                key = "HTTP_" + key
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        status: str,
        headers: list[tuple[str, str]],
        body: bytes,
        keep_alive: bool,
        send_body: bool = True,
    ) -> None:
        """Write one answer; a HEAD answer has the headers a GET would have and no body (and no
        Content-Length unless the application gave GET's: the empty body is not GET's)."""
        names = {name.lower() for name, _ in headers}
        lines = [f"HTTP/1.1 {status}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if "date" not in names:
            lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if "content-length" not in names and send_body:
            lines.append(f"Content-Length: {len(body)}")
        if not keep_alive and "connection" not in names:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        view = memoryview(body if send_body else b"")
        async with asyncio.timeout(self._write_timeout):
            writer.write(head)
            for offset in range(0, len(view), WRITE_CHUNK):
                writer.write(view[offset : offset + WRITE_CHUNK])
                await writer.drain()
            await writer.drain()

    async def _send_error(self, writer: asyncio.StreamWriter, code: int, message: str) -> None:
        body = (message + "\n").encode()
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await self._write(writer, f"{code} {_REASONS.get(code, 'Error')}", headers, body, False)


def _parse_head(head: bytes) -> _Request:
    """The request line and headers of ``head`` (ending in a blank line); strict, as nothing here
    needs leniency and a proxy in front may read the same bytes."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400, "undecodable request") from None
    lines = text.split("\r\n")
    while lines and lines[0] == "":  # RFC 9112 2.2: ignore empty lines before the request line
        lines.pop(0)
    if not lines:
        raise _BadRequest(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505, "only HTTP/1.1 and HTTP/1.0 are served")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise _BadRequest(400, "malformed header line")
        if "_" in name:
            continue  # WSGI would map it onto a dash header's key: dropped, as wsgiref does
        headers.append((name, value.strip(" \t")))
    request = _Request(method.upper(), target, version, headers)
    lengths = [v for n, v in headers if n.lower() == "content-length"]
    if any(n.lower() == "transfer-encoding" for n, _ in headers):
        raise _BadRequest(501, "chunked request bodies are not accepted")
    if lengths:
        if len(set(lengths)) != 1 or not lengths[0].isdigit():
            raise _BadRequest(400, "bad Content-Length")
        request.content_length = int(lengths[0])
        if request.content_length > MAX_BODY_BYTES:
            raise _BadRequest(413, "request body too large")
    tokens = {
        token.strip().lower() for n, v in headers if n.lower() == "connection" for token in v.split(",")
    }
    request.keep_alive = version == "HTTP/1.1" and "close" not in tokens
    request.expects_continue = any(n.lower() == "expect" and v.lower() == "100-continue" for n, v in headers)
    return request


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # a client that resets the connection or fails its TLS handshake is not the exporter's error
    log.debug("http: %s", context.get("message"), exc_info=context.get("exception"))
