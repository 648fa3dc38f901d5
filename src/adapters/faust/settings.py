"""What the Faust apps need to know (built from `entrypoints.settings.Settings`)."""

from __future__ import annotations

from dataclasses import dataclass

HEARTBEAT_SECONDS = 3.0  # Faust's default heartbeat interval


@dataclass(frozen=True, slots=True)
class StreamingSettings:
    """No defaults here: they, and what each setting means, live in `entrypoints.settings.Settings`."""

    app_id: str
    bootstrap: str
    trades_topic: str
    anomalies_topic: str
    incidents_topic: str
    dlq_topic: str
    partitions: int
    replication_factor: int
    store: str
    data_dir: str
    elasticsearch_url: str
    elasticsearch_index: str
    elasticsearch_incidents_index: str
    elasticsearch_refresh: str
    elasticsearch_replicas: int
    elasticsearch_refresh_interval: str
    web_port: int
    indexer_web_port: int
    processing_guarantee: str
    session_timeout: float  # the worker's (a static member's default is longer)
    indexer_session_timeout: float  # the indexer's: it is never a static member
    group_instance_id: str  # the worker's; empty: dynamic membership
    standby_replicas: int  # the worker's tables'
    take_max: int
    take_within: float
    indexer_take_within: float
    stop_grace: float  # the worker's: how long a take in hand may still take once it is told to stop

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between a worker's heartbeats: at least three per session timeout (Kafka's advice)."""
        return min(HEARTBEAT_SECONDS, self.session_timeout / 3)

    @property
    def indexer_heartbeat_interval(self) -> float:
        """The same for the indexer's session."""
        return min(HEARTBEAT_SECONDS, self.indexer_session_timeout / 3)
