"""Before a streaming process starts: its topics exist with the configured partition count."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka.errors import KafkaError

from adapters.faust.settings import StreamingSettings
from adapters.kafka.topics import ensure_topics
from domain.errors import ConfigError


def require_topics(settings: StreamingSettings, who: str) -> None:
    """Create `trades`, `anomalies`, `incidents` and `trades.dlq` when missing; exit with one line when a topic has
    another partition count or Kafka cannot be reached. Runs before Faust's event loop starts (in a
    thread of its own, so that loop is left as Faust set it up)."""
    names = [settings.trades_topic, settings.anomalies_topic, settings.incidents_topic, settings.dlq_topic]
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, ensure_topics(settings.bootstrap, names, settings.partitions,
                                                   client_id=f"{settings.app_id}-{who}")).result()
    except ConfigError as exc:
        sys.exit(f"stockanomaly {who}: {exc}")
    except KafkaError as exc:
        sys.exit(f"stockanomaly {who}: Kafka at {settings.bootstrap}: {type(exc).__name__}: {exc}")


def before_start(app: Any, settings: StreamingSettings, who: str) -> None:
    """Check the topics when `faust -A ... worker` prepares the app (not when a test imports it)."""

    @app.on_worker_init.connect
    def check_topics(sender: Any, **kwargs: Any) -> None:
        require_topics(settings, who)
