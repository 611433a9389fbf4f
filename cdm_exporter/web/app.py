"""The exporter's WSGI application: ``/``, the metrics path, ``/probe``, health, readiness, reload.

Every request but the two health probes passes basic auth first when the web config names
users. A scrape refreshes the targets within the deadline Prometheus announces in
``X-Prometheus-Scrape-Timeout-Seconds`` (less a small offset), then renders what is known.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cdm_exporter import __version__
from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.metrics.exposition import render
from cdm_exporter.polling.targets import Exporter, UnknownTarget

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from cdm_exporter.config.webconfig import WebConfig

log = logging.getLogger(__name__)

#: bounds on the scrape timeout Prometheus may announce
MIN_SCRAPE_SECONDS = 0.1
MAX_SCRAPE_SECONDS = 300.0

ReloadHook = Callable[[], tuple[bool, str]]


@dataclass
class Response:
    status: str
    body: bytes | list[bytes]  # a scrape's body comes in pieces, sent one after the other
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def chunks(self) -> list[bytes]:
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
        chunks = response.chunks
        length = sum(len(chunk) for chunk in chunks)
        headers = [("Content-Type", response.content_type), ("Content-Length", str(length))]
        headers += list(response.headers)
        if self.web_config is not None:  # http_server_config.headers of the web config
            headers += list(self.web_config.headers.items())
        start_response(response.status, headers)
        return chunks

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
            return text("405 Method Not Allowed", "method not allowed")
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
            return self._landing()
        return text("404 Not Found", f"not found; metrics are at {self.telemetry_path}")

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
        exposition = render(registry, environ.get("HTTP_ACCEPT", ""), environ.get("HTTP_ACCEPT_ENCODING", ""))
        headers: tuple[tuple[str, str], ...] = ()
        if exposition.gzipped:
            headers = (("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"))
        return Response("200 OK", exposition.chunks, exposition.content_type, headers)

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

    def _landing(self) -> Response:
        rows = "".join(
            f'<tr><td><a href="/probe?target={html.escape(quote(t.name, safe=""), quote=True)}">'
            f"{html.escape(t.name)}</a></td><td>{html.escape(t.region)}</td>"
            f"<td>{html.escape(t.project_id)}</td><td>{html.escape(t.endpoint)}</td></tr>"
            for t in self.exporter.config.targets
        )
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cdm-exporter</title></head>
<body>
<h1>cdm-exporter {html.escape(__version__)}</h1>
<p>Prometheus exporter for Huawei Cloud CDM (Cloud Data Migration) jobs and clusters.</p>
<ul>
<li><a href="{html.escape(self.telemetry_path, quote=True)}">Metrics</a></li>
<li><a href="/-/healthy">Health</a> &middot; <a href="/-/ready">Readiness</a></li>
</ul>
<h2>Targets</h2>
<table border="1" cellpadding="4">
<tr><th>name (probe)</th><th>region</th><th>project</th><th>endpoint</th></tr>
{rows}</table>
</body></html>
"""
        return Response("200 OK", page.encode(), "text/html; charset=utf-8")
