"""Settings for the local services, read from environment variables with local defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Newest Kafka verified with aiokafka 0.14 and faust-streaming 0.15 (see docs/services.md).
KAFKA_VERSION = "4.4.0"
# Newest 9.x integ-test-zip on Maven Central; matches the elasticsearch 9 Python client.
ELASTICSEARCH_VERSION = "9.5.0"

SERVICES = ("kafka", "elasticsearch", "prometheus", "alertmanager")
# Started only when named (or with `all`): the Docker engine for the compose stack's test.
OPTIONAL = ("docker",)
ALIASES = {"es": "elasticsearch", "elastic": "elasticsearch", "prom": "prometheus", "am": "alertmanager"}


class SettingsError(ValueError):
    """An environment variable holds a value the services cannot use."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _port(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={port} is outside 1-65535")
    return port


@dataclass(frozen=True, slots=True)
class Settings:
    repo: Path
    cache: Path
    run: Path
    host: str
    timeout_s: float
    kafka_version: str
    kafka_port: int
    kafka_controller_port: int
    kafka_heap: str
    es_version: str
    es_port: int
    es_transport_port: int
    es_heap: str
    es_user: str
    es_java_home: str
    prometheus_port: int
    alertmanager_port: int
    alert_webhook_port: int

    @classmethod
    def from_env(cls) -> Settings:
        cache = Path(_env("STOCKANOMALY_CACHE", str(Path.home() / ".cache" / "stockanomaly")))
        run = Path(_env("STOCKANOMALY_RUN_DIR", str(REPO / ".services")))
        return cls(
            repo=REPO,
            cache=cache.expanduser().resolve(),
            run=run.expanduser().resolve(),
            host="127.0.0.1",
            timeout_s=float(_env("STOCKANOMALY_SERVICE_TIMEOUT", "180")),
            kafka_version=_env("STOCKANOMALY_KAFKA_VERSION", KAFKA_VERSION),
            kafka_port=_port("STOCKANOMALY_KAFKA_PORT", 9092),
            kafka_controller_port=_port("STOCKANOMALY_KAFKA_CONTROLLER_PORT", 9093),
            kafka_heap=_env("STOCKANOMALY_KAFKA_HEAP", "512m"),
            es_version=_env("STOCKANOMALY_ES_VERSION", ELASTICSEARCH_VERSION),
            es_port=_port("STOCKANOMALY_ES_PORT", 9200),
            es_transport_port=_port("STOCKANOMALY_ES_TRANSPORT_PORT", 9300),
            es_heap=_env("STOCKANOMALY_ES_HEAP", "512m"),
            es_user=_env("STOCKANOMALY_ES_USER", "stockanomaly-es"),
            es_java_home=os.environ.get("STOCKANOMALY_ES_JAVA_HOME")
            or os.environ.get("ES_JAVA_HOME", ""),
            prometheus_port=_port("STOCKANOMALY_PROMETHEUS_PORT", 9090),
            alertmanager_port=_port("STOCKANOMALY_ALERTMANAGER_PORT", 9094),  # 9093 is Kafka's controller
            alert_webhook_port=_port("STOCKANOMALY_ALERT_WEBHOOK_PORT", 9099),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def es_url(self) -> str:
        return f"http://{self.host}:{self.es_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.host}:{self.alertmanager_port}"

    @property
    def prometheus_targets_dir(self) -> Path:
        return self.run / "prometheus" / "targets"

    @property
    def prometheus_rules_dir(self) -> Path:
        return self.run / "prometheus" / "local-rules"


def resolve_names(names: list[str], default: tuple[str, ...] = SERVICES) -> list[str]:
    """Expand aliases (`all`: every service, the optional ones too), default to `default`, keep
    the canonical start order."""
    every = SERVICES + OPTIONAL
    wanted = {ALIASES.get(n, n) for n in names} or set(default)
    if "all" in wanted:
        wanted = set(every)
    unknown = wanted - set(every)
    if unknown:
        raise SettingsError(f"unknown service(s): {', '.join(sorted(unknown))}; "
                            f"choose from {', '.join(every)} or all")
    return [s for s in every if s in wanted]
