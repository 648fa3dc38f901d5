"""The /metrics HTTP endpoint, started at most once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, start_http_server

log = structlog.get_logger()


@dataclass
class MetricsServer:
    """Serves `registry` on addr:port from a daemon thread once `start()` is called (idempotent).

    Port 0 picks a free port; `port` then holds the one bound.
    """

    registry: CollectorRegistry
    addr: str = "0.0.0.0"  # noqa: S104 - containers are scraped from outside; set STOCKANOMALY_METRICS_ADDR to narrow
    port: int = 9100
    _server: object | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def start(self) -> MetricsServer:
        with self._lock:
            if self._server is None:
                server, _ = start_http_server(self.port, addr=self.addr, registry=self.registry)
                self._server = server
                self.port = server.server_port
                log.info("metrics_endpoint_started", addr=self.addr, port=self.port, path="/metrics")
        return self

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()  # type: ignore[attr-defined]
                self._server.server_close()  # type: ignore[attr-defined]
                self._server = None
