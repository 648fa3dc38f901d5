"""Static group membership on the real Kafka: a worker restarted with its instance id gets its own
partitions back and the other worker's are never revoked; a second process with the same id stops
the first with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from aiokafka.coordinator.protocol import ConsumerProtocol

from adapters.kafka.producer import KafkaTradePublisher
from adapters.memory import InMemoryTradeSource
from adapters.synthetic import generate_market
from application.ingest import IngestTrades
from integration_support import ConditionTimeout, eventually_async, free_port, stop_processes

pytestmark = pytest.mark.integration
PARTITIONS = 4
REVOKED = "Revoking previously assigned partitions {"  # aiokafka's line when a rebalance takes some (not `set()`)


class Workers:
    """Worker processes of one consumer group, each a static member named after itself."""

    def __init__(self, bootstrap: str, topics: dict[str, str], workdir: Path, group: str) -> None:
        self.bootstrap, self.topics, self.workdir, self.group = bootstrap, topics, workdir, group
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, STOCKANOMALY_APP_ID=group,
                        STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
                        STOCKANOMALY_DLQ_TOPIC=topics["dlq"], STOCKANOMALY_INCIDENTS_TOPIC=topics["incidents"],
                        STOCKANOMALY_PARTITIONS=str(PARTITIONS), STOCKANOMALY_METRICS_ADDR="127.0.0.1",
                        STOCKANOMALY_METRICS_PORT="0")
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, instance: str, log: str | None = None) -> subprocess.Popen[bytes]:
        env = dict(self.env, STOCKANOMALY_DATA_DIR=str(self.workdir / f"{name}-data"),
                   STOCKANOMALY_WORKER_WEB_PORT=str(free_port()), STOCKANOMALY_GROUP_INSTANCE_ID=instance)
        out = open(self.workdir / (log or f"{name}.log"), "ab")  # noqa: SIM115 - closed with the process
        # -l info: aiokafka's own lines say when a rebalance revoked a worker's partitions
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "entrypoints.worker", "worker", "-l", "info"],
                                cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    async def holdings(self, admin) -> dict[str, set[int]]:  # type: ignore[no-untyped-def]
        """Instance id -> trades partitions, as the group coordinator has them ({} unless Stable)."""
        [response] = await admin.describe_consumer_groups([self.group])
        _, _, state, _, _, members, *_ = response.groups[0]
        if state != "Stable":
            return {}
        held: dict[str, set[int]] = {}
        for member_id, _, _, _, assignment in members:
            instance = member_id.rsplit("-", 5)[0]  # a static member's id: <instance id>-<uuid>
            decoded = ConsumerProtocol.ASSIGNMENT.decode(assignment).assignment if assignment else []
            held[instance] = {p for topic, parts in decoded if topic == self.topics["trades"] for p in parts}
        return held

    async def ingest(self, trades: np.ndarray) -> None:
        async with KafkaTradePublisher(self.bootstrap, self.topics["trades"], self.topics["dlq"],
                                       partitions=PARTITIONS, anomalies_topic=self.topics["anomalies"],
                                       incidents_topic=self.topics["incidents"]) as publisher:
            await IngestTrades(publisher, batch_trades=500)(InMemoryTradeSource(trades, chunk_size=5_000))

    async def committed_to_the_end(self, admin, consumer) -> bool:  # type: ignore[no-untyped-def]
        from aiokafka import TopicPartition

        tps = [TopicPartition(self.topics["trades"], p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(self.group, partitions=tps)
        self.committed = {tp.partition: (committed[tp].offset if tp in committed else None, ends[tp]) for tp in tps}
        # A partition no symbol hashed to has nothing to commit (the group then reports -1, or nothing).
        return all(ends[tp] == 0 or (tp in committed and committed[tp].offset == ends[tp]) for tp in tps)

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")

    def stop(self) -> None:
        stop_processes(self.processes)


@pytest_asyncio.fixture
async def workers(kafka_bootstrap, new_topic, suffix, tmp_path) -> AsyncIterator[Workers]:  # type: ignore[no-untyped-def]
    topics = {name: await new_topic(name, partitions=PARTITIONS) for name in ("trades", "anomalies", "dlq", "incidents")}
    group = Workers(kafka_bootstrap, topics, tmp_path, f"it-static-{suffix}")
    yield group
    group.stop()


@pytest_asyncio.fixture
async def end_offsets_reader(kafka_bootstrap):  # type: ignore[no-untyped-def]
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    yield consumer
    await consumer.stop()


async def wait(probe, timeout: float, what: str, group: Workers):  # type: ignore[no-untyped-def]
    try:
        return await eventually_async(probe, timeout=timeout, interval=0.5, what=what)
    except ConditionTimeout as exc:
        print(f"committed vs end offsets: {getattr(group, 'committed', None)}")
        tails = "\n".join(f"{log.name}: {line[:240]}" for log in sorted(group.workdir.glob("*.log"))
                          for line in log.read_text(errors="replace").splitlines()[-6:])
        raise ConditionTimeout(f"{exc}\n{tails}") from None


@pytest.mark.asyncio
async def test_a_worker_restarted_with_its_instance_id_gets_its_partitions_back_and_the_other_keeps_its_own(
        workers: Workers, kafka_admin, end_offsets_reader) -> None:  # type: ignore[no-untyped-def]
    market = generate_market(symbols=16, trades=20_000, seed=5).trades
    a = workers.start("a", "worker-a")
    workers.start("b", "worker-b")

    async def both_hold_partitions() -> dict[str, set[int]] | None:
        held = await workers.holdings(kafka_admin)
        return held if set(held) == {"worker-a", "worker-b"} and all(held.values()) else None

    before = await wait(both_hold_partitions, 120, "both workers holding partitions", workers)
    await workers.ingest(market[: len(market) // 2])
    await wait(lambda: workers.committed_to_the_end(kafka_admin, end_offsets_reader), 120,
               "the first half committed", workers)
    b_log_before = len(workers.log("b.log"))
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=60) == 0
    workers.start("a", "worker-a", log="a-restarted.log")  # its own data directory, as a restarted container

    async def a_back_with_its_own() -> dict[str, set[int]] | None:
        held = await workers.holdings(kafka_admin)
        restarted = "Worker ready" in workers.log("a-restarted.log")
        return held if restarted and held == before else None

    await wait(a_back_with_its_own, 90, f"worker-a back with {before['worker-a']}", workers)
    await workers.ingest(market[len(market) // 2:])
    await wait(lambda: workers.committed_to_the_end(kafka_admin, end_offsets_reader), 120,
               "the second half committed", workers)
    # No rebalance reached the worker that stayed: none of its partitions was ever revoked.
    assert REVOKED not in workers.log("b.log")[b_log_before:]
    # The restarted worker read its state from its own store: no table of it restored from scratch.
    assert "state_store_discarded" not in workers.log("a-restarted.log")


@pytest.mark.asyncio
async def test_a_second_worker_with_the_same_instance_id_stops_the_first_with_one_line(
        workers: Workers, kafka_admin) -> None:  # type: ignore[no-untyped-def]
    first = workers.start("first", "worker-x")

    async def first_holds_all() -> bool:
        return (await workers.holdings(kafka_admin)).get("worker-x") == set(range(PARTITIONS))

    await wait(first_holds_all, 120, "the first worker holding every partition", workers)
    second = workers.start("second", "worker-x")
    await wait(lambda: _exited(first), 90, "the first worker stopping", workers)
    log = workers.log("first.log")
    assert first.returncode != 0 and log.count('"event": "group_instance_fenced"') == 1
    # The newcomer took the instance over and works on: it holds every partition, and is running.
    await wait(first_holds_all, 60, "the second worker holding every partition", workers)
    assert second.poll() is None and "Unexpected error in coordinator routine" not in workers.log("second.log")


async def _exited(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None
