"""The Faust worker on the real Kafka: same anomalies as the embedded replay, across kills and rebalances."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from adapters.kafka.codec import encode_batch
from adapters.memory import InMemoryTradeSource
from adapters.synthetic import generate_market
from entrypoints.container import build_container
from integration_support import as_messages, eventually_async, read_all

pytestmark = pytest.mark.integration
PARTITIONS = 4


@pytest.fixture(scope="module")
def market() -> np.ndarray:
    return generate_market(symbols=4, trades=80_000, seed=11).trades


@pytest.fixture(scope="module")
def embedded_ids(market: np.ndarray) -> set[str]:
    container = build_container()
    container.replay()(InMemoryTradeSource(market, chunk_size=10_000))
    ids = {a.id for a in container.collected_anomalies().anomalies}
    assert len(ids) >= 10
    return ids


class Stream:
    """Topics, a producer and worker processes for one test."""

    def __init__(self, bootstrap: str, topics: dict[str, str], workdir: Path, suffix: str,
                 es: Any, es_url: str, es_prefix: str) -> None:
        self.bootstrap, self.topics, self.workdir = bootstrap, topics, workdir
        self.es, self.es_prefix = es, es_prefix
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, STOCKANOMALY_APP_ID=f"it-worker-{suffix}",
                        STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
                        STOCKANOMALY_DLQ_TOPIC=topics["dlq"], STOCKANOMALY_PARTITIONS=str(PARTITIONS),
                        STOCKANOMALY_LOG_LEVEL="WARNING", ELASTICSEARCH_URL=es_url,
                        STOCKANOMALY_ES_INDEX_PREFIX=es_prefix,
                        # Several workers per host: each serves /metrics on a port of its own.
                        STOCKANOMALY_METRICS_ADDR="127.0.0.1", STOCKANOMALY_METRICS_PORT="0")
        self.workers: list[subprocess.Popen] = []

    def start_worker(self, name: str, port: int) -> subprocess.Popen:
        env = dict(self.env, STOCKANOMALY_DATA_DIR=str(self.workdir / f"{name}-data"),
                   STOCKANOMALY_WORKER_WEB_PORT=str(port))
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "entrypoints.worker", "worker", "-l", "warn"],
                                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    async def produce(self, pairs: list[tuple[bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for key, value in pairs:
                await producer.send(self.topics["trades"], key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    async def anomaly_ids(self) -> list[str]:
        records = await read_all(self.bootstrap, self.topics["anomalies"], partition_count=PARTITIONS,
                                 isolation_level="read_committed")
        return [json.loads(r.value)["id"] for r in records]

    async def wait_for(self, expected: set[str], timeout: float = 240) -> list[str]:
        seen: list[str] = []

        async def complete() -> bool:
            seen[:] = await self.anomaly_ids()
            return set(seen) >= expected

        await eventually_async(complete, timeout=timeout, interval=1.0,
                               what=f"{len(expected)} anomalies (logs in {self.workdir})")
        return seen

    def searchable_ids(self) -> list[str]:
        """Every anomaly document id in Elasticsearch (one per document: ids are unique per index)."""
        index = f"{self.es_prefix}-*"
        self.es.indices.refresh(index=index, allow_no_indices=True, ignore_unavailable=True)
        hits = self.es.search(index=index, query={"match_all": {}}, size=10_000, source=False,
                              allow_no_indices=True, ignore_unavailable=True)["hits"]["hits"]
        return [h["_id"] for h in hits]

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest_asyncio.fixture
async def stream(kafka_bootstrap, new_topic, suffix, tmp_path, es, es_url,  # type: ignore[no-untyped-def]
                 es_prefix) -> AsyncIterator[Stream]:
    topics = {"trades": await new_topic("trades", partitions=PARTITIONS),
              "anomalies": await new_topic("anomalies", partitions=PARTITIONS),
              "dlq": await new_topic("dlq", partitions=PARTITIONS)}
    s = Stream(kafka_bootstrap, topics, tmp_path, suffix, es, es_url, es_prefix)
    yield s
    s.stop()


@pytest.mark.asyncio
async def test_streamed_anomalies_equal_the_embedded_replay(stream: Stream, market, embedded_ids) -> None:
    stream.start_worker("w1", 16066)
    await stream.produce(as_messages(market))
    seen = await stream.wait_for(embedded_ids)
    assert set(seen) == embedded_ids
    assert len(seen) == len(set(seen))
    assert sorted(stream.searchable_ids()) == sorted(embedded_ids)  # nothing published twice


@pytest.mark.asyncio
async def test_worker_killed_mid_stream_resumes_without_loss_or_duplicates(stream: Stream, market,
                                                                           embedded_ids) -> None:
    pairs = as_messages(market)
    first = stream.start_worker("w1", 16067)
    await stream.produce(pairs[: len(pairs) // 2])

    async def some_output() -> bool:
        return len(await stream.anomaly_ids()) >= 3

    await eventually_async(some_output, timeout=180, interval=1.0, what="first anomalies before the kill")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    await stream.produce(pairs[len(pairs) // 2:])
    stream.start_worker("w1", 16067)  # same data directory, as a restarted container would have
    seen = await stream.wait_for(embedded_ids)
    assert set(seen) == embedded_ids
    assert len(seen) == len(set(seen))
    assert sorted(stream.searchable_ids()) == sorted(embedded_ids)


@pytest.mark.asyncio
async def test_two_workers_share_partitions_and_state_follows_the_partition(stream: Stream, market,
                                                                          embedded_ids) -> None:
    pairs = as_messages(market)
    stream.start_worker("w1", 16068)
    await stream.produce(pairs[: len(pairs) // 3])

    async def some_output() -> bool:
        return len(await stream.anomaly_ids()) >= 2

    await eventually_async(some_output, timeout=180, interval=1.0, what="first anomalies before the rebalance")
    stream.start_worker("w2", 16069)
    await stream.produce(pairs[len(pairs) // 3:])
    seen = await stream.wait_for(embedded_ids)
    assert set(seen) == embedded_ids
    assert len(seen) == len(set(seen))
    assert sorted(stream.searchable_ids()) == sorted(embedded_ids)


def bad_records(like: np.ndarray) -> tuple[list[tuple[bytes | None, bytes]], set[str]]:
    """One malformed record of every kind, on a symbol of its own, and the reasons they must get."""
    def batch(**values: object) -> np.ndarray:
        rows = like[:1].copy()
        rows["symbol"] = "ZZZ"
        for k, v in values.items():
            rows[k] = v
        return rows

    good = batch(ts_event=like["ts_event"][-1] + 10)
    older = batch(ts_event=like["ts_event"][0], sequence=99)
    records: list[tuple[bytes | None, bytes]] = [
        (b"ZZZ", b"{not json"),
        (b"ZZZ", json.dumps({"ts_event": 1, "size": 5}).encode()),  # no price
        (None, encode_batch("ZZZ", good)[1]),  # binary batch without its symbol key
        (b"ZZZ", b"STB1\x05\x00\x00\x00truncated"),
        encode_batch("ZZZ", batch(price=float("nan"))),
        encode_batch("ZZZ", batch(price=float("inf"))),
        encode_batch("ZZZ", batch(price=-1.0)),
        encode_batch("ZZZ", batch(size=0)),
        encode_batch("ZZZ", good),
        encode_batch("ZZZ", good),  # the same trade again
        encode_batch("ZZZ", older),  # earlier than what the symbol already had
    ]
    reasons = {"bad_json", "missing_field", "missing_key", "bad_encoding", "bad_price", "bad_size",
               "duplicate", "out_of_order"}
    return records, reasons


@pytest.mark.asyncio
async def test_malformed_records_go_to_the_dead_letter_topic_and_the_rest_is_processed(
        stream: Stream, market, embedded_ids) -> None:
    bad, reasons = bad_records(market)
    stream.start_worker("w1", 16070)
    await stream.produce(bad + as_messages(market))
    seen = await stream.wait_for(embedded_ids)
    assert set(seen) == embedded_ids
    letters: list = []

    async def all_reasons() -> bool:
        letters[:] = await read_all(stream.bootstrap, stream.topics["dlq"], partition_count=PARTITIONS,
                                    isolation_level="read_committed")
        return {dict(r.headers)["reason"].decode() for r in letters} >= reasons

    await eventually_async(all_reasons, timeout=60, interval=1.0, what=f"dead letters {sorted(reasons)}")
    assert len(letters) == len(bad) - 1  # every bad record once; the first `good` trade is fine
    raw = {r.value for r in letters}
    assert b"{not json" in raw  # the original bytes travel with the reason

