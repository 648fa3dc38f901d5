"""Elasticsearch adapters: the anomaly sinks (sync and asyncio) and the anomaly query."""

from adapters.elasticsearch.async_sink import AsyncElasticsearchAnomalySink
from adapters.elasticsearch.bulk import FailedAnomaly, RetryPolicy, SinkCounters
from adapters.elasticsearch.client import ElasticsearchSettings, connect, connect_async, redact_url
from adapters.elasticsearch.errors import ElasticsearchAdapterError, ElasticsearchRejected, ElasticsearchUnavailable
from adapters.elasticsearch.mapping import DEFAULT_INDEX_PREFIX, index_for, index_template
from adapters.elasticsearch.query import ElasticsearchAnomalyQuery
from adapters.elasticsearch.sink import ElasticsearchAnomalySink

__all__ = [
    "DEFAULT_INDEX_PREFIX",
    "AsyncElasticsearchAnomalySink",
    "ElasticsearchAdapterError",
    "ElasticsearchAnomalyQuery",
    "ElasticsearchAnomalySink",
    "ElasticsearchRejected",
    "ElasticsearchSettings",
    "ElasticsearchUnavailable",
    "FailedAnomaly",
    "RetryPolicy",
    "SinkCounters",
    "connect",
    "connect_async",
    "index_for",
    "index_template",
    "redact_url",
]
