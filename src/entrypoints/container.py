"""The composition root: one container builds the embedded, streaming (worker, indexer) and test setups."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from adapters.files.jsonl import FanOutSink, JsonLinesAnomalySink, JsonLinesDeadLetterSink, JsonLinesIncidentSink
from adapters.files.records import incidents_path
from adapters.files.thresholds import load_thresholds
from adapters.memory import (InMemoryAnomalySink, InMemoryBlobStore, InMemoryIncidentSink, InMemoryMetrics,
                             InMemoryStateStore)
from adapters.faust.settings import StreamingSettings
from adapters.faust.state import FaustTableStateStore
from adapters.kafka.keys import MESSAGE_REASONS, pooling_by_partition
from adapters.kafka.records import INDEXER_REASONS
from adapters.metrics import MetricsServer, PrometheusMetrics, process_registry
from application.detect import DetectTrades
from application.replay import Replay
from domain.detectors import default_detectors
from domain.engine import DetectionEngine
from domain.errors import ConfigError
from domain.guard import VERDICTS
from domain.validation import REASONS
from entrypoints.settings import Settings, load_settings

if TYPE_CHECKING:  # Faust is imported by the streaming processes only: replay starts without it
    import faust

    from adapters.files.suppressions import SuppressionsFile


def size_thresholds(path: str | None) -> dict[str, float] | None:
    return load_thresholds(path).size_thresholds() if path else None


def detector_names(spec: str) -> tuple[str, ...]:
    """The names of a comma-separated list, in any case (as --symbols takes symbols)."""
    return tuple(name.strip().lower() for name in spec.split(",") if name.strip())


def dead_letter_reasons(exports: str) -> tuple[str, ...]:
    """The reasons a kind of process dead-letters for: a worker's (a message it cannot read, a trade
    the record checks or the duplicate guard refuse), the indexer's (a record it cannot read, a
    document Elasticsearch refused); the notifier dead-letters nothing."""
    if exports == "detector":
        return (*MESSAGE_REASONS, *REASONS, *dict.fromkeys(v for v in VERDICTS if v))
    return INDEXER_REASONS if exports == "indexer" else ()


def suppressions_or_none(path: str | None) -> SuppressionsFile | None:
    from adapters.files.suppressions import SuppressionsFile

    return SuppressionsFile(path) if path else None


def jsonl_or_none(cls: type, path: str | None) -> object | None:
    return cls(path) if path else None


def incident_file(out: str | None) -> object | None:
    """A replay's incidents, beside its anomalies (`--out`)."""
    return JsonLinesIncidentSink(incidents_path(out)) if out else None


def elasticsearch_sink(settings: StreamingSettings, incidents: bool = False, retry_seconds: float = math.inf) -> object:
    """The indexer's Elasticsearch sink (of anomalies, or of incidents): transient failures retried
    for as long as they last (a command: for `retry_seconds`)."""
    if not settings.elasticsearch_url:
        raise ConfigError("the indexer needs ELASTICSEARCH_URL (e.g. http://127.0.0.1:9200)")
    from adapters.elasticsearch import AsyncElasticsearchAnomalySink, ElasticsearchSettings, RetryPolicy, connect_async
    from adapters.elasticsearch.mapping import ANOMALIES, INCIDENTS

    refresh = {"true": True, "false": False}.get(settings.elasticsearch_refresh, settings.elasticsearch_refresh)
    return AsyncElasticsearchAnomalySink(
        connect_async(ElasticsearchSettings.from_env(url=settings.elasticsearch_url)),
        index_prefix=settings.elasticsearch_incidents_index if incidents else settings.elasticsearch_index,
        refresh=refresh, replicas=settings.elasticsearch_replicas,
        refresh_interval=settings.elasticsearch_refresh_interval, retry=RetryPolicy(total=retry_seconds),
        kind=INCIDENTS if incidents else ANOMALIES)


def index_retention(settings: StreamingSettings, retention_days: float, metrics: object) -> object | None:
    """The indexer's sweep of expired indices, anomalies' and incidents' (None: kept forever)."""
    if not retention_days:
        return None
    from adapters.elasticsearch import ElasticsearchSettings, connect_async
    from adapters.elasticsearch.retention import ElasticsearchIndexCatalog
    from application.retention import ExpireIndices

    catalog = ElasticsearchIndexCatalog(connect_async(ElasticsearchSettings.from_env(url=settings.elasticsearch_url)),
                                        [settings.elasticsearch_index, settings.elasticsearch_incidents_index])
    return ExpireIndices(catalog, retention_days, metrics)  # type: ignore[arg-type]


def worker_app(settings: StreamingSettings, detect: Callable[..., DetectTrades],
               states: Callable[..., FaustTableStateStore], pool_states: Callable[..., FaustTableStateStore],
               tapes: Callable[..., FaustTableStateStore], metrics: object, report_lateness_ns: int) -> faust.App:
    """The worker's Faust app: its tables' state stores write the changelog in batches."""
    from adapters.faust.app import create_app

    from application.incidents import GroupIncidents

    return create_app(settings, lambda symbols, pools, tape: detect(states=states(table=symbols, batched=True),
                                                                    pool_states=pool_states(table=pools, batched=True),
                                                                    tapes=tapes(table=tape, batched=True)),
                      metrics=metrics,  # type: ignore[arg-type]
                      make_incidents=lambda store: GroupIncidents(store, report_lateness_ns))


def indexer_app(settings: StreamingSettings, sink: object, metrics: object, incident_sink: object,
                retention: object | None, retention_every: float) -> faust.App:
    from adapters.faust.indexer import create_indexer_app

    return create_indexer_app(settings, sink, metrics, incident_sink, retention,  # type: ignore[arg-type]
                              retention_every)


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)  # validated once (entrypoints.settings)
    config = providers.Configuration()  # the same values, for the providers below

    # Domain
    detectors = providers.Singleton(
        default_detectors,
        size_thresholds=providers.Callable(size_thresholds, config.thresholds),
        seed=config.seed.as_int(),
    )
    engine = providers.Singleton(DetectionEngine, detectors=detectors,
                                 pool_of=providers.Callable(pooling_by_partition, config.partitions.as_int()),
                                 enabled=providers.Callable(detector_names, config.detectors))

    # Gateways
    state_store = providers.Selector(config.state, memory=providers.Singleton(InMemoryStateStore,
                                                                              schema=engine.provided.schema))
    pool_state_store = providers.Selector(config.state, memory=providers.Singleton(InMemoryStateStore,
                                                                                   schema=engine.provided.pool_schema))
    tape_store = providers.Selector(config.state, memory=providers.Singleton(InMemoryStateStore,
                                                                             schema=engine.provided.tape_schema))
    collected_anomalies = providers.Singleton(InMemoryAnomalySink)
    anomaly_file = providers.Singleton(jsonl_or_none, JsonLinesAnomalySink, config.out)
    anomaly_sink = providers.Singleton(FanOutSink, collected_anomalies, anomaly_file)
    dead_letter_file = providers.Singleton(jsonl_or_none, JsonLinesDeadLetterSink, config.dead_letters)
    # Only the file (--dead-letters): nothing reads a replay's dead letters back, and kept in memory they
    # grew with every refused trade (a 2,000,000-trade market read twice held 2,000,000, +750 MB).
    dead_letter_sink = providers.Singleton(FanOutSink, dead_letter_file)
    metrics_registry = providers.Singleton(process_registry)
    metrics = providers.Selector(
        config.metrics,
        memory=providers.Singleton(InMemoryMetrics),
        prometheus=providers.Singleton(PrometheusMetrics, registry=metrics_registry,
                                       symbols=providers.Callable(detector_names, config.metrics_symbols),
                                       detectors=providers.Callable(detector_names, config.detectors),
                                       reasons=providers.Callable(dead_letter_reasons, config.metrics_exports),
                                       exports=config.metrics_exports),
    )
    metrics_server = providers.Singleton(MetricsServer, registry=metrics_registry, addr=config.metrics_addr,
                                         port=config.metrics_port.as_int(), span=config.metrics_port_span.as_int())

    # Services
    suppressions = providers.Singleton(suppressions_or_none, config.suppressions)
    detect = providers.Singleton(DetectTrades, engine=engine, states=state_store, pool_states=pool_state_store,
                                 tapes=tape_store, anomalies=anomaly_sink,
                                 dead_letters=dead_letter_sink, metrics=metrics, suppressions=suppressions)
    collected_incidents = providers.Singleton(InMemoryIncidentSink)
    incident_sink = providers.Singleton(FanOutSink, collected_incidents, providers.Singleton(incident_file, config.out))
    replay = providers.Factory(Replay, detect=detect, incidents=providers.Factory(InMemoryBlobStore),
                               incident_sink=incident_sink)

    # Streaming (the worker and the indexer): Kafka topics, the RocksDB table store and Elasticsearch
    # from the settings; the table-backed state stores are made once the Faust app has its tables.
    streaming = providers.Singleton(Settings.streaming, settings)
    indexer_sink = providers.Singleton(elasticsearch_sink, streaming)
    table_state_store = providers.Factory(FaustTableStateStore, schema=engine.provided.schema)
    table_pool_state_store = providers.Factory(FaustTableStateStore, schema=engine.provided.pool_schema)
    table_tape_store = providers.Factory(FaustTableStateStore, schema=engine.provided.tape_schema)
    streaming_detect = providers.Factory(DetectTrades, engine=engine, metrics=metrics, suppressions=suppressions)
    worker_app = providers.Singleton(worker_app, streaming, streaming_detect.provider, table_state_store.provider,
                                     table_pool_state_store.provider, table_tape_store.provider, metrics,
                                     providers.Callable(lambda engine: engine.report_lateness_ns, engine))
    incident_index_sink = providers.Singleton(elasticsearch_sink, streaming, incidents=True)
    retention = providers.Singleton(index_retention, streaming, config.es_retention_days.as_float(), metrics)
    indexer_app = providers.Singleton(indexer_app, streaming, indexer_sink, metrics, incident_index_sink, retention,
                                      config.es_retention_check_seconds.as_float())


def build_container(flags: Mapping[str, str] | None = None, /, **overrides: object) -> Container:
    """Defaults, then STOCKANOMALY_* environment variables, then explicit overrides (CLI flags; None
    = not given), validated together (ConfigError, one line per bad value, naming its variable or, for
    an override, its option in `flags`: setting -> option)."""
    settings = load_settings(flags, **overrides)
    container = Container(settings=settings)
    container.config.from_dict(settings.model_dump())
    # Which metric families this process exports (adapters.metrics.EXPORTS): the indexer and the
    # notifier say theirs; a worker and a replay run the detectors.
    container.config.metrics_exports.from_value("detector")
    return container
