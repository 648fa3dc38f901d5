"""Fixes to Faust's and aiokafka's behaviour, applied by `adapters.faust.app.create_app`: table
recovery's highwaters under exactly-once and how long its end waits, fetch long polls, and the retry
of a transaction request refused while the partition's previous transaction ends (each explained
where it is made).

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

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import (AddOffsetsToTxnHandler, AddPartitionsToTxnHandler, EndTxnHandler,
                                      TxnOffsetCommitHandler)
import faust.tables.recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP


async def _end_offsets(self: AIOKafkaConsumerThread, partitions: Sequence[TP]) -> Mapping[TP, int]:
    consumer: Any = self._ensure_consumer()
    return cast(Mapping[TP, int], await consumer.end_offsets(list(partitions)))


def restore_tables_from_broker_offsets() -> None:
    """Make Faust's recovery read changelog highwaters from the broker (idempotent)."""
    AIOKafkaConsumerThread._highwaters = _end_offsets  # type: ignore[method-assign]


# How long recovery waits for a changelog record before it counts the wait as idle. Under exactly-once
# each changelog partition ends in a transaction's commit marker: an offset no record is delivered
# for, so the highwater recovery waits for is never reached by a record. faust-streaming 0.15 settles
# that after two idle waits in a row (it then asks whether the consumer's position passed the
# highwater), each a hardcoded 5 s: every restart or rebalance of a worker spent 15-17 s there, with
# its changelogs read in the first few, judging nothing (benchmarks/failover.py). A second per wait
# keeps the rule (two quiet seconds before the question) and the rest of Faust's recovery as it is.
RECOVERY_IDLE_SECONDS = 1.0


class _CappedWaits:
    """`asyncio` as faust.tables.recovery sees it: the module itself but for `wait_for`, whose
    timeout is capped (its recovery loop's wait for the next changelog record is the one call)."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:
        return await asyncio.wait_for(awaitable, self.cap if timeout is None else min(timeout, self.cap))


def end_recovery_sooner(idle: float = RECOVERY_IDLE_SECONDS) -> None:
    """Make Faust's table recovery count a wait of `idle` seconds without a record as idle (idempotent)."""
    faust.tables.recovery.asyncio = _CappedWaits(idle)  # type: ignore[assignment]


# How long a fetch may wait on the broker for partitions with nothing new. Faust 0.15 hardcodes
# 1,500 ms. aiokafka leaves a partition whose records are still buffered out of the next fetch
# request, so while a long poll for the quiet partitions is out, the busy ones are not fetched:
# measured as ~1 s pauses every few takes, the worker running 1.3 s behind a 50,000 trades/s tape.
FETCH_MAX_WAIT_MS = 20


def fetch_without_long_polls(max_wait_ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make the worker consumers Faust creates wait at most `max_wait_ms` per fetch (idempotent)."""
    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "_short_fetch", False):
        return

    def create_worker_consumer(self: AIOKafkaConsumerThread, *args: Any, **kwargs: Any) -> Any:
        consumer = create(self, *args, **kwargs)
        consumer._fetch_max_wait_ms = max_wait_ms  # read by consumer.start() when it builds its fetcher
        return consumer

    create_worker_consumer._short_fetch = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


# How long a transaction request the broker refused with CONCURRENT_TRANSACTIONS waits before it is
# sent again. The broker says that while it is still writing the partition's previous transaction's
# commit markers (a few ms), so a take that follows the previous one closely meets it; aiokafka then
# waits its `retry_backoff_ms` (100 ms; 20 for a transaction's first AddPartitionsToTxn). Measured
# with `benchmarks/kafka_floor.py --mode eos` (a bare relay at the worker benchmark's message rate,
# a transaction per partition and fetch), produce -> read-committed consumer: p99 212-253 ms with
# aiokafka's backoff, 31-87 ms with 5 ms (docs/benchmarks.md). Other retries (a broker away, a
# coordinator moving) keep aiokafka's backoff.
CONCURRENT_TRANSACTIONS_BACKOFF = 0.005  # seconds


def _concurrent_transactions(response: Any) -> bool:
    """Whether a transaction response refused (some of) its request with CONCURRENT_TRANSACTIONS."""
    if getattr(response, "error_code", None) == ConcurrentTransactions.errno:
        return True
    return any(code == ConcurrentTransactions.errno
               for _, partitions in getattr(response, "errors", None) or ()
               for _, code in partitions)


def retry_concurrent_transactions_soon(backoff: float = CONCURRENT_TRANSACTIONS_BACKOFF) -> None:
    """Make aiokafka retry a transaction request refused with CONCURRENT_TRANSACTIONS after
    `backoff` seconds instead of its retry backoff (idempotent)."""
    for handler in (AddPartitionsToTxnHandler, AddOffsetsToTxnHandler, TxnOffsetCommitHandler, EndTxnHandler):
        handle = handler.handle_response
        if getattr(handle, "_retry_soon", False):
            continue

        def handle_response(self: Any, response: Any,
                            handle: Callable[[Any, Any], float | None] = handle) -> float | None:
            wait = handle(self, response)
            if wait is not None and _concurrent_transactions(response):
                return min(wait, backoff)
            return wait

        handle_response._retry_soon = True  # type: ignore[attr-defined]
        handler.handle_response = handle_response
