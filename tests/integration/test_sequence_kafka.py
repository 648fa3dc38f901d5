"""The offset-jump check (adapters.faust.sequence.LogReader) against the real broker: killed meanwhile, and
a log whose start was trimmed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from adapters.faust.sequence import LogReader

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 12.0  # longer than the 10 s the check used to give up after


@pytest.mark.asyncio
async def test_a_jump_checked_while_the_broker_is_down_is_answered_once_it_is_back(
        kafka_bootstrap, new_topic, suffix, broker) -> None:
    topic = await new_topic("jumps")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"it-jumps-{suffix}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, value=b"kept-0")  # offset 0; its commit marker 1
        await producer.begin_transaction()
        await producer.send(topic, value=b"aborted")  # offset 2; its abort marker 3
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, value=b"kept-4")  # offset 4; its commit marker 5
    finally:
        await producer.stop()
    tp = TP(topic, 0)
    reader = LogReader(kafka_bootstrap, read_committed=True)
    fresh = LogReader(kafka_bootstrap, read_committed=True)  # its consumer starts in the outage
    try:
        # Read committed, 1-3 hold markers and an aborted record: no hole between 0 and 4.
        assert await reader.next_record(tp, 1, 4) is None
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"it-jumps-{suffix}")
        await producer.start()
        try:
            for value in (b"kept-6", b"kept-8"):  # offsets 6 and 8; their commit markers 7 and 9
                async with producer.transaction():
                    await producer.send(topic, value=value)
        finally:
            await producer.stop()
        broker.kill()
        # What the reader read is remembered: the same jump needs no broker ...
        assert await asyncio.wait_for(reader.next_record(tp, 1, 4), timeout=1) is None
        # ... one past it does, and waits for it.
        check = asyncio.create_task(reader.next_record(tp, 7, 8))
        first = asyncio.create_task(fresh.next_record(tp, 1, 4))
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a condition
        assert not check.done(), f"the check ended during the outage: {check.exception()!r}"
        assert not first.done(), f"the fresh reader's check ended during the outage: {first.exception()!r}"
        await asyncio.to_thread(broker.start)
        assert await asyncio.wait_for(check, timeout=120) is None
        assert await asyncio.wait_for(first, timeout=120) is None
        assert await reader.next_record(tp, 0, 4) == 0  # a record in the jump is still found
    finally:
        await reader.close()
        await fresh.close()


@pytest.mark.asyncio
async def test_a_check_from_the_start_of_a_log_retention_has_trimmed_finds_its_first_record(
        kafka_bootstrap, kafka_admin, new_topic) -> None:
    """A partition never committed resumes at offset 0 (adapters.faust.sequence.in_sequence); when
    retention has moved the log's start on, the check from 0 must find the first record left, not
    the log's end (the reader's consumer resets to the earliest offset)."""
    from aiokafka import TopicPartition
    from aiokafka.admin.records_to_delete import RecordsToDelete

    topic = await new_topic("trimmed")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for k in range(10):
            await producer.send_and_wait(topic, value=f"record-{k}".encode(), partition=0)
    finally:
        await producer.stop()
    await kafka_admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=5)})
    reader = LogReader(kafka_bootstrap, read_committed=False)
    try:
        assert await reader.next_record(TP(topic, 0), 0, 8) == 5  # 0-4 deleted: 5 is the first left
        assert await reader.next_record(TP(topic, 0), 0, 5) is None  # nothing left before 5
    finally:
        await reader.close()
