"""The indexer's and the notifier's lag on /metrics, against the real Kafka: rising while they cannot
get on (Elasticsearch or the webhook away), falling to 0 once they have caught up, though the
anomalies topic is written in transactions as the workers write it (each commit leaves a marker
after the last record, which a caught-up consumer never reads as a message)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from domain.model import Anomaly, anomaly_id
from integration_support import (GatedProxy, HookReceiver, eventually, eventually_async, free_port, scrape,
                                 stop_processes)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 2
TS = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York
S = 1_000_000_000


def anomalies(first: int, count: int) -> list[Anomaly]:
    """Each its own symbol, high severity: every one is sent by the notifier (no per-symbol wait)."""
    made = []
    for k in range(first, first + count):
        ts = TS + k * S
        made.append(Anomaly(id=anomaly_id("high_volume", f"S{k}", 2, 7, ts, k), detector="high_volume",
                            symbol=f"S{k}", ts_event=ts, price=113.0, size=50_000, score=5.0, severity="high",
                            reason=f"size 50,000 is large ({k})", sequence=k, session="regular",
                            ts_local="2025-05-05T09:30:00.000000000-04:00"))
    return made


async def commit_as_a_worker(bootstrap: str, topic: str, records: list[Anomaly], transactional_id: str) -> None:
    """In transactions of a few records per partition, as the workers' takes commit them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    await producer.start()
    try:
        for start in range(0, len(records), 3):
            async with producer.transaction():
                for i, a in enumerate(records[start:start + 3]):
                    await producer.send(topic, json.dumps(a.to_dict()).encode(), key=a.symbol.encode(),
                                        partition=(start + i) % PARTITIONS)
    finally:
        await producer.stop()


def gauge(port: int, family: str, topic: str) -> dict[str, float]:
    """Per partition, `family`'s value for `topic` on the process's /metrics (empty: not reported yet)."""
    return {dict(labels)["partition"]: value for (name, labels), value in scrape(port).items()
            if name == family and dict(labels).get("topic") == topic}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop_processes(started)


@pytest.mark.asyncio
async def test_the_indexer_lag_rises_while_elasticsearch_is_away_and_falls_to_zero_once_indexed(
        kafka_bootstrap, new_topic, suffix, es_url, es_prefix, tmp_path, processes) -> None:
    topics = {name: await new_topic(name, partitions=PARTITIONS) for name in ("trades", "anomalies", "incidents", "dlq")}
    metrics_port = free_port()
    gate = GatedProxy(es_url)  # refuses connections until opened: Elasticsearch away
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, STOCKANOMALY_APP_ID=f"it-lag-{suffix}",
               STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
               STOCKANOMALY_INCIDENTS_TOPIC=topics["incidents"], STOCKANOMALY_DLQ_TOPIC=topics["dlq"],
               STOCKANOMALY_PARTITIONS=str(PARTITIONS), ELASTICSEARCH_URL=gate.url,
               STOCKANOMALY_ES_INDEX_PREFIX=es_prefix, STOCKANOMALY_ES_INCIDENTS_PREFIX=f"{es_prefix}.incidents",
               STOCKANOMALY_DATA_DIR=str(tmp_path / "data"), STOCKANOMALY_INDEXER_WEB_PORT=str(free_port()),
               STOCKANOMALY_INDEXER_METRICS_PORT=str(metrics_port), STOCKANOMALY_METRICS_ADDR="127.0.0.1")
    log_path = tmp_path / "indexer.log"
    try:
        with open(log_path, "ab") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "faust", "-A", "entrypoints.indexer", "worker",
                                               "-l", "warn"], cwd=tmp_path, env=env, stdout=log,
                                              stderr=subprocess.STDOUT))
        anomalies_topic = topics["anomalies"]
        await commit_as_a_worker(kafka_bootstrap, anomalies_topic, anomalies(0, 6), f"it-lag-w-{suffix}")

        def lag() -> dict[str, float]:
            try:
                return gauge(metrics_port, "stockanomaly_indexer_lag", anomalies_topic)
            except OSError:  # /metrics not served yet
                return {}

        async def reported(at_least: int) -> dict[str, float] | None:
            found = lag()
            return found if len(found) == PARTITIONS and sum(found.values()) >= at_least else None

        seen = await eventually_async(lambda: reported(6), timeout=90, interval=0.5,
                                      what=f"the indexer's lag of 6 anomalies ({log_path})")
        await commit_as_a_worker(kafka_bootstrap, anomalies_topic, anomalies(6, 9), f"it-lag-w-{suffix}")
        grown = await eventually_async(lambda: reported(int(sum(seen.values())) + 9), timeout=60, interval=0.5,
                                       what="the indexer's lag growing while Elasticsearch is away")
        assert grown != seen

        async def stalled() -> bool:
            waiting = gauge(metrics_port, "stockanomaly_indexer_stalled_seconds", anomalies_topic)
            return bool(waiting) and max(waiting.values()) > 0

        await eventually_async(stalled, timeout=30, interval=0.5, what="the indexer's partitions stalled")
        incidents_lag = gauge(metrics_port, "stockanomaly_indexer_lag", topics["incidents"])
        assert incidents_lag == {"0": 0.0, "1": 0.0}  # an empty topic is not behind

        gate.open()

        async def caught_up() -> dict[str, float] | None:
            found = lag()
            return found if found and set(found.values()) == {0.0} else None

        # Not 1: the commit marker after the last record of each partition is no message.
        assert await eventually_async(caught_up, timeout=120, interval=0.5,
                                      what=f"the indexer's lag back to 0 ({log_path})") == {"0": 0.0, "1": 0.0}
        waiting = gauge(metrics_port, "stockanomaly_indexer_stalled_seconds", anomalies_topic)
        assert waiting == {"0": 0.0, "1": 0.0}
        assert "stockanomaly_consumer_lag" not in {name for name, _ in scrape(metrics_port)}  # the workers' own
    finally:
        gate.close()


@pytest.mark.asyncio
async def test_the_notifier_lag_rises_while_its_webhook_is_down_and_falls_to_zero_once_sent(
        kafka_bootstrap, new_topic, suffix, tmp_path) -> None:
    topic = await new_topic("anomalies", partitions=PARTITIONS)
    hook_port, metrics_port, receiver = free_port(), free_port(), HookReceiver()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, STOCKANOMALY_ANOMALIES_TOPIC=topic,
               STOCKANOMALY_APP_ID=f"it-lag-{suffix}", STOCKANOMALY_NOTIFY_MIN_SEVERITY="medium",
               STOCKANOMALY_NOTIFIER_METRICS_PORT=str(metrics_port), STOCKANOMALY_METRICS_ADDR="127.0.0.1")
    log_path = tmp_path / "notifier.log"
    with open(log_path, "ab") as log:
        notifier = subprocess.Popen([str(Path(sys.executable).parent / "stockanomaly"), "--log-level", "INFO",
                                     "notify", "--webhook", f"http://127.0.0.1:{hook_port}/hook"],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await commit_as_a_worker(kafka_bootstrap, topic, anomalies(0, 4), f"it-lag-n-{suffix}")

        def lag() -> dict[str, float]:
            try:
                return gauge(metrics_port, "stockanomaly_notifier_lag", topic)
            except OSError:  # /metrics not served yet
                return {}

        async def reported(at_least: int) -> dict[str, float] | None:
            found = lag()
            return found if len(found) == PARTITIONS and sum(found.values()) >= at_least else None

        # The receiver is down: the notifier holds its first batch, retrying; it counts as waiting.
        seen = await eventually_async(lambda: reported(4), timeout=90, interval=0.5,
                                      what=f"the notifier's lag of 4 records ({log_path})")
        await commit_as_a_worker(kafka_bootstrap, topic, anomalies(4, 6), f"it-lag-n-{suffix}")
        grown = await eventually_async(lambda: reported(int(sum(seen.values())) + 6), timeout=60, interval=0.5,
                                       what="the notifier's lag growing while its webhook is down")
        assert grown != seen
        await receiver.start(hook_port)

        async def caught_up() -> dict[str, float] | None:
            found = lag()
            return found if found and set(found.values()) == {0.0} else None

        assert await eventually_async(caught_up, timeout=120, interval=0.5,
                                      what=f"the notifier's lag back to 0 ({log_path})") == {"0": 0.0, "1": 0.0}
        assert sorted(receiver.ids) == sorted(a.id for a in anomalies(0, 10))
        assert gauge(metrics_port, "stockanomaly_notifier_stalled_seconds", topic) == {"0": 0.0, "1": 0.0}
        # Its event loop beat all along, the webhook's retries included (they wait, they do not block):
        # a beat within the last few seconds, measured when scraped.
        def since_beat() -> float | None:  # 0.0 exactly is also "never beat": wait for a reading above it
            seconds = scrape(metrics_port)[("stockanomaly_event_loop_blocked_seconds", ())]
            return seconds if seconds > 0 else None

        assert eventually(since_beat, timeout=10, what="the notifier's event loop gauge") < 5
    finally:
        stop_processes([notifier])
        await receiver.stop()
