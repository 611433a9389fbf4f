"""The exporter's WSGI application: ``/``, the metrics path, ``/probe``, health, readiness, reload.

Every request but the two health probes passes basic auth first when the web config names
users; when too many password checks already wait, a request is answered 429 unchecked. A scrape
refreshes the targets within the deadline Prometheus announces in
``X-Prometheus-Scrape-Timeout-Seconds`` (at most :data:`MAX_SCRAPE_SECONDS`, less a small offset),
then renders what is known; concurrent scrapes of the same exposition share one rendering.
``HEAD`` on the metrics paths answers the headers without collecting or rendering anything.
``/-/ready`` tells an anonymous caller how many targets fail, and which only to an authenticated
one (or in every answer while the log level is debug).
"""

from __future__ import annotations

import gzip
import html
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cdm_exporter import __version__
from cdm_exporter.config.webconfig import AuthVerdict
from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.polling.targets import Exporter, UnknownTarget
from cdm_exporter.web.http_server import DELAY_ANSWER
from cdm_exporter.web.rendering import SharedRenderer

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

ReloadHook = Callable[[], tuple[bool, str]]


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
        self.renderer = SharedRenderer()
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
        headers = [("Content-Type", response.content_type)]
        if response.body or environ.get("REQUEST_METHOD") != "HEAD":  # HEAD /metrics renders nothing
            headers.append(("Content-Length", str(len(response.body))))
        headers += list(response.headers)
        if self.web_config is not None:  # http_server_config.headers of the web config
            headers += list(self.web_config.headers.items())
        start_response(response.status, headers)
        return [response.body]

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
            return text("405 Method Not Allowed", "method not allowed")
        if path == self.telemetry_path:
            return self._metrics(environ, None)
        if path == "/probe":
            return self._probe(environ)
        if path == "/-/healthy":
            return text("200 OK", "Healthy")
        if path == "/-/ready":
            return self._ready(environ)
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
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        gzipped = accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        headers: tuple[tuple[str, str], ...] = (("Vary", "Accept-Encoding"),)
        if gzipped:
            headers += (("Content-Encoding", "gzip"),)
        if target is not None and target not in self.exporter.target_names:
            raise UnknownTarget(target)
        if environ.get("REQUEST_METHOD") == "HEAD":  # a HEAD spends no API call and renders nothing
            return Response("200 OK", b"", content_type, headers)
        if target is None:
            registry = self.registry
            self.exporter.collect(self._scrape_timeout(environ))
        else:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(CdmCollector(lambda: self.exporter.snapshot([target])))
            self.exporter.collect(self._scrape_timeout(environ), [target])

        def render() -> bytes:
            body = encoder(registry)
            return gzip.compress(body, compresslevel=6) if gzipped else body

        body = self.renderer.render((target, content_type, gzipped), render, ready_at=time.monotonic())
        return Response("200 OK", body, content_type, headers)

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
