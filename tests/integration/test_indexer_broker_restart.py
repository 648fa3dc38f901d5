"""The indexer across a Kafka broker killed and restarted while it indexes: it stays up and resumes by
itself, and Elasticsearch ends up with every anomaly the topic holds, each once, with the indexer's
committed offsets at the end of every partition.

The anomalies are written as the workers write them (small transactions, read_committed by the
indexer), before, during and after the outage. The broker is killed the moment a take is in
Elasticsearch, as the indexer commits that take's offsets in the partitions' transactions: where an
indexer seen in CI exited (code 1, "Unexpected error during batch delivery") when a transaction's
request failed for good. Made fatal on purpose (a retried commit request raising instead), that
failure stopped the indexer here in each run; as the client stands, it retries until the broker is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import ApiError, Elasticsearch, helpers

from domain.model import Anomaly, anomaly_id
from integration_support import eventually_async, free_port, read_all, stop_processes

pytestmark = pytest.mark.integration
PARTITIONS = 4
PER_TRANSACTION = 8  # two anomalies a partition per transaction, as a worker's take commits them
TS = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York: every document in one daily index
INDEXED = '"event": "indexed"'  # the indexer's line for a take in Elasticsearch, before its commit
DOWN_SECONDS = 5.0  # the broker stays away a while: the indexer's requests fail against a closed port


def anomaly(n: int) -> Anomaly:
    symbol = f"S{n % 40}"
    ts = TS + n * 1_000_000
    return Anomaly(id=anomaly_id("high_volume", symbol, 2, 7, ts, n), detector="high_volume", symbol=symbol,
                   ts_event=ts, price=113.0, size=50_000, score=5.0, severity="high",
                   reason=f"size 50,000 is large ({n})", sequence=n)


class Writer:
    """Writes anomalies to the topic in transactions until stopped, like a worker through the outage:
    a transaction that fails (the broker gone under it) is aborted, invisible to read_committed, and
    the producer is made again under the same transactional id (fencing whatever was left open)."""

    def __init__(self, bootstrap: str, topic: str, transactional_id: str) -> None:
        self.bootstrap, self.topic, self.transactional_id = bootstrap, topic, transactional_id
        self.sent = 0  # anomalies made so far (those of failed transactions included)
        self.failed_transactions = 0
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        producer: AIOKafkaProducer | None = None
        while not self.stopping.is_set():
            try:
                if producer is None:
                    producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap,
                                                transactional_id=self.transactional_id)
                    await producer.start()
                async with producer.transaction():
                    for _ in range(PER_TRANSACTION):
                        a = anomaly(self.sent)
                        await producer.send(self.topic, json.dumps(a.to_dict()).encode(), key=a.symbol.encode(),
                                            partition=self.sent % PARTITIONS)
                        self.sent += 1
                await asyncio.sleep(0.05)  # pacing the writer, not waiting for a condition
            except Exception:  # noqa: BLE001 - the broker is away: try again once it is back
                self.failed_transactions += 1
                if producer is not None:
                    with contextlib.suppress(Exception):  # whatever state the failure left it in
                        await producer.stop()
                producer = None
                await asyncio.sleep(0.5)  # pacing the retries against a closed port
        if producer is not None:
            await producer.stop()

    async def close_partitions(self) -> None:
        """One last anomaly per partition outside any transaction, so each partition's end offset is the
        offset after its last record (a transaction ends with a commit marker, which a consumer never
        commits past until a record follows it)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for partition in range(PARTITIONS):
                a = anomaly(self.sent)
                self.sent += 1
                await producer.send_and_wait(self.topic, json.dumps(a.to_dict()).encode(), key=a.symbol.encode(),
                                             partition=partition)
        finally:
            await producer.stop()


@pytest_asyncio.fixture
async def topics(new_topic) -> AsyncIterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    yield {name: await new_topic(name, partitions=PARTITIONS) for name in ("anomalies", "incidents", "dlq", "trades")}


def document_ids(es: Elasticsearch, prefix: str) -> list[str] | None:
    """Every document id in the anomalies' indices (one per document: ids are unique per index); None
    while an index the indexer just created has its shard starting."""
    try:
        es.indices.refresh(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
        return [hit["_id"] for hit in helpers.scan(es, index=f"{prefix}-*", query={"query": {"match_all": {}}},
                                                   _source=False, allow_no_indices=True, ignore_unavailable=True)]
    except ApiError as exc:
        if exc.meta.status == 503:
            return None
        raise


async def committed_and_ends(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int | None, int]]:
    """Per partition, the group's committed offset and the partition's end offset."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {tp.partition: (committed[tp].offset if tp in committed else None, ends[tp]) for tp in tps}
    finally:
        await consumer.stop()
        await admin.close()


@pytest.mark.asyncio
async def test_the_indexer_rides_out_a_broker_killed_while_it_indexes_and_writes_each_anomaly_once(
        kafka_bootstrap: str, topics: dict[str, str], es: Elasticsearch, es_url: str, es_prefix: str, suffix: str,
        broker: Any, tmp_path: Path) -> None:
    app_id = f"it-indexer-{suffix}"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, ELASTICSEARCH_URL=es_url,
               STOCKANOMALY_APP_ID=app_id, STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
               STOCKANOMALY_INCIDENTS_TOPIC=topics["incidents"], STOCKANOMALY_DLQ_TOPIC=topics["dlq"],
               STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_PARTITIONS=str(PARTITIONS),
               STOCKANOMALY_ES_INDEX_PREFIX=es_prefix, STOCKANOMALY_ES_INCIDENTS_PREFIX=f"{es_prefix}.incidents",
               STOCKANOMALY_DATA_DIR=str(tmp_path / "data"), STOCKANOMALY_INDEXER_WEB_PORT=str(free_port()),
               STOCKANOMALY_INDEXER_METRICS_PORT=str(free_port()), STOCKANOMALY_METRICS_ADDR="127.0.0.1",
               STOCKANOMALY_LOG_LEVEL="DEBUG")
    (tmp_path / "data").mkdir()
    log_path = tmp_path / "indexer.log"
    writer = Writer(kafka_bootstrap, topics["anomalies"], f"it-writer-{suffix}")
    with open(log_path, "ab") as log:
        indexer = subprocess.Popen([sys.executable, "-m", "faust", "-A", "entrypoints.indexer", "worker", "-l", "warn"],
                                   cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    writing = asyncio.create_task(writer.run())
    try:
        async def indexing() -> bool:
            found = await asyncio.to_thread(document_ids, es, es_prefix)
            return len(found or []) >= 200

        await eventually_async(indexing, timeout=180, interval=0.5,
                               what=f"the indexer writing its first anomalies ({log_path})")
        # The broker killed as a take has been written to Elasticsearch: its offsets commit now, in
        # the partitions' transactions (the `indexed` line comes between the two).
        takes = log_path.read_text(errors="replace").count(INDEXED)

        async def take_written() -> bool:
            return log_path.read_text(errors="replace").count(INDEXED) > takes

        await eventually_async(take_written, timeout=60, interval=0.002, what=f"a take indexed ({log_path})")
        at_kill = writer.sent
        broker.kill()
        await asyncio.sleep(DOWN_SECONDS)  # the outage's length, not a wait for a condition
        await asyncio.to_thread(broker.start)

        async def written_after_restart() -> bool:
            return writer.sent >= at_kill + 400

        await eventually_async(written_after_restart, timeout=180, interval=0.5,
                               what="400 anomalies more written since the kill")
        writer.stopping.set()
        await writing
        await writer.close_partitions()

        records = await read_all(kafka_bootstrap, topics["anomalies"], partition_count=PARTITIONS,
                                 isolation_level="read_committed")
        on_topic = [json.loads(r.value)["id"] for r in records]
        assert len(on_topic) == len(set(on_topic)) > at_kill  # the writer never repeats an id
        group = f"{app_id}-indexer"
        offsets: dict[int, tuple[int | None, int]] = {}

        async def caught_up() -> bool:
            assert indexer.poll() is None, f"the indexer exited (code {indexer.returncode}): " \
                                           f"{log_path.read_text(errors='replace')[-3000:]}"
            offsets.update(await committed_and_ends(kafka_bootstrap, group, topics["anomalies"]))
            return all(committed == end for committed, end in offsets.values())

        await eventually_async(caught_up, timeout=180, interval=1.0,
                               what=f"the indexer's committed offsets at the end offsets ({log_path})")

        async def searched() -> list[str] | None:
            return await asyncio.to_thread(document_ids, es, es_prefix)

        in_elasticsearch = await eventually_async(searched, timeout=30, what="a search of the anomalies' indices")
        assert len(in_elasticsearch) == len(set(in_elasticsearch))  # each document once...
        assert sorted(in_elasticsearch) == sorted(on_topic)  # ... and exactly the topic's anomalies
        assert indexer.poll() is None, f"the indexer exited (code {indexer.returncode}): " \
                                       f"{log_path.read_text(errors='replace')[-3000:]}"
        print(f"{len(on_topic):,} anomalies on the topic and in Elasticsearch; the writer's failed "
              f"transactions {writer.failed_transactions}; committed vs end {offsets}")
        indexer.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(indexer.wait, 60) == 0
        output = log_path.read_text(errors="replace")
        assert "Traceback" not in output, output[-5000:]
    finally:
        writer.stopping.set()
        await writing
        stop_processes([indexer])
