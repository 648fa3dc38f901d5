"""Helpers for integration tests: bounded polling (never a sleep to synchronise), Kafka reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    """The awaited condition did not hold in time; carries the last value seen."""


def eventually(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> T:
    """Call probe until it returns something truthy; return that, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise ConditionTimeout(f"{what} not met within {timeout:.0f}s; last value: {last!r}")


async def eventually_async(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0,
                           interval: float = 0.2, what: str = "condition") -> T:
    """The asyncio twin of `eventually`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise ConditionTimeout(f"{what} not met within {timeout:.0f}s; last value: {last!r}")


async def read_all(bootstrap: str, topic: str, *, partition_count: int = 1,
                   isolation_level: str = "read_uncommitted",
                   timeout: float = 30) -> list[ConsumerRecord]:
    """Every record of a topic up to its end offsets (the last stable offsets when committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []

        async def caught_up() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
            return all([await consumer.position(tp) >= end[tp] for tp in partitions])

        await eventually_async(caught_up, timeout=timeout, what=f"reading {topic} to its end")
        return records
    finally:
        await consumer.stop()


async def topic_config(admin: Any, topic: str) -> dict[str, str]:
    response = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {entry[0]: entry[1] for entry in response[0].resources[0][4]}


def as_messages(trades: Any, per_message: int = 500, chunk: int = 5_000) -> list[tuple[bytes, bytes]]:
    """(key, value) Kafka records for trades, cut the way `stockanomaly ingest` cuts a source:
    source-sized chunks, each split into per-symbol micro-batches in event-time order."""
    from adapters.kafka.codec import encode_batch
    from application.ingest import symbol_batches

    return [encode_batch(symbol, rows) for start in range(0, len(trades), chunk)
            for symbol, rows in symbol_batches(trades[start:start + chunk], per_message)]
