"""The long-running process: exporter, HTTP server, warm-up, reload on SIGHUP, clean stop."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from cdm_exporter.config import Config, load_config
from cdm_exporter.config.errors import ConfigError
from cdm_exporter.config.webconfig import WebConfig
from cdm_exporter.logs import redact_secrets
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.web.app import ExporterApp
from cdm_exporter.web.http_server import HTTPServer

log = logging.getLogger(__name__)

#: How often the main thread, waiting to stop, runs the Python signal handlers. A signal the kernel
#: delivers to another thread only marks the handler due; the main thread runs it when it next runs
#: Python code, which an untimed wait never does (the process then ignored SIGTERM and SIGHUP).
SIGNAL_CHECK_SECONDS = 0.5


class Service:
    def __init__(
        self,
        config: Config,
        *,
        config_file: str | None = None,
        web_config: WebConfig | None = None,
        exporter: Exporter | None = None,
        extra_secrets: tuple[str, ...] = (),
    ) -> None:
        self.config_file = config_file
        self.web_config = web_config
        self.exporter = exporter or Exporter(config)
        self._extra_secrets = extra_secrets  # not in the configuration: the state store's password
        self._redactor = redact_secrets((*config.secret_values(), *extra_secrets))
        self._stopped = threading.Event()
        self._reload_lock = threading.Lock()
        self.http: HTTPServer | None = None

    def reload(self) -> tuple[bool, str]:
        """Re-read the configuration file; a bad one is rejected and the running one kept."""
        with self._reload_lock:
            if self.config_file is None:
                message = "no --config.file to reload (configured from the environment)"
                log.warning("configuration reload refused", extra={"reason": message})
                return False, message
            try:
                config = load_config(self.config_file, os.environ)
            except ConfigError as error:
                log.error(
                    "configuration reload rejected; keeping the running one", extra={"error": str(error)}
                )
                return False, f"reload rejected, running configuration kept: {error}"
            self._redactor.secrets = (*config.secret_values(), *self._extra_secrets)
            self.exporter.apply(config)
            log.info("configuration reloaded", extra={"targets": len(config.targets)})
            return True, f"reloaded: {len(config.targets)} target(s)"

    def start(self, listen_address: str, telemetry_path: str = "/metrics") -> HTTPServer:
        """Serve in background threads and warm the state up; returns the HTTP server."""
        app = ExporterApp(
            self.exporter, telemetry_path=telemetry_path, web_config=self.web_config, reload=self.reload
        )
        ssl_context = self.web_config.ssl_context() if self.web_config is not None else None
        # the health probes get threads of their own: kubelet restarts a pod whose probe times out
        self.http = HTTPServer(app, listen_address, ssl_context, priority_paths=("/-/healthy", "/-/ready"))
        self.http.start()
        # one collection now, so that /-/ready can turn true and the first scrape finds state
        timeout = self.exporter.config.collection.default_scrape_timeout
        threading.Thread(target=self.exporter.collect, args=(timeout,), name="warm-up", daemon=True).start()
        log.info(
            "listening",
            extra={"url": self.http.url(telemetry_path), "targets": len(self.exporter.config.targets)},
        )
        return self.http

    def run(self, listen_address: str, telemetry_path: str = "/metrics") -> None:
        """Serve until SIGINT or SIGTERM; SIGHUP reloads the configuration."""
        self._handle_signals()  # before serving: a SIGHUP must never find Python's default (exit)
        self.start(listen_address, telemetry_path)
        self.run_until_stopped()

    def _handle_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_hup)

    def run_until_stopped(self) -> None:
        """Block until SIGINT or SIGTERM (SIGHUP reloads), then stop; after ``start()``."""
        self._handle_signals()
        while not self._stopped.wait(SIGNAL_CHECK_SECONDS):
            pass
        self.stop()

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopped.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self.http is not None:
            self.http.stop()
        self.exporter.close()
        log.info("stopped")
