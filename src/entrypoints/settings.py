"""Every setting of the project, in one place: defaults, then the environment, then explicit values.

Read once per process by `build_container`, validated by pydantic-settings: a bad value is one
line naming the variable (`STOCKANOMALY_CHUNK_SIZE: Input should be a valid integer, got 'abc'`),
never a traceback from wherever it was first used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, AliasChoices, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.elasticsearch.mapping import check_prefix
from adapters.faust.settings import StreamingSettings
from domain.detectors import DETECTOR_NAMES
from domain.errors import ConfigError, unknown_detectors

Port = Annotated[int, Field(ge=0, le=65_535)]
PREFIX = "STOCKANOMALY_"
DYNAMIC_SESSION_TIMEOUT = 10.0  # seconds: how long a killed worker's partitions wait for the group to notice
STATIC_SESSION_TIMEOUT = 30.0  # seconds: a static member's, longer than its graceful restart (see group_instance_id)


def check_bootstrap(servers: str) -> str:
    """Kafka's bootstrap servers: comma-separated host:port (what the clients would otherwise reject
    with a traceback at first use)."""
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError(f"{server.strip()!r} is not host:port (comma-separate several)")
    return servers


def check_http_url(url: str) -> str:
    """An http(s)://host[:port]/... URL (Elasticsearch's, a webhook's): ValueError otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    return url


KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]+")
# The app id prefixes the topics Faust makes for the worker (`<app id>-incident-state-changelog`, the
# longest): Kafka's limit of 249 characters for a name, less that suffix, with room to spare.
MAX_APP_ID = 200


def check_topic(name: str) -> str:
    """A name Kafka accepts for a topic (what it would otherwise refuse only once the worker runs)."""
    if not KAFKA_NAME.fullmatch(name) or name in (".", "..") or len(name) > 249:
        raise ValueError("a topic name is 1 to 249 of the characters A-Z a-z 0-9 . _ - (not . or ..)")
    return name


def check_app_id(app_id: str) -> str:
    """The Faust app id: the consumer group, and the prefix of the topics Faust creates."""
    if not KAFKA_NAME.fullmatch(app_id) or len(app_id) > MAX_APP_ID:
        raise ValueError(f"an app id is 1 to {MAX_APP_ID} of the characters A-Z a-z 0-9 . _ - "
                         "(it prefixes the worker's topic names)")
    return app_id


def check_group_instance_id(instance_id: str) -> str:
    """Kafka's group.instance.id (static membership), empty for none: the broker holds it to a topic
    name's rules and would refuse any other only when the worker joins its group."""
    if instance_id and (not KAFKA_NAME.fullmatch(instance_id) or instance_id in (".", "..") or len(instance_id) > 249):
        raise ValueError("an instance id is 1 to 249 of the characters A-Z a-z 0-9 . _ - (not . or ..), "
                         "or empty for none")
    return instance_id


def check_store(url: str) -> str:
    """Faust's table store: RocksDB (the worker's default, state on disk) or memory (tests)."""
    if urlsplit(url).scheme not in ("rocksdb", "memory"):
        raise ValueError("choose rocksdb:// (state on disk, under the data directory) or memory://")
    return url


ES_INTERVAL = re.compile(r"-1|0|[0-9]+(d|h|m|s|ms|micros|nanos)")


def check_interval(value: str) -> str:
    """An Elasticsearch time value for an index setting (`100ms`, `1s`; -1 turns refreshes off)."""
    if not ES_INTERVAL.fullmatch(value):
        raise ValueError("an Elasticsearch interval is a whole number with a unit (d, h, m, s, ms, micros, "
                         "nanos), or -1 for none")
    return value


def check_detectors(spec: str) -> str:
    """Comma-separated detector names in any case; blank: all of them. Checked here (the engine checks
    too) so that a name no detector has is refused naming the variable or flag that gave it."""
    names = {name.strip().lower() for name in spec.split(",") if name.strip()}
    unknown = sorted(names - set(DETECTOR_NAMES))
    if unknown:
        raise ValueError(unknown_detectors(unknown, DETECTOR_NAMES))
    return spec if names else ",".join(DETECTOR_NAMES)


def _url_or_default(url: str) -> str:
    return check_http_url(url) if url else url  # empty: the commands' default, http://127.0.0.1:9200


def _env(name: str) -> AliasChoices:
    """A setting read from a variable without the STOCKANOMALY_ prefix (shared with other tools)."""
    return AliasChoices(name.lower(), name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid", populate_by_name=True,
                                      validate_default=True)

    # The core (replay and the worker)
    thresholds: str = ""  # a calibrate output file; empty: the detectors' own defaults
    # empty (an exported but blank STOCKANOMALY_DETECTORS): all of them, as for the other files' settings
    detectors: Annotated[str, AfterValidator(check_detectors)] = ",".join(DETECTOR_NAMES)
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 7  # the Isolation Forest's (scikit-learn's range)
    partitions: Annotated[int, Field(ge=1, le=10_000)] = 4  # of the topics; model pools follow them
    # Copies Kafka keeps of every topic the project creates (trades, anomalies, incidents, trades.dlq,
    # the worker's changelogs, Faust's own): 1 suits one broker; a cluster wants 3, so that losing a
    # broker loses no trade, anomaly or state.
    replication_factor: Annotated[int, Field(ge=1, le=32)] = 1
    # trades read per source chunk; at most 1,048,576 (a CSV read block of 128 MiB: Arrow takes no more than 2 GiB)
    chunk_size: Annotated[int, Field(ge=1, le=1_048_576)] = 16_384
    out: str = ""
    verdicts: str = ""  # where `stockanomaly label` writes analysts' verdicts; empty: ./verdicts.jsonl
    suppressions: str = ""  # a suppressions file (stockanomaly suppress); empty: none. Re-read when it changes
    dead_letters: str = ""
    state: Literal["memory"] = "memory"  # the worker keeps state in its Faust tables instead
    metrics: Literal["memory", "prometheus"] = "memory"
    metrics_symbols: str = ""  # symbols allowed as a label value of stockanomaly_anomalies_total
    # Loopback unless told otherwise: the image sets 0.0.0.0 (Prometheus scrapes it from another container).
    metrics_addr: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    metrics_port: Port = 9100
    # Ports tried from metrics_port on, the first free one bound: replicas on one network (compose
    # --scale with host networking) each take their own and Prometheus scrapes the range.
    metrics_port_span: Annotated[int, Field(ge=1, le=1_000)] = 1
    indexer_metrics_port: Port = 9101
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Streaming: Kafka and the Faust apps
    kafka_bootstrap_servers: Annotated[str, AfterValidator(check_bootstrap)] = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"))
    app_id: Annotated[str, AfterValidator(check_app_id)] = "stockanomaly"
    trades_topic: Annotated[str, AfterValidator(check_topic)] = "trades"
    anomalies_topic: Annotated[str, AfterValidator(check_topic)] = "anomalies"
    incidents_topic: Annotated[str, AfterValidator(check_topic)] = "incidents"
    dlq_topic: Annotated[str, AfterValidator(check_topic)] = "trades.dlq"
    store: Annotated[str, AfterValidator(check_store)] = "rocksdb://"
    # The worker's RocksDB files, relative to its working directory; checked (created) when it starts.
    data_dir: Annotated[str, Field(min_length=1)] = "stockanomaly-data"
    # Faust's web server (1..65535: it does not take 0 for "any free port")
    worker_web_port: Annotated[int, Field(ge=1, le=65_535)] = 6066
    indexer_web_port: Annotated[int, Field(ge=1, le=65_535)] = 6067
    # exactly_once: changelog writes, outputs and offsets commit together (see README); the
    # at_least_once alternative can lose an anomaly whose state was saved just before a crash.
    processing_guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    # Seconds without a heartbeat before Kafka gives a worker's (or the indexer's) partitions to the
    # others: how long a killed process's partitions wait. Heartbeats come from Faust's consumer
    # thread, every third of this at most, so a long take does not miss them. From the brokers' least
    # (group.min.session.timeout.ms, 6 s) to Faust's former default. Unset: 10 s, or 30 s for a
    # static member (below).
    kafka_session_timeout: Annotated[float | None, Field(ge=6, le=60)] = None
    # The worker's static membership of its consumer group (Kafka's group.instance.id; empty: none,
    # the group reshuffles whenever a worker leaves or joins). Unique to each worker and kept across
    # its restarts: one back within the session timeout gets its own partitions again, and nobody
    # else's move. A graceful restart here took 15-20 s from SIGTERM to rejoining (benchmarks/
    # rolling_restart.py): with 10 s the session ran out first and the group reshuffled anyway, once
    # when it ran out and again when the worker came back, each a longer pause than a dynamic member's.
    group_instance_id: Annotated[str, AfterValidator(check_group_instance_id)] = ""
    # How many other workers keep a warm copy of each partition's state (Faust's standby replicas),
    # so that one taking a partition over reads only the changelog's tail instead of all of it. Off
    # by default: see README, "Fail-over".
    table_standby_replicas: Annotated[int, Field(ge=0, le=9)] = 0
    take_max: Annotated[int, Field(ge=1)] = 256  # messages per detect call (per bulk for the indexer) at most
    # Seconds a take in hand may still take once the worker is told to stop (SIGTERM): then it is given
    # up uncommitted, and its successor processes it again. A take needs tens of milliseconds; one
    # still running is waiting on a broker that is away (its sends are retried for 20 minutes). 5 s,
    # so that the rest of the stop (3-4 s with the broker away) fits docker's 10 s before its SIGKILL.
    stop_grace: Annotated[float, Field(ge=0, le=600)] = 5.0
    take_within: Annotated[float, Field(gt=0, le=10)] = 0.05  # seconds to wait for more messages per take
    # The indexer's: 0 = a bulk of whatever has arrived (bulks grow by themselves while one is in
    # flight); anomalies are few, and waiting for more of them only delays the first.
    indexer_take_within: Annotated[float, Field(ge=0, le=10)] = 0.0

    # The notifier (stockanomaly notify): webhooks, comma-separated, each `json:URL` (the default) or
    # `slack:URL` (Slack's incoming-webhook body)
    notify_webhooks: str = ""
    notify_min_severity: Literal["low", "medium", "high"] = "medium"
    notify_per_symbol_seconds: Annotated[float, Field(ge=0)] = 300.0  # of event time; 0: no limit
    notifier_metrics_port: Port = 9102
    notify_group: str = ""  # the notifier's consumer group; empty: <app id>-notifier-<topic>

    # Elasticsearch (written by the indexer)
    elasticsearch_url: Annotated[str, AfterValidator(_url_or_default)] = Field("", validation_alias=_env("ELASTICSEARCH_URL"))
    es_index_prefix: Annotated[str, AfterValidator(check_prefix)] = "stockanomaly-anomalies"
    # Incidents get indices of their own; keep the name out of the anomalies' pattern (<prefix>-*).
    es_incidents_prefix: Annotated[str, AfterValidator(check_prefix)] = "stockanomaly-incidents"
    # "true": each bulk is searchable when it returns (a refresh per bulk, so one per indexer take;
    # takes grow under load, so a backlog is still written 256 anomalies a bulk); "false": after the
    # refresh interval.
    es_refresh: Literal["true", "false", "wait_for"] = "true"
    es_refresh_interval: Annotated[str, AfterValidator(check_interval)] = "100ms"
    es_replicas: Annotated[int, Field(ge=0)] = 1
    # Days an index is kept after its creation (one per event day); 0: forever. Checked by the indexer.
    es_retention_days: Annotated[float, Field(ge=0)] = 90.0
    es_retention_check_seconds: Annotated[float, Field(gt=0)] = 3600.0

    @model_validator(mode="after")
    def _topics_apart(self) -> Settings:
        topics = {"trades": self.trades_topic, "dead-letter": self.dlq_topic, "anomalies": self.anomalies_topic,
                  "incidents": self.incidents_topic}
        if len(set(topics.values())) < len(topics):
            raise ValueError("the trades, dead-letter, anomalies and incidents topics must be four different topics, got "
                             + ", ".join(f"{role} {name!r}" for role, name in topics.items()))
        return self

    def check_index_prefixes(self) -> None:
        """What the indexer writes both kinds with: each kind's template matches <prefix>-*, and one
        prefix inside the other's pattern would give indices two templates (Elasticsearch refuses
        the second, at the first anomaly) and mix anomalies and incidents in searches."""
        a, i = self.es_index_prefix, self.es_incidents_prefix
        if a == i or i.startswith(f"{a}-") or a.startswith(f"{i}-"):
            raise ConfigError(f"STOCKANOMALY_ES_INCIDENTS_PREFIX {i!r} must differ from STOCKANOMALY_ES_INDEX_PREFIX "
                              f"{a!r}, and neither may start with the other and '-' (each kind has the indices "
                              "<prefix>-*)")

    @property
    def session_timeout(self) -> float:
        """The Kafka session timeout in seconds: as set, else a static member's or a dynamic one's."""
        if self.kafka_session_timeout is not None:
            return self.kafka_session_timeout
        return STATIC_SESSION_TIMEOUT if self.group_instance_id else DYNAMIC_SESSION_TIMEOUT

    def streaming(self) -> StreamingSettings:
        return StreamingSettings(
            app_id=self.app_id, bootstrap=self.kafka_bootstrap_servers, trades_topic=self.trades_topic,
            anomalies_topic=self.anomalies_topic, incidents_topic=self.incidents_topic, dlq_topic=self.dlq_topic,
            partitions=self.partitions, replication_factor=self.replication_factor,
            store=self.store, data_dir=self.data_dir, elasticsearch_url=self.elasticsearch_url,
            elasticsearch_index=self.es_index_prefix, elasticsearch_incidents_index=self.es_incidents_prefix,
            elasticsearch_refresh=self.es_refresh,
            elasticsearch_replicas=self.es_replicas, elasticsearch_refresh_interval=self.es_refresh_interval,
            web_port=self.worker_web_port, indexer_web_port=self.indexer_web_port,
            processing_guarantee=self.processing_guarantee, session_timeout=self.session_timeout,
            indexer_session_timeout=self.kafka_session_timeout or DYNAMIC_SESSION_TIMEOUT,
            group_instance_id=self.group_instance_id, standby_replicas=self.table_standby_replicas,
            take_max=self.take_max, take_within=self.take_within,
            indexer_take_within=self.indexer_take_within, stop_grace=self.stop_grace)


def load_settings(flags: Mapping[str, str] | None = None, /, **explicit: object) -> Settings:
    """Settings from the defaults, the environment and `explicit` values (CLI flags; None = not
    given). Raises ConfigError with one line per bad value, naming its variable, or for an explicit
    value its flag (`flags`: setting -> the option that gave it)."""
    given = {k: v for k, v in explicit.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("; ".join(_problem(e, given, flags or {}) for e in exc.errors())) from None


def _problem(error: ErrorDetails, given: dict[str, object], flags: Mapping[str, str]) -> str:
    if not error["loc"]:  # a rule across settings
        return str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0])
    name = flags.get(field, field) if field in given else _variable(field)
    if error["type"] == "extra_forbidden":
        return f"{name}: not a setting"
    return f"{name}: {str(error['msg']).removeprefix('Value error, ')}, got {error['input']!r}"


def _variable(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"{PREFIX}{field.upper()}"
