"""A fix for Faust's table recovery under `processing_guarantee="exactly_once"`.

Recovery reads each changelog partition up to its highwater, which Faust (faust-streaming 0.15)
takes from `AIOKafkaConsumer.last_stable_offset(tp)` when the consumer is transactional. That is
the LSO the consumer last *fetched*, and `None` for a changelog partition this consumer has not
fetched yet, which is every partition on a fresh start or takeover. Faust turns `None` into -1,
decides there is nothing to restore, and resumes with an empty table (seen here as a restarted
worker counting from zero, now and then, depending on fetch timing).

`AIOKafkaConsumer.end_offsets()` asks the broker instead (ListOffsets with the consumer's own
isolation level), and a read_committed consumer gets the LSO back: the highwater recovery needs.
Faust uses `end_offsets()` already when not transactional, so the fix is to use it always.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP


async def _end_offsets(self: AIOKafkaConsumerThread, partitions: Sequence[TP]) -> Mapping[TP, int]:
    consumer: Any = self._ensure_consumer()
    return cast(Mapping[TP, int], await consumer.end_offsets(list(partitions)))


def restore_tables_from_broker_offsets() -> None:
    """Make Faust's recovery read changelog highwaters from the broker (idempotent)."""
    AIOKafkaConsumerThread._highwaters = _end_offsets  # type: ignore[method-assign]
