"""The indexer: `faust -A entrypoints.indexer worker`, the anomalies topic into Elasticsearch.

Its own process, next to the workers: an Elasticsearch outage then stalls only this, and the
workers' commits never wait on Elasticsearch. Serves Prometheus metrics on
STOCKANOMALY_INDEXER_METRICS_PORT (default 9101).
"""

from __future__ import annotations

import logging
import sys

from entrypoints.container import build_container
from entrypoints.logging_setup import configure_logging, throttle_kafka_client
from entrypoints.topics import (before_start, check_elasticsearch, faust_web_address, require_directory,
                                require_port, serve_metrics)
from domain.errors import ConfigError

try:
    container = build_container(metrics="prometheus")
    # The indexer serves its metrics on a port of its own (a worker may run beside it).
    container.config.metrics_port.from_value(container.settings().indexer_metrics_port)
    container.config.metrics_exports.from_value("indexer")
    container.settings().check_index_prefixes()
    container.indexer_sink()  # needs ELASTICSEARCH_URL: say so in one line rather than later
except ConfigError as exc:
    sys.exit(f"stockanomaly indexer: {exc}")
configure_logging(container.settings().log_level)
app = container.indexer_app()
throttle_kafka_client()


def prepare() -> None:
    # The Elasticsearch client logs every request at INFO (each bulk, each retention check): its
    # warnings are enough, the indexer logs what it wrote and retried.
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    require_directory(container.settings().data_dir, "STOCKANOMALY_DATA_DIR")  # Faust's own files: <it>/indexer
    web = faust_web_address(sys.argv, "127.0.0.1", container.settings().indexer_web_port)
    if web is not None:
        require_port(*web, "STOCKANOMALY_INDEXER_WEB_PORT (or --web-port)")
    serve_metrics(container.metrics_server(), "STOCKANOMALY_METRICS_ADDR / STOCKANOMALY_INDEXER_METRICS_PORT")
    check_elasticsearch(container.settings().elasticsearch_url)


before_start(app, container.streaming(), "indexer", prepare)
