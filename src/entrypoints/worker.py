"""The streaming worker: `faust -A entrypoints.worker worker -l info`."""

from __future__ import annotations

import os

from adapters.elasticsearch import AsyncElasticsearchAnomalySink, ElasticsearchSettings, connect_async
from adapters.faust.app import create_app
from adapters.faust.settings import StreamingSettings
from adapters.memory import InMemoryAnomalySink, InMemoryDeadLetterSink
from application.detect import DetectTrades
from domain.ports import StateStore
from entrypoints.container import build_container
from entrypoints.logging_setup import configure_logging

configure_logging(os.environ.get("STOCKANOMALY_LOG_LEVEL", "INFO"))
settings = StreamingSettings.from_env()
container = build_container()


def make_detect(store: StateStore, found: InMemoryAnomalySink, rejected: InMemoryDeadLetterSink) -> DetectTrades:
    return DetectTrades(container.engine(), store, found, rejected, container.metrics())


def elasticsearch_sink() -> AsyncElasticsearchAnomalySink | None:
    if not settings.elasticsearch_url:
        return None
    client = connect_async(ElasticsearchSettings.from_env())
    refresh: bool | str = {"true": True, "false": False}.get(settings.elasticsearch_refresh, settings.elasticsearch_refresh)
    return AsyncElasticsearchAnomalySink(client, index_prefix=settings.elasticsearch_index, refresh=refresh,
                                         replicas=settings.elasticsearch_replicas,
                                         refresh_interval=settings.elasticsearch_refresh_interval)


app = create_app(settings, make_detect, elasticsearch=elasticsearch_sink())
