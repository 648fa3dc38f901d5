"""Use case: ingest a trade source into the trade log as per-symbol micro-batches, optionally paced."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from domain.errors import ConfigError
from domain.symbols import factorize, group_by_code
from domain.ports import SourceChunk, TradePublisher, TradeSource

NS_PER_SECOND = 1e9
# Trades due within one tick of wall time go out together: sleeping per trade would cost more
# than the precision is worth, and a tick is far below any detector's time scale.
PACE_TICK_SECONDS = 0.005
MESSAGE_SPAN_NS = 20_000_000_000  # event time one message may cover (see symbol_batches)
_PACE = re.compile(r"x(\d+(?:\.\d*)?|\.\d+)|(\d+(?:\.\d*)?|\.\d+)x")


class Clock(Protocol):
    """Monotonic seconds and a way to wait: the real one in production, a fake one in tests."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.perf_counter()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def parse_pace(text: str) -> float | None:
    """Replay speed as a multiple of event time: "max" -> None, "realtime" -> 1, "x10" or "10x" -> 10."""
    spec = text.strip().lower()
    if spec == "max":
        return None
    if spec == "realtime":
        return 1.0
    match = _PACE.fullmatch(spec)
    speed = float(match.group(1) or match.group(2)) if match else 0.0
    if speed <= 0:
        raise ConfigError(f"pace must be max, realtime or xN with N > 0 (x10 = ten times faster), got {text!r}")
    return speed


def symbol_batches(trades: np.ndarray, max_trades: int,
                   max_span_ns: int = MESSAGE_SPAN_NS) -> Iterator[tuple[str, np.ndarray]]:
    """(symbol, trades) runs of at most max_trades and at most `max_span_ns` of event time, each
    symbol's trades in their original order.

    The span bound keeps a partition's trades within `max_span_ns` of event-time order across the
    symbols that share it (Kafka orders per partition): the Isolation Forest's pooled samples
    allow a minute (`IsolationForestDetector.lateness_ns`), and within that a streamed run samples
    exactly like an embedded one. Inside a span, symbols come in order of first appearance. A chunk
    of one symbol needs no span bound (nothing else to interleave with): its runs are full but the last.
    """
    if len(trades) == 0:
        return
    ts = trades["ts_event"]
    symbols = trades["symbol"]
    if bool((symbols == symbols[0]).all()):
        for start in range(0, len(trades), max_trades):
            yield str(symbols[0]), trades[start:start + max_trades]
        return
    window = ts // max_span_ns
    cuts = np.flatnonzero(window[1:] != window[:-1]) + 1
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(trades)]):
        span = trades[lo:hi]
        codes, names = factorize(span["symbol"])
        if len(names) == 1:
            runs = [(names[0], span)]
        else:
            order = group_by_code(codes, len(names))
            grouped = span[order]
            bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
            runs = [(name, grouped[a:b]) for name, a, b in zip(names, bounds[:-1], bounds[1:])]
        for symbol, run in runs:
            for start in range(0, len(run), max_trades):
                yield symbol, run[start:start + max_trades]


class Pacer:
    """Holds trades back until their event time, scaled by `speed`, has passed on the clock.

    The first trade fixes the origin: a trade `d` ns of event time after it is due `d / speed` ns
    of wall time after the pacer first saw it. Time spent sending counts against the wait, so the
    pace does not drift; when sending falls behind, trades go out without waiting.
    """

    def __init__(self, speed: float | None, clock: Clock, tick: float = PACE_TICK_SECONDS) -> None:
        self.speed, self.clock, self.tick = speed, clock, tick
        self.origin: tuple[int, float] | None = None  # (first ts_event, clock time it was seen)

    async def release(self, trades: np.ndarray) -> AsyncIterator[np.ndarray]:
        """The trades, cut into runs due in the same tick, each yielded once it is due."""
        if self.speed is None or len(trades) == 0:
            yield trades
            return
        ts = trades["ts_event"]
        if self.origin is None:
            self.origin = (int(ts[0]), self.clock.now())
        first_ts, first_wall = self.origin
        offset = (ts - first_ts) / NS_PER_SECOND / self.speed
        ticks = np.floor(offset / self.tick)
        cuts = (np.flatnonzero(ticks[1:] != ticks[:-1]) + 1).tolist()
        for start, stop in zip([0, *cuts], [*cuts, len(trades)]):
            wait = first_wall + float(offset[start]) - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            yield trades[start:stop]


@dataclass(slots=True)
class IngestSummary:
    trades: int = 0
    messages: int = 0
    bytes: int = 0
    dead_letters: int = 0
    seconds: float = 0.0

    @property
    def trades_per_second(self) -> float:
        return self.trades / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"trades": self.trades, "messages": self.messages, "bytes": self.bytes,
                "dead_letters": self.dead_letters, "seconds": round(self.seconds, 4),
                "trades_per_second": round(self.trades_per_second, 1)}


async def read_ahead(source: TradeSource) -> AsyncIterator[SourceChunk]:
    """A blocking source's chunks, each read in a worker thread while the previous one is sent.

    Decompression and CSV parsing release the GIL, so reading overlaps with producing.
    """
    chunks = iter(source.chunks())
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (chunk := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            yield chunk
    finally:
        # Stopped early: a read still running in its thread just finishes; nobody wants its result.
        pending.cancel()
        if pending.done() and not pending.cancelled():
            pending.exception()


class IngestTrades:
    """Publish every chunk of a source: its dead letters, then its trades, as per-symbol runs of at
    most `batch_trades` handed to the publisher together when they are due.

    `summary` counts what the publisher was handed, message by message, as it goes: after an
    interruption (the call cancelled) it still says what was sent, which the final flush delivered.
    """

    def __init__(self, publisher: TradePublisher, batch_trades: int = 2_000, pace: float | None = None,
                 clock: Clock | None = None) -> None:
        if batch_trades < 1:
            raise ConfigError(f"batch_trades must be positive, got {batch_trades}")
        self.publisher = publisher
        self.batch_trades = batch_trades
        self.clock = clock or SystemClock()
        self.pacer = Pacer(pace, self.clock)
        self.summary = IngestSummary()

    async def __call__(self, source: TradeSource | AsyncIterable[SourceChunk],
                       on_progress: Callable[[IngestSummary], None] | None = None) -> IngestSummary:
        chunks = aiter(source) if isinstance(source, AsyncIterable) else read_ahead(source)
        summary = self.summary = IngestSummary()
        sent, before = self.publisher.sent, replace(self.publisher.sent)
        started = self.clock.now()

        def count() -> None:
            summary.trades, summary.messages = sent.trades - before.trades, sent.messages - before.messages
            summary.bytes, summary.dead_letters = sent.bytes - before.bytes, sent.dead_letters - before.dead_letters
            summary.seconds = self.clock.now() - started

        try:
            async for chunk in chunks:
                if chunk.dead_letters:
                    await self.publisher.publish_dead_letters(chunk.dead_letters)
                async for due in self.pacer.release(chunk.trades):
                    await self.publisher.publish(list(symbol_batches(due, self.batch_trades)))
                    count()
                    if on_progress is not None:
                        on_progress(summary)
        finally:
            try:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:  # release the source (a reader thread, a live session) now
                    await aclose()
            finally:
                # Also on interruption: what was handed to the publisher gets delivered.
                await self.publisher.flush()
                count()
        return summary
