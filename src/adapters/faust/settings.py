"""What the Faust apps need to know (built from `entrypoints.settings.Settings`)."""

from __future__ import annotations

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
