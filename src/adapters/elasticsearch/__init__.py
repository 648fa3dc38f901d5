"""Elasticsearch adapters: the anomaly sinks (sync and asyncio) and the anomaly query.

The names below are imported from their modules when first used: the elasticsearch client takes
~0.35 s to import, which every command that only validates settings (the index prefix rule lives
in `mapping`) would otherwise pay.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.elasticsearch.async_sink import AsyncElasticsearchAnomalySink
    from adapters.elasticsearch.bulk import FailedAnomaly, RetryPolicy, SinkCounters
    from adapters.elasticsearch.client import ElasticsearchSettings, connect, connect_async, probe, redact_url
    from adapters.elasticsearch.errors import (ElasticsearchAdapterError, ElasticsearchRejected,
                                               ElasticsearchUnavailable)
    from adapters.elasticsearch.mapping import DEFAULT_INDEX_PREFIX, index_for, index_template
    from adapters.elasticsearch.query import ElasticsearchAnomalyQuery
    from adapters.elasticsearch.sink import ElasticsearchAnomalySink

_MODULE_OF = {
    "AsyncElasticsearchAnomalySink": "async_sink",
    "FailedAnomaly": "bulk", "RetryPolicy": "bulk", "SinkCounters": "bulk",
    "ElasticsearchSettings": "client", "connect": "client", "connect_async": "client", "probe": "client",
    "redact_url": "client",
    "ElasticsearchAdapterError": "errors", "ElasticsearchRejected": "errors", "ElasticsearchUnavailable": "errors",
    "DEFAULT_INDEX_PREFIX": "mapping", "index_for": "mapping", "index_template": "mapping",
    "ElasticsearchAnomalyQuery": "query",
    "ElasticsearchAnomalySink": "sink",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
