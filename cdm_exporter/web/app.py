"""The exporter's WSGI application: the status page ``/`` and its JSON twin ``/api/v1/jobs``,
the metrics path, ``/probe``, health, readiness, reload, and the page's script and style.

Every request but the two health probes passes basic auth first when the web config names
users. A scrape refreshes the targets within the deadline Prometheus announces in
``X-Prometheus-Scrape-Timeout-Seconds`` (less a small offset), then renders what is known; the
status page refreshes them too, within a shorter deadline, so it stays current with no
Prometheus scraping. Every answer carries a strict Content-Security-Policy and ``nosniff``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.polling.targets import Exporter, UnknownTarget
from cdm_exporter.web.status_data import status_data
from cdm_exporter.web.status_page import API_PATH, View, render_page

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from cdm_exporter.config.webconfig import WebConfig
    from cdm_exporter.polling.snapshot import Snapshot

log = logging.getLogger(__name__)

#: bounds on the scrape timeout Prometheus may announce
MIN_SCRAPE_SECONDS = 0.1
MAX_SCRAPE_SECONDS = 300.0

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
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


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
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
        headers += [*response.headers, *SECURITY_HEADERS]
        if self.web_config is not None:  # http_server_config.headers of the web config
            headers += list(self.web_config.headers.items())
        start_response(response.status, headers)
        # HEAD: the headers GET would have (Content-Length included), no body
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [response.body]

    # --- routing -------------------------------------------------------------------------------

    def _route(self, environ: WSGIEnvironment) -> Response:
        path = environ.get("PATH_INFO", "/") or "/"
        # liveness and readiness reveal nothing and must work for kubelet and Docker HEALTHCHECK
        # probes, which carry no credentials; every other path needs them
        if (
            path not in ("/-/healthy", "/-/ready")
            and self.web_config is not None
            and not self.web_config.authorized(environ.get("HTTP_AUTHORIZATION"))
        ):
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
            ok, why = self.exporter.ready()
            return text("200 OK" if ok else "503 Service Unavailable", "Ready" if ok else f"Not ready: {why}")
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
        if target is None:
            registry = self.registry
            self.exporter.collect(self._scrape_timeout(environ))
        else:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(CdmCollector(lambda: self.exporter.snapshot([target])))
            self.exporter.collect(self._scrape_timeout(environ), [target])
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        return _compressed(environ, Response("200 OK", encoder(registry), content_type))

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

    def _status_snapshot(self, environ: WSGIEnvironment, targets: Sequence[str] | None) -> Snapshot:
        if environ.get("REQUEST_METHOD") != "HEAD":  # a HEAD asks nothing of the API
            self.exporter.collect(min(STATUS_COLLECT_SECONDS, self._scrape_timeout(environ)), targets)
        return self.exporter.snapshot(targets)

    def _status_page(self, environ: WSGIEnvironment) -> Response:
        data = status_data(self._status_snapshot(environ, None), time.time())
        assets = {
            kind: f"/static/{name}?v={self.assets[name].version}"
            for kind, name in (("css", "status.css"), ("js", "status.js"))
        }
        page = render_page(
            data,
            View.parse(environ.get("QUERY_STRING", "")),
            telemetry_path=self.telemetry_path,
            assets=assets,
        )
        return _compressed(environ, Response("200 OK", page.encode(), "text/html; charset=utf-8", NO_STORE))

    def _status_json(self, environ: WSGIEnvironment) -> Response:
        names = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get("target")
        if names is not None:
            names = list(dict.fromkeys(names))  # a name given twice is one target
        try:
            snapshot = self._status_snapshot(environ, names)
        except UnknownTarget as error:
            known = ", ".join(sorted(self.exporter.target_names)) or "none"
            message = f"unknown target {error.args[0]!r}; configured targets: {known}"
            return Response("404 Not Found", _json({"error": message}), JSON_TYPE, NO_STORE)
        body = _json(status_data(snapshot, time.time()))
        return _compressed(environ, Response("200 OK", body, JSON_TYPE, NO_STORE))


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _compressed(environ: WSGIEnvironment, response: Response) -> Response:
    """``response`` gzipped when the client accepts it."""
    if "gzip" not in environ.get("HTTP_ACCEPT_ENCODING", ""):
        return response
    headers = (*response.headers, ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"))
    body = gzip.compress(response.body, compresslevel=6)
    return Response(response.status, body, response.content_type, headers)
