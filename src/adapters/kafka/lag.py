"""How far a consumer is behind its partitions, and for how long it has not moved: the numbers
behind the lag and stalled gauges of the worker, the indexer and the notifier."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog

from adapters.kafka.errors import said

log = structlog.get_logger()

# (partition, first offset, before) -> the offset of the first record the log holds in [first,
# before) for the reader (committed records under read_committed), or None when there is none
NextRecord = Callable[[Any, int, int], Awaitable[int | None]]


def partition_lags(highwater: Callable[[Any], int | None], owned: Iterable[Any],
                   processed: Mapping[int, int]) -> dict[int, int]:
    """Messages after the last offset processed, per owned partition (`processed`: partition ->
    last processed offset); partitions missing from `processed` are left out."""
    lags: dict[int, int] = {}
    for tp in owned:
        end = highwater(tp)
        if end is None or tp.partition not in processed:  # unknown, not zero
            continue
        lags[tp.partition] = max(0, end - (processed[tp.partition] + 1))
    return lags


class ConsumerLag:
    """The worker's lag and stalled numbers, from the ends of its partitions asked of the broker at
    each refresh (`highwaters`; a partition with nothing processed yet counts from the consumer's
    `position`), all within `timeout`. The ends the consumer last fetched stood still with the
    broker away: the worker went on reporting its last lag for the whole outage, so
    StockanomalyPartitionsUnowned (no lag reported) could not fire. Now a refresh without the broker
    fails, the gauges are emptied (unknown, not 0), and the stalled clocks start afresh after it."""

    def __init__(self, highwaters: Callable[..., Awaitable[Mapping[Any, int]]],
                 position: Callable[[Any], Awaitable[int | None]], timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.highwaters, self.position, self.timeout = highwaters, position, timeout
        self.progress = PartitionProgress(clock)

    async def measure(self, owned: list[Any], processed: Mapping[int, int]) -> tuple[dict[int, int], dict[int, float]]:
        try:
            done, ends = await asyncio.wait_for(self._read(owned, processed), self.timeout)
        except asyncio.TimeoutError:
            self.progress.moved.clear()  # how long a partition waited is not known across the gap
            topics = ", ".join(sorted({tp.topic for tp in owned}))
            raise TimeoutError(f"the broker did not give the ends of {topics} within {self.timeout:g} s") from None
        except BaseException:
            self.progress.moved.clear()
            raise
        lags = partition_lags(ends.get, owned, done)
        return lags, self.progress.stalled(lags, done)

    async def _read(self, owned: list[Any], processed: Mapping[int, int]) -> tuple[dict[int, int], dict[Any, int]]:
        done = dict(processed)
        for tp in owned:
            if tp.partition not in done:  # nothing processed here yet: count from the fetch position
                position = await self.position(tp)
                if position is not None:
                    done[tp.partition] = position - 1
        return done, (dict(await self.highwaters(*owned)) if owned else {})


class PartitionProgress:
    """How long each owned partition has had messages waiting while none was processed: 0 while it
    is caught up or moving on, else the time since it was last seen caught up or moving (to within
    a refresh). A process stuck in a take keeps its partitions, so nobody else takes them over: this
    is what shows it. A partition first seen with a lag counts from then (one newly assigned shows
    its tables' recovery time)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.moved: dict[int, tuple[int, float]] = {}  # partition -> (last processed offset, when it was seen move)

    def stalled(self, lags: Mapping[int, int], processed: Mapping[int, int]) -> dict[int, float]:
        now = self.clock()
        out: dict[int, float] = {}
        for partition, lag in lags.items():
            offset = processed[partition]
            last = self.moved.get(partition)
            if lag == 0 or last is None or offset != last[0]:
                self.moved[partition] = last = (offset, now)
            out[partition] = 0.0 if lag == 0 else round(now - last[1], 1)
        for gone in self.moved.keys() - lags.keys():
            del self.moved[gone]
        return out


class WaitingRecords:
    """Per partition of a topic written in transactions (the anomalies and incidents topics: every
    worker take commits one), the offsets from the first record after the last one done to the end.

    The end offset counts the transactions' commit markers (and aborted records) too: an indexer
    caught up would show a lag of 1 for ever on every partition a worker last committed to. So
    whether a record waits at all is asked of the log (`next_record`), and remembered while nothing
    is done: a lag is read from the log once per partition and offset done, not at every refresh."""

    def __init__(self, next_record: NextRecord) -> None:
        self.next_record = next_record
        # partition -> (last offset done, end checked up to, first record after it found there or None)
        self.known: dict[Any, tuple[int, int, int | None]] = {}

    async def lag(self, tp: Any, done: int, end: int) -> int:
        first = done + 1
        if end <= first:
            self.known.pop(tp, None)
            return 0
        start, found = first, None
        seen = self.known.get(tp)
        if seen is not None and seen[0] == done:
            found = seen[2]
            start = min(max(seen[1], first), end)  # only the offsets added since are still to look at
        if found is None and start < end:
            found = await self.next_record(tp, start, end)
        self.known[tp] = (done, end, found)
        return 0 if found is None else end - found

    def keep(self, owned: Iterable[Any]) -> None:
        """Forget the partitions no longer owned (whoever owns them next reads the log afresh)."""
        mine = set(owned)
        for gone in self.known.keys() - mine:
            del self.known[gone]


class RefreshFailures:
    """The failures of a periodic gauge refresh, said once per outage: with the broker away a refresh
    fails at every tick (every 5 s, for as long as the outage lasts), which buried the log. Each
    error's first failure in an outage is a warning (`metrics_refresh_failed`); the same error again
    is said only at DEBUG (also when errors alternate, as a broker going away and coming back gives);
    the first refresh that works after failures says `metrics_refresh_recovered` with how many there
    were and for how long."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.since = 0.0
        self.said: set[str] = set()

    def failed(self, exc: BaseException) -> None:
        error = said(exc)[:300]
        if self.failures == 0:
            self.since = self.clock()
        self.failures += 1
        if error in self.said:
            log.debug("metrics_refresh_failed", error=error, failures=self.failures)
        else:
            log.warning("metrics_refresh_failed", error=error,
                        **({"failures": self.failures} if self.failures > 1 else {}))
        self.said.add(error)

    def succeeded(self) -> None:
        if self.failures:
            log.info("metrics_refresh_recovered", failures=self.failures,
                     seconds=round(self.clock() - self.since, 1))
        self.failures, self.said = 0, set()

