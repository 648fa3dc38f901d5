"""The /metrics HTTP endpoint, started at most once per process."""

from __future__ import annotations

import errno
import threading
from wsgiref.simple_server import WSGIServer
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, start_http_server

log = structlog.get_logger()


@dataclass
class MetricsServer:
    """Serves `registry` on addr:port from a daemon thread once `start()` is called (idempotent).

    Port 0 picks a free port; `port` then holds the one bound. With `span` > 1 the first free port
    of port .. port + span - 1 is bound: replicas sharing one network (compose's `--scale` on host
    networking) each get their own, and Prometheus scrapes the range.
    """

    registry: CollectorRegistry
    addr: str = "127.0.0.1"  # containers widen it (the image sets STOCKANOMALY_METRICS_ADDR=0.0.0.0)
    port: int = 9100
    span: int = 1
    _server: object | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def start(self) -> MetricsServer:
        with self._lock:
            if self._server is None:
                server = self._bind()
                self._server = server
                self.port = server.server_port
                log.info("metrics_endpoint_started", addr=self.addr, port=self.port, path="/metrics")
        return self

    def _bind(self) -> WSGIServer:
        last = self.port if self.port == 0 else self.port + max(self.span, 1) - 1
        for port in range(self.port, last):
            try:
                return start_http_server(port, addr=self.addr, registry=self.registry)[0]
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                log.info("metrics_port_taken", port=port, trying=port + 1)
        return start_http_server(last, addr=self.addr, registry=self.registry)[0]

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()  # type: ignore[attr-defined]
                self._server.server_close()  # type: ignore[attr-defined]
                self._server = None
