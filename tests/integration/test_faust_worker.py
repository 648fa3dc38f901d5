"""A Faust worker on the local Kafka keeps its table in a compacted changelog across restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from integration_support import eventually_async, read_all, topic_config

pytestmark = pytest.mark.integration


async def _ready(log: Path) -> bool:
    return log.exists() and "Worker ready" in log.read_text(errors="replace")


@pytest.mark.asyncio
async def test_faust_worker_restores_its_table_from_the_changelog_after_restart(
        kafka_bootstrap, kafka_admin, new_topic, suffix, tmp_path):
    source = await new_topic("faust-in", partitions=2)
    output = await new_topic("faust-out")
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, COUNTER_SUFFIX=suffix,
               COUNTER_SOURCE_TOPIC=source, COUNTER_OUTPUT_TOPIC=output,
               PYTHONPATH=str(Path(__file__).parent))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    latest: dict[str, int] = {}

    async def totals_reach(expected: dict[str, int]) -> bool:
        for record in await read_all(kafka_bootstrap, output, isolation_level="read_committed"):
            latest[json.loads(record.key)] = int(record.value)
        return latest == expected

    async def run_worker_and_count(ones: int, expected: dict[str, int], log: Path) -> None:
        with open(log, "wb") as log_file:
            worker = subprocess.Popen(
                [sys.executable, "-m", "faust", "-A", "faust_counter_app", "worker", "-l",
                 "info", "--without-web"], cwd=tmp_path, env=env, stdout=log_file,
                stderr=subprocess.STDOUT)
        try:
            # Sent once the table is restored: Faust can drop messages fetched while it recovers
            # (the worker guards against that with adapters.faust.sequence; this plain app does not).
            await eventually_async(lambda: _ready(log), timeout=120, interval=0.2, what=f"worker ready ({log})")
            for i in range(ones):
                key = json.dumps("NVDA" if i % 2 else "AAPL").encode()
                await producer.send_and_wait(source, key=key, value=b"1")
            await eventually_async(lambda: totals_reach(expected), timeout=120, interval=0.5,
                                   what=f"faust totals {expected} (worker log {log})")
        finally:
            worker.terminate()
            assert worker.wait(timeout=60) is not None

    try:
        await run_worker_and_count(6, {"AAPL": 3, "NVDA": 3}, tmp_path / "worker-1.log")
        # A new worker process has no memory: the totals continue only through the changelog.
        await run_worker_and_count(4, {"AAPL": 5, "NVDA": 5}, tmp_path / "worker-2.log")
    finally:
        await producer.stop()

    changelog = f"it-counter-{suffix}-counts-changelog"
    assert (await topic_config(kafka_admin, changelog))["cleanup.policy"] == "compact"
