"""The Faust worker on the real Kafka: same anomalies as the embedded replay, across kills and rebalances."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from adapters.kafka.codec import encode_batch
from adapters.memory import InMemoryTradeSource
from adapters.synthetic import generate_market
from entrypoints.container import build_container
from integration_support import eventually_async, read_all

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


def messages(trades: np.ndarray, per_message: int = 500) -> Iterator[tuple[bytes, bytes]]:
    """Per-symbol micro-batches in event-time order, as `stockanomaly ingest` sends them."""
    for start in range(0, len(trades), 5_000):
        chunk = trades[start:start + 5_000]
        for symbol in np.unique(chunk["symbol"]):
            rows = chunk[chunk["symbol"] == symbol]
            for i in range(0, len(rows), per_message):
                yield encode_batch(str(symbol), rows[i:i + per_message])


class Stream:
    """Topics, a producer and worker processes for one test."""

    def __init__(self, bootstrap: str, topics: dict[str, str], workdir: Path, suffix: str) -> None:
        self.bootstrap, self.topics, self.workdir = bootstrap, topics, workdir
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, STOCKANOMALY_APP_ID=f"it-worker-{suffix}",
                        STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
                        STOCKANOMALY_DLQ_TOPIC=topics["dlq"], STOCKANOMALY_PARTITIONS=str(PARTITIONS),
                        STOCKANOMALY_LOG_LEVEL="WARNING", ELASTICSEARCH_URL="")
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
async def stream(kafka_bootstrap, new_topic, suffix, tmp_path) -> AsyncIterator[Stream]:  # type: ignore[no-untyped-def]
    topics = {"trades": await new_topic("trades", partitions=PARTITIONS),
              "anomalies": await new_topic("anomalies", partitions=PARTITIONS),
              "dlq": await new_topic("dlq", partitions=PARTITIONS)}
    s = Stream(kafka_bootstrap, topics, tmp_path, suffix)
    yield s
    s.stop()


@pytest.mark.asyncio
async def test_streamed_anomalies_equal_the_embedded_replay(stream: Stream, market, embedded_ids) -> None:
    stream.start_worker("w1", 16066)
    await stream.produce(list(messages(market)))
    seen = await stream.wait_for(embedded_ids)
    assert set(seen) == embedded_ids
    assert len(seen) == len(set(seen))  # nothing published twice


@pytest.mark.asyncio
async def test_worker_killed_mid_stream_resumes_without_loss_or_duplicates(stream: Stream, market,
                                                                           embedded_ids) -> None:
    pairs = list(messages(market))
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


@pytest.mark.asyncio
async def test_two_workers_share_partitions_and_state_follows_the_partition(stream: Stream, market,
                                                                          embedded_ids) -> None:
    pairs = list(messages(market))
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
