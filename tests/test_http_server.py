"""The HTTP server itself, over real sockets on 127.0.0.1, with a trivial WSGI app.

Load-shaped cases are small (hundreds of connections, not thousands) and assert bounds that hold
on a loaded machine: thread counts, closed connections, bytes on the wire; never a latency.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from exporter_stack import wait_until
from tls_certs import TLSCerts, client_context, make_tls_certs, openssl_available

from cdm_exporter.web.http_server import DELAY_ANSWER, MAX_ANSWER_DELAY, HTTPServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

BODY = b"x" * 100_000


class App:
    """Answers BODY; ``/slow`` waits until ``release`` is set; ``/delayed`` asks for a late answer."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.slow_running = 0
        self.delayed = 0
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/delayed":
            environ[DELAY_ANSWER](MAX_ANSWER_DELAY)
            with self._lock:
                self.delayed += 1
        if environ["PATH_INFO"] == "/slow":
            with self._lock:
                self.slow_running += 1
            self.release.wait(30)
        if environ["PATH_INFO"] == "/unsized" and environ["REQUEST_METHOD"] == "HEAD":
            start_response("200 OK", [("Content-Type", "text/plain")])  # the length is not known
            return [b""]
        body = BODY if environ["PATH_INFO"] != "/-/healthy" else b"Healthy\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def served() -> Iterator[Callable[..., tuple[HTTPServer, App]]]:
    servers: list[tuple[HTTPServer, App]] = []

    def start(**options: Any) -> tuple[HTTPServer, App]:
        app = App()
        server = HTTPServer(app, "127.0.0.1:0", **options)
        server.start()
        servers.append((server, app))
        return server, app

    yield start
    for server, app in servers:
        app.release.set()
        server.stop()


def connect(server: HTTPServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one answer with a Content-Length, read exactly: nothing of the answer after
    it (pipelined answers may arrive in one segment) is consumed."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)  # a byte at a time: the head's end is not known in advance
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head = data[:-4]
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = b""
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` within ``within`` seconds (reads until EOF/reset)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def http_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(("http-worker", "http-priority")))


def test_idle_connections_cost_no_thread_and_a_scrape_still_gets_through(
    served: Callable[..., tuple[HTTPServer, App]],
) -> None:
    server, _ = served()
    before = threading.active_count()
    idle = [connect(server) for _ in range(300)]
    try:
        wait_until(lambda: server.connections >= 250, 20, f"only {server.connections} connections held")
        assert threading.active_count() <= before + 2  # at most the worker that serves the next request
        answer = requests.get(server.url("/metrics"), headers={"Connection": "close"}, timeout=30)
        assert answer.status_code == 200 and answer.content == BODY
        assert http_threads() <= 16
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: server.connections == 0, 20, f"{server.connections} connections still held")
    assert requests.get(server.url("/metrics"), timeout=30).content == BODY


def test_a_request_head_sent_too_slowly_is_cut_at_the_deadline(
    served: Callable[..., tuple[HTTPServer, App]],
) -> None:
    server, _ = served(head_timeout=1.0)
    sock = connect(server)
    sent = 0
    started = time.monotonic()
    try:
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
            sock.send(bytes([byte]))
            sent += 1
            time.sleep(0.1)
    except OSError:
        pass
    # each byte came in time; the head as a whole did not, so the server closed it
    assert closed_by_server(sock, 20)
    assert time.monotonic() - started < 20 and sent < 200
    sock.close()
    # a kept-alive connection gets the same deadline from its next request's first byte
    kept = connect(server)
    kept.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_answer(kept)[1] == BODY
    kept.sendall(b"GET /b HTTP/1.1\r\n")
    assert closed_by_server(kept, 20)
    kept.close()


def test_an_idle_kept_alive_connection_is_closed(served: Callable[..., tuple[HTTPServer, App]]) -> None:
    server, _ = served(idle_timeout=0.5)
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_answer(sock)[1] == BODY
    assert closed_by_server(sock, 20)
    sock.close()


def test_at_the_connection_limit_the_longest_waiting_connection_makes_room(
    served: Callable[..., tuple[HTTPServer, App]],
) -> None:
    server, _ = served(max_connections=8)
    idle = [connect(server) for _ in range(8)]
    try:
        wait_until(lambda: server.connections == 8, 20, "the idle connections were not all accepted")
        answer = requests.get(server.url("/"), timeout=30)
        assert answer.status_code == 200
        assert closed_by_server(idle[0], 20)  # the oldest one went
        assert server.connections <= 8
    finally:
        for sock in idle:
            sock.close()


def test_head_gets_the_headers_of_get_and_no_body(served: Callable[..., tuple[HTTPServer, App]]) -> None:
    server, _ = served()
    sock = connect(server)
    sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"Content-Length: {len(BODY)}".encode() in head
    assert rest == b""
    # nothing else follows: the next answer on the same connection starts right at its status line
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200") and body == BODY
    sock.close()


def test_a_head_whose_length_the_app_does_not_know_gets_no_content_length(
    served: Callable[..., tuple[HTTPServer, App]],
) -> None:
    server, _ = served()
    sock = connect(server)
    sock.sendall(b"HEAD /unsized HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and rest == b""
    assert b"content-length" not in head.lower()  # not "0": GET's body is not empty
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection goes on
    head, body = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200") and body == BODY
    sock.close()


def test_health_probes_do_not_queue_behind_busy_workers(
    served: Callable[..., tuple[HTTPServer, App]],
) -> None:
    server, app = served(workers=2, priority_paths=("/-/healthy",))
    results: list[int] = []
    slow = [
        threading.Thread(
            target=lambda: results.append(requests.get(server.url("/slow"), timeout=60).status_code)
        )
        for _ in range(4)
    ]
    for thread in slow:
        thread.start()
    wait_until(lambda: app.slow_running == 2, 20, "the workers never got busy")
    # both workers are held and two more requests queue behind them; the probe does not
    assert requests.get(server.url("/-/healthy"), timeout=30).text == "Healthy\n"
    assert app.slow_running == 2
    app.release.set()
    for thread in slow:
        thread.join(60)
    assert results == [200] * 4


def test_a_delayed_answer_holds_no_worker(served: Callable[..., tuple[HTTPServer, App]]) -> None:
    server, app = served(workers=2)
    answered: list[float] = []
    started = time.monotonic()

    def get_delayed() -> None:
        requests.get(server.url("/delayed"), timeout=60)
        answered.append(time.monotonic())

    delayed = [threading.Thread(target=get_delayed) for _ in range(10)]
    for thread in delayed:
        thread.start()
    wait_until(lambda: app.delayed == 10, 30, "the delayed requests never ran")
    # ten answers are held back, two workers: a new request is still served, before any of them
    assert requests.get(server.url("/"), timeout=30).content == BODY
    assert answered == []
    for thread in delayed:
        thread.join(60)
    assert len(answered) == 10
    assert min(answered) - started >= MAX_ANSWER_DELAY - 0.1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", b"431"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"501"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", b"413"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
        (b"GET /\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\n folded: no\r\n\r\n", b"400"),
    ],
)
def test_bad_requests_are_refused_and_closed(
    served: Callable[..., tuple[HTTPServer, App]], request_bytes: bytes, status: bytes
) -> None:
    server, _ = served()
    sock = connect(server)
    sock.sendall(request_bytes)
    head, _ = read_answer(sock)
    assert head.split(b" ")[1] == status
    assert closed_by_server(sock, 20)
    sock.close()


def test_pipelined_requests_are_answered_in_order(served: Callable[..., tuple[HTTPServer, App]]) -> None:
    server, _ = served()
    sock = connect(server)
    sock.sendall(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert read_answer(sock)[1] == BODY
    head, body = read_answer(sock)
    assert body == b"Healthy\n" and b"Connection: close" in head
    assert closed_by_server(sock, 20)
    sock.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSCerts:
    if not openssl_available():
        pytest.skip("needs the openssl binary")
    return make_tls_certs(Path(tmp_path_factory.mktemp("tls")))


def test_tls_handshakes_that_never_finish_neither_block_nor_pile_up(
    served: Callable[..., tuple[HTTPServer, App]], certs: TLSCerts
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    server, _ = served(ssl_context=context, head_timeout=1.0)
    before = threading.active_count()
    silent = [connect(server) for _ in range(50)]  # connect, never say hello
    try:
        answer = requests.get(server.url("/"), verify=str(certs.ca_cert), timeout=30)
        assert answer.status_code == 200 and answer.content == BODY
        assert threading.active_count() <= before + 2
        assert all(closed_by_server(sock, 20) for sock in silent[:5])
    finally:
        for sock in silent:
            sock.close()
    with (
        connect(server) as raw,
        client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(tls)[1] == BODY
