"""A take's anomalies, incidents, dead letters and state changelog on Kafka, in its partition's transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from adapters.kafka.codec import Placement, encode_batch
from adapters.kafka.dead_letters import dead_letter_record
from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter


class PartitionProducer:
    """Sends the records of one trades partition's take, under exactly-once in that partition's
    transaction (`transactional_id`), so they commit or abort with the take's state and offsets.

    Faust's `topic.send` picks the transaction of the *destination* partition, and for a topic the
    worker does not consume (anomalies, dead letters) none at all: those records would be sent outside
    any transaction, visible before their offsets commit, and written again after a crash.
    `delivered()` waits for the broker's acknowledgement of everything sent, and raises if any
    failed: the take must not commit then.
    """

    def __init__(self, producer: Any, transactional_id: str | None) -> None:
        self.producer = producer
        self.transactional_id = transactional_id
        self.pending: list[Awaitable[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        self.pending.append(await self.producer.send(topic, key, value, None, None, headers,
                                                     transactional_id=self.transactional_id))

    async def delivered(self) -> None:
        pending, self.pending = self.pending, []
        await asyncio.gather(*pending)


class KafkaJsonSink:
    """AsyncAnomalySink (and the incidents' sink): each record as JSON (`to_dict`), keyed by its symbol."""

    def __init__(self, out: PartitionProducer, topic: str) -> None:
        self.out, self.topic = out, topic

    async def publish(self, records: Sequence[Anomaly | Incident]) -> None:
        for r in records:
            await self.out.send(self.topic, r.symbol.encode(), json.dumps(r.to_dict()).encode())


class KafkaDeadLetterSink:
    """AsyncDeadLetterSink: the `trades.dlq` format of `adapters.kafka.dead_letters`."""

    def __init__(self, out: PartitionProducer, topic: str) -> None:
        self.out, self.topic = out, topic

    async def publish(self, dead_letters: Sequence[DeadLetter]) -> None:
        for letter in dead_letters:
            key, value, headers = dead_letter_record(letter)
            await self.out.send(self.topic, key, value, headers)


def traced_to_messages(letters: Sequence[DeadLetter], trades: np.ndarray, messages: Sequence[Any],
                       placement: Placement) -> list[DeadLetter]:
    """Dead letters of trades the engine refused (`row` >= 0: a row of `trades`, the concatenated
    trades of `messages`, placed in them as `placement` says) given the message their trade came in
    and its position there (`topic[partition]@offset#i`: the i-th trade of a binary batch or element
    of a JSON list, from 0; no `#i` for a single JSON object) and, as key and value, the trade alone
    encoded as a one-trade message keyed by its symbol (`STB1`), whatever the message held. Letters
    of whole messages (decoding) already carry their message's key and bytes and are kept as they are."""
    traced = []
    for letter in letters:
        if letter.row < 0:
            traced.append(letter)
            continue
        at, position = placement.locate(letter.row)
        m = messages[at]
        trade = trades[letter.row:letter.row + 1]
        key, value = encode_batch(str(trade["symbol"][0]), trade)
        where = f"{m.topic}[{m.partition}]@{m.offset}" + (f"#{position}" if position >= 0 else "")
        traced.append(replace(letter, origin=where, key=key, raw=value))
    return traced


async def write_changelog(producer: Any, topic: str, partition: int, records: dict[bytes, bytes],
                          timestamp_ms: int) -> list[tuple[Any, int]]:
    """`records` (serialized key -> value, as the table's own serializers make them: recovery reads
    them back with those) to `partition` of the changelog `topic`, in as few record batches as fit
    the producer's batch size, through `producer` (an aiokafka producer: the partition's
    transactional one under exactly-once, so they commit with the take). Returns each batch's
    delivery future with its record count."""
    sent: list[tuple[Any, int]] = []
    batch, count = producer.create_batch(), 0
    for key, value in records.items():
        if batch.append(key=key, value=value, timestamp=timestamp_ms) is None:  # full: send it, start anew
            sent.append((await producer.send_batch(batch, topic, partition=partition), count))
            batch, count = producer.create_batch(), 0
            batch.append(key=key, value=value, timestamp=timestamp_ms)
        count += 1
    if count:
        sent.append((await producer.send_batch(batch, topic, partition=partition), count))
    return sent
