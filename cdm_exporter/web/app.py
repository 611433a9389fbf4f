"""The exporter's WSGI application: the status page ``/`` and its JSON twin ``/api/v1/jobs``,
the metrics path, ``/probe``, health, readiness, reload, and the page's script and style.

Every request but the two health probes passes basic auth first when the web config names
users; when too many password checks already wait, a request is answered 429 unchecked. A scrape
refreshes the targets within the deadline Prometheus announces in
``X-Prometheus-Scrape-Timeout-Seconds`` (at most :data:`MAX_SCRAPE_SECONDS`, less a small offset),
then renders what is known; the status page and its JSON refresh them too, within a shorter
deadline, so they stay current with no Prometheus scraping. Every answer built from the known state
(exposition, page, JSON) is built by one rule (:meth:`ExporterApp._built`): gzip when
``Accept-Encoding`` accepts it with a q-value above 0, concurrent requests for the same answer share
one rendering, and ``HEAD`` answers the headers without collecting or rendering anything (so without
a Content-Length). ``/-/ready`` tells an anonymous caller how many targets fail, and which only to
an authenticated one (or in every answer while the log level is debug). Every answer carries a
strict Content-Security-Policy and ``nosniff``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cdm_exporter.config.webconfig import AuthVerdict
from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.metrics.exposition import GZIP_LEVEL
from cdm_exporter.metrics.exposition import render as render_exposition
from cdm_exporter.polling.targets import Exporter, UnknownTarget
from cdm_exporter.web.http_server import DELAY_ANSWER
from cdm_exporter.web.rendering import SharedRenderer
from cdm_exporter.web.status_data import status_data
from cdm_exporter.web.status_page import API_PATH, View, render_page

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from cdm_exporter.config.webconfig import WebConfig
log = logging.getLogger(__name__)

#: bounds on the scrape timeout Prometheus may announce: a collection gets at most a minute (the
#: API budget's window; waiting longer buys no more calls), so a client announcing 300 s cannot
#: hold a connection and a thread for five minutes
MIN_SCRAPE_SECONDS = 0.1
MAX_SCRAPE_SECONDS = 60.0
#: seconds a refused password (or one not checked for a full queue) waits for its answer, in the
#: server's event loop (no thread): a flood of guesses then comes at most once a second per
#: connection instead of spinning
REFUSAL_DELAY = 1.0

#: the status page and its JSON refresh the targets within at most this many seconds, then
#: answer with what is known (calls still running land in the next answer)
STATUS_COLLECT_SECONDS = 2.0

#: no inline script or style anywhere; the page's own script may fetch from this origin only
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
)
NO_STORE = (("Cache-Control", "no-store"),)
JSON_TYPE = "application/json; charset=utf-8"

ReloadHook = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class Asset:
    """A file of ``cdm_exporter/web/static`` served under ``/static/``."""

    body: bytes
    content_type: str

    @property
    def version(self) -> str:
        """Part of the URL, so that a browser never keeps a stale copy after an upgrade."""
        return hashlib.sha256(self.body).hexdigest()[:12]


def _load_assets() -> dict[str, Asset]:
    static = resources.files("cdm_exporter.web") / "static"
    return {
        name: Asset((static / name).read_bytes(), content_type)
        for name, content_type in (
            ("status.js", "text/javascript; charset=utf-8"),
            ("status.css", "text/css; charset=utf-8"),
        )
    }


@dataclass
class Response:
    status: str
    # None: a HEAD of an answer that was not built (``ExporterApp._built``); a list: the body in
    # pieces, sent one after the other (a scrape's)
    body: bytes | list[bytes] | None
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def chunks(self) -> list[bytes]:
        if self.body is None:
            return []
        return [self.body] if isinstance(self.body, bytes) else self.body


def text(status: str, message: str) -> Response:
    return Response(status, (message.rstrip("\n") + "\n").encode())


class ExporterApp:
    """WSGI callable. ``reload`` re-reads the configuration; None disables ``/-/reload``."""

    def __init__(
        self,
        exporter: Exporter,
        *,
        telemetry_path: str = "/metrics",
        web_config: WebConfig | None = None,
        reload: ReloadHook | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.exporter = exporter
        self.telemetry_path = telemetry_path
        self.web_config = web_config
        self.reload = reload
        self.assets = _load_assets()
        self.renderer: SharedRenderer[list[bytes]] = SharedRenderer()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(CdmCollector(exporter.snapshot))
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self._route(environ)
        except Exception:
            log.exception("internal error serving %s", environ.get("PATH_INFO", ""))
            response = text("500 Internal Server Error", "internal error; see the exporter's log")
        head = environ.get("REQUEST_METHOD") == "HEAD"
        headers = [("Content-Type", response.content_type)]
        if response.body is not None:  # None: a HEAD of an answer that was not built
            headers.append(("Content-Length", str(sum(len(chunk) for chunk in response.chunks))))
        headers += [*response.headers, *SECURITY_HEADERS]
        if self.web_config is not None:  # http_server_config.headers of the web config
            headers += list(self.web_config.headers.items())
        start_response(response.status, headers)
        # HEAD: the headers GET would have, no body
        return [b""] if head or response.body is None else response.chunks

    # --- routing -------------------------------------------------------------------------------

    def _route(self, environ: WSGIEnvironment) -> Response:
        path = environ.get("PATH_INFO", "/") or "/"
        # liveness and readiness reveal nothing and must work for kubelet and Docker HEALTHCHECK
        # probes, which carry no credentials; every other path needs them
        if path not in ("/-/healthy", "/-/ready") and self.web_config is not None:
            header = environ.get("HTTP_AUTHORIZATION")
            verdict = self.web_config.authenticate(header)
            if verdict is not AuthVerdict.ALLOWED and header:
                environ.get(DELAY_ANSWER, _no_delay)(REFUSAL_DELAY)
            if verdict is AuthVerdict.BUSY:
                return Response(
                    "429 Too Many Requests",
                    b"Too many password checks waiting; try again\n",
                    headers=(("Retry-After", "1"),),
                )
            if verdict is not AuthVerdict.ALLOWED:
                return Response(
                    "401 Unauthorized",
                    b"Unauthorized\n",
                    headers=(("WWW-Authenticate", 'Basic realm="cdm-exporter"'),),
                )
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/-/reload":
            return self._reload() if method in ("POST", "PUT") else text("405 Method Not Allowed", "use POST")
        if method not in ("GET", "HEAD"):
            return Response(
                "405 Method Not Allowed", b"method not allowed\n", headers=(("Allow", "GET, HEAD"),)
            )
        if path == self.telemetry_path:
            return self._metrics(environ, None)
        if path == "/probe":
            return self._probe(environ)
        if path == "/-/healthy":
            return text("200 OK", "Healthy")
        if path == "/-/ready":
            return self._ready(environ)
        if path == "/":
            return self._status_page(environ)
        if path == API_PATH:
            return self._status_json(environ)
        if path.startswith("/static/") and path[len("/static/") :] in self.assets:
            asset = self.assets[path[len("/static/") :]]
            return Response(
                "200 OK", asset.body, asset.content_type, (("Cache-Control", "private, max-age=86400"),)
            )
        return text("404 Not Found", f"not found; the status page is at /, metrics at {self.telemetry_path}")

    def _scrape_timeout(self, environ: WSGIEnvironment) -> float:
        collection = self.exporter.config.collection
        announced = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
        timeout = collection.default_scrape_timeout
        if announced:
            try:
                timeout = float(announced)
            except ValueError:
                log.debug("ignoring unreadable X-Prometheus-Scrape-Timeout-Seconds %r", announced[:32])
        timeout -= collection.scrape_timeout_offset
        return min(MAX_SCRAPE_SECONDS, max(MIN_SCRAPE_SECONDS, timeout))

    def _metrics(self, environ: WSGIEnvironment, target: str | None) -> Response:
        accept = environ.get("HTTP_ACCEPT", "")
        _, content_type = choose_encoder(accept)
        if target is not None and target not in self.exporter.target_names:
            raise UnknownTarget(target)
        if target is None:
            registry = self.registry
        else:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(CdmCollector(lambda: self.exporter.snapshot([target])))

        def collect() -> None:
            self.exporter.collect(self._scrape_timeout(environ), None if target is None else [target])

        def render(gzipped: bool) -> list[bytes]:
            return render_exposition(registry, accept, gzip=gzipped).chunks

        return self._built(environ, ("metrics", target), content_type, render, collect)

    def _ready(self, environ: WSGIEnvironment) -> Response:
        ready = self.exporter.ready()
        message = "Ready" if ready.ok else f"Not ready: {ready.summary}"
        if ready.failing:
            if self._may_see_details(environ):
                message += f"; failing authentication: {', '.join(ready.failing)}"
            else:
                message += f"; {len(ready.failing)} target(s) failing authentication"
        return text("200 OK" if ready.ok else "503 Service Unavailable", message)

    def _may_see_details(self, environ: WSGIEnvironment) -> bool:
        """Target names go to an authenticated caller, or to anyone while debugging."""
        if log.isEnabledFor(logging.DEBUG):
            return True
        header = environ.get("HTTP_AUTHORIZATION")
        return (
            self.web_config is not None
            and bool(self.web_config.basic_auth_users)
            and header is not None
            and self.web_config.authenticate(header) is AuthVerdict.ALLOWED
        )

    def _probe(self, environ: WSGIEnvironment) -> Response:
        names = parse_qs(environ.get("QUERY_STRING", "")).get("target", [])
        if len(names) != 1 or not names[0]:
            return text("400 Bad Request", "give exactly one target: /probe?target=NAME")
        try:
            return self._metrics(environ, names[0])
        except UnknownTarget:
            known = ", ".join(sorted(self.exporter.target_names)) or "none"
            return text("400 Bad Request", f"unknown target {names[0]!r}; configured targets: {known}")

    def _reload(self) -> Response:
        if self.reload is None:
            return text("404 Not Found", "reload is not available")
        ok, message = self.reload()
        return text("200 OK" if ok else "500 Internal Server Error", message)

    def _status_collect(self, environ: WSGIEnvironment, targets: Sequence[str] | None) -> Callable[[], None]:
        """The status page's and its JSON's refresh: a capped collection."""

        def collect() -> None:
            self.exporter.collect(min(STATUS_COLLECT_SECONDS, self._scrape_timeout(environ)), targets)

        return collect

    def _status_page(self, environ: WSGIEnvironment) -> Response:
        view = View.parse(environ.get("QUERY_STRING", ""))
        assets = {
            kind: f"/static/{name}?v={self.assets[name].version}"
            for kind, name in (("css", "status.css"), ("js", "status.js"))
        }

        def render() -> bytes:
            data = status_data(self.exporter.snapshot(None), time.time())
            return render_page(data, view, telemetry_path=self.telemetry_path, assets=assets).encode()

        collect = self._status_collect(environ, None)
        return self._built(
            environ, ("page", view), "text/html; charset=utf-8", whole(render), collect, NO_STORE
        )

    def _status_json(self, environ: WSGIEnvironment) -> Response:
        names = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get("target")
        if names is not None:
            names = list(dict.fromkeys(names))  # a name given twice is one target
        try:
            missing = [n for n in names or () if n not in self.exporter.target_names]
            if missing:
                raise UnknownTarget(missing[0])

            def render() -> bytes:
                return _json(status_data(self.exporter.snapshot(names), time.time()))

            key = ("json", None if names is None else tuple(names))
            return self._built(
                environ, key, JSON_TYPE, whole(render), self._status_collect(environ, names), NO_STORE
            )
        except UnknownTarget as error:
            known = ", ".join(sorted(self.exporter.target_names)) or "none"
            message = f"unknown target {error.args[0]!r}; configured targets: {known}"
            return Response("404 Not Found", _json({"error": message}), JSON_TYPE, NO_STORE)

    def _built(
        self,
        environ: WSGIEnvironment,
        key: tuple[Hashable, ...],
        content_type: str,
        render: Callable[[bool], list[bytes]],
        collect: Callable[[], None] | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        """An answer built from the known state: ``collect()`` (the refresh it needs), then
        ``render(gzipped)`` (the body's pieces, gzip-compressed or not; :func:`whole` for a body
        made at once), shared with concurrent callers of the same ``key`` (and encoding).

        The one rule for such answers: gzip when ``Accept-Encoding`` accepts it (``accepts_gzip``;
        ``Vary`` either way), and a ``HEAD`` collects and renders nothing: it gets the headers,
        without a Content-Length (which only the body would tell).
        """
        gzipped = accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        headers += (("Vary", "Accept-Encoding"),)
        if gzipped:
            headers += (("Content-Encoding", "gzip"),)
        if environ.get("REQUEST_METHOD") == "HEAD":  # a HEAD spends no API call and renders nothing
            return Response("200 OK", None, content_type, headers)
        if collect is not None:
            collect()

        body = self.renderer.render(
            (*key, content_type, gzipped), lambda: render(gzipped), ready_at=time.monotonic()
        )
        return Response("200 OK", body, content_type, headers)


def whole(render: Callable[[], bytes]) -> Callable[[bool], list[bytes]]:
    """A renderer of pieces (for :meth:`ExporterApp._built`) from one that makes the body at once."""

    def pieces(gzipped: bool) -> list[bytes]:
        body = render()
        return [gzip.compress(body, compresslevel=GZIP_LEVEL) if gzipped else body]

    return pieces


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _no_delay(seconds: float) -> None:
    """Under a server without the delay hook: answer at once."""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` accepts gzip: named with a q-value above 0 (RFC 9110 12.5.3).

    prometheus_client's ``gzip_accepted`` ignores q-values, so ``gzip;q=0`` (gzip refused) would
    get gzip.
    """
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() not in ("gzip", "x-gzip"):
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0
    return False
