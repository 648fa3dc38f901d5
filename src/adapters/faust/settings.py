"""Streaming settings from the environment, with local defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamingSettings:
    app_id: str = "stockanomaly"
    bootstrap: str = "127.0.0.1:9092"
    trades_topic: str = "trades"
    anomalies_topic: str = "anomalies"
    dlq_topic: str = "trades.dlq"
    partitions: int = 4
    store: str = "rocksdb://"
    data_dir: str = "stockanomaly-data"  # RocksDB files, relative to the working directory
    elasticsearch_url: str = ""
    elasticsearch_index: str = "stockanomaly-anomalies"
    elasticsearch_refresh: str = "false"  # "true" forces a refresh per bulk; costly under load
    elasticsearch_replicas: int = 1
    elasticsearch_refresh_interval: str = "100ms"  # how soon a written anomaly is searchable
    web_port: int = 6066
    indexer_web_port: int = 6067
    # exactly_once: changelog writes, outputs and offsets commit together (see README); the
    # at_least_once alternative can lose an anomaly whose state was saved just before a crash.
    processing_guarantee: str = "exactly_once"
    take_max: int = 256  # messages per detect call at most
    take_within: float = 0.05  # seconds to wait for more messages: fewer, larger detect calls and state writes

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StreamingSettings:
        e = os.environ if env is None else env
        d = cls()
        return cls(
            app_id=e.get("STOCKANOMALY_APP_ID", d.app_id),
            bootstrap=e.get("KAFKA_BOOTSTRAP_SERVERS", d.bootstrap),
            trades_topic=e.get("STOCKANOMALY_TRADES_TOPIC", d.trades_topic),
            anomalies_topic=e.get("STOCKANOMALY_ANOMALIES_TOPIC", d.anomalies_topic),
            dlq_topic=e.get("STOCKANOMALY_DLQ_TOPIC", d.dlq_topic),
            partitions=int(e.get("STOCKANOMALY_PARTITIONS", d.partitions)),
            store=e.get("STOCKANOMALY_STORE", d.store),
            data_dir=e.get("STOCKANOMALY_DATA_DIR", d.data_dir),
            elasticsearch_url=e.get("ELASTICSEARCH_URL", d.elasticsearch_url),
            elasticsearch_index=e.get("STOCKANOMALY_ES_INDEX_PREFIX", d.elasticsearch_index),
            elasticsearch_refresh=e.get("STOCKANOMALY_ES_REFRESH", d.elasticsearch_refresh),
            elasticsearch_refresh_interval=e.get("STOCKANOMALY_ES_REFRESH_INTERVAL", d.elasticsearch_refresh_interval),
            elasticsearch_replicas=int(e.get("STOCKANOMALY_ES_REPLICAS", d.elasticsearch_replicas)),
            web_port=int(e.get("STOCKANOMALY_WORKER_WEB_PORT", d.web_port)),
            indexer_web_port=int(e.get("STOCKANOMALY_INDEXER_WEB_PORT", d.indexer_web_port)),
            processing_guarantee=e.get("STOCKANOMALY_PROCESSING_GUARANTEE", d.processing_guarantee),
            take_max=int(e.get("STOCKANOMALY_TAKE_MAX", d.take_max)),
            take_within=float(e.get("STOCKANOMALY_TAKE_WITHIN", d.take_within)),
        )
