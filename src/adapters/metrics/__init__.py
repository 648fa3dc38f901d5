"""Metrics adapters: Prometheus (prometheus_client) and the HTTP endpoint it is scraped on."""

from adapters.metrics.prometheus import PrometheusMetrics, parse_symbols, process_registry
from adapters.metrics.server import MetricsServer

__all__ = ["MetricsServer", "PrometheusMetrics", "parse_symbols", "process_registry"]
