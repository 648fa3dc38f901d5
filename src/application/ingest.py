"""Use case: ingest a trade source into the trade log as per-symbol micro-batches, optionally paced."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from domain.errors import ConfigError
from domain.symbols import SymbolRuns, factorize, group_by_code, runs_by_span
from domain.model import DeadLetter
from domain.ports import IngestMark, SourceChunk, TradePublisher, TradeSource

if TYPE_CHECKING:
    from application.resume import ResumePlan

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


def symbol_batches(trades: np.ndarray, max_trades: int, max_span_ns: int = MESSAGE_SPAN_NS) -> SymbolRuns:
    """`trades` as per-symbol runs of at most max_trades and at most `max_span_ns` of event time, each
    symbol's trades in their original order.

    The span bound keeps a partition's trades within `max_span_ns` of event-time order across the
    symbols that share it (Kafka orders per partition): the Isolation Forest's pooled samples
    allow a minute (`IsolationForestDetector.lateness_ns`), and within that a streamed run samples
    exactly like an embedded one. Inside a span, symbols come in order of first appearance. A chunk
    of one symbol needs no span bound (nothing else to interleave with): its runs are full but the last.

    At market scale most runs hold a trade or two (2,000 symbols: ~900,000 runs in 2,000,000 trades),
    so they are found in one compiled pass and kept as columns over the trades, in place.
    """
    none = np.empty(0, np.int64)
    if len(trades) == 0:
        return SymbolRuns(trades, (), none, none, none)
    symbols = trades["symbol"]
    if bool((symbols == symbols[0]).all()):  # runs are views of `trades`, no copy
        starts = np.arange(0, len(trades), max_trades, dtype=np.int64)
        return SymbolRuns(trades, (str(symbols[0]),), np.zeros(len(starts), np.int64), starts,
                          np.minimum(max_trades, len(trades) - starts))
    window = trades["ts_event"] // max_span_ns
    span = np.concatenate(([0], np.cumsum(window[1:] != window[:-1])))  # spans follow one another
    codes, names = factorize(symbols)
    run_of, run_code = runs_by_span(codes, span, len(names))
    run_length = np.bincount(run_of, minlength=len(run_code))
    run_start = np.cumsum(run_length) - run_length
    # A run longer than max_trades goes as several, one after another.
    pieces = -(-run_length // max_trades)
    run = np.repeat(np.arange(len(run_code)), pieces)
    offset = (np.arange(len(run)) - np.repeat(np.cumsum(pieces) - pieces, pieces)) * max_trades
    return SymbolRuns(trades, tuple(names), run_code[run], run_start[run] + offset,
                      np.minimum(max_trades, run_length[run] - offset), order=group_by_code(run_of, len(run_code)))


class Pacer:
    """Holds trades back until their event time, scaled by `speed`, has passed on the clock.

    The first trade fixes the origin: a trade `d` ns of event time after it is due `d / speed` ns
    of wall time after the pacer first saw it. Time spent sending counts against the wait, so the
    pace does not drift; when sending falls behind, trades go out without waiting.
    """

    def __init__(self, speed: float | None, clock: Clock, tick: float = PACE_TICK_SECONDS) -> None:
        self.speed, self.clock, self.tick = speed, clock, tick
        self.origin: tuple[int, float] | None = None  # (first ts_event, clock time it was seen)

    async def release(self, trades: np.ndarray, whole: bool = False, lead: int = 0) -> AsyncIterator[np.ndarray]:
        """The trades, cut into runs due in the same tick, each yielded once it is due; `whole`: in
        one piece, once trade `lead` is due (those before it are not sent: a resumed ingest's)."""
        if self.speed is None or len(trades) == 0:
            yield trades
            return
        ts = trades["ts_event"]
        if self.origin is None:
            self.origin = (int(ts[lead]), self.clock.now())
        first_ts, first_wall = self.origin
        offset = (ts - first_ts) / NS_PER_SECOND / self.speed
        ticks = np.floor(offset / self.tick)
        cuts = [] if whole else (np.flatnonzero(ticks[1:] != ticks[:-1]) + 1).tolist()
        for start, stop in zip([0, *cuts], [*cuts, len(trades)]):
            wait = first_wall + float(offset[lead if whole else start]) - self.clock.now()
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
    skipped: int = 0  # trades of the source the trade log held already (a resumed ingest)

    @property
    def trades_per_second(self) -> float:
        return self.trades / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"trades": self.trades, "messages": self.messages, "bytes": self.bytes,
                "dead_letters": self.dead_letters, "skipped": self.skipped, "seconds": round(self.seconds, 4),
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


async def to_the_end(chunks: AsyncIterator[SourceChunk]) -> AsyncGenerator[tuple[SourceChunk, bool], None]:
    """Each chunk, and whether no trade follows it: a chunk of trades is held until the next one with
    trades comes (or the source ends), and the dead letters read after the source's last trade are
    folded into its chunk, after its trades, so they can go with its last publish."""
    held: list[SourceChunk] = []  # the last chunk with trades read, and the letters-only ones since
    async for chunk in chunks:
        if len(chunk.trades) and held:
            for earlier in held:
                yield earlier, False
            held = []
        held.append(chunk)
    if held:
        yield _folded(held), True


def _folded(chunks: list[SourceChunk]) -> SourceChunk:
    """One chunk of `chunks`, only the first of which may hold trades: their letters after them."""
    if len(chunks) == 1:
        return chunks[0]
    first, rest = chunks[0], [d for c in chunks[1:] for d in c.dead_letters]
    return SourceChunk(first.trades, first.dead_letters + rest, first.places, first.describe,
                       dead_letters_at=first.letters_at() + [len(first.trades)] * len(rest))


class IngestTrades:
    """Publish every chunk of a source: its trades as per-symbol runs of at most `batch_trades` handed
    to the publisher together when they are due, each of its dead letters with the trades after it.

    `summary` counts what the publisher was handed, message by message, as it goes: after an
    interruption (the call cancelled) it still says what was sent, which the final flush delivered.

    With `source_id` (files), every message is marked with the source's trades its `publish` covered
    (`IngestMark`), which is what makes a `resume` plan possible; with `resume`, the trades the trade
    log holds already are skipped (application.resume).
    """

    def __init__(self, publisher: TradePublisher, batch_trades: int = 2_000, pace: float | None = None,
                 clock: Clock | None = None, source_id: str | None = None,
                 resume: ResumePlan | None = None) -> None:
        if batch_trades < 1:
            raise ConfigError(f"batch_trades must be positive, got {batch_trades}")
        if resume is not None and source_id is None:
            raise ConfigError("resuming needs the source's id: what the log's marks are compared with")
        self.publisher = publisher
        self.batch_trades = batch_trades
        self.clock = clock or SystemClock()
        self.pacer = Pacer(pace, self.clock)
        self.source_id, self.resume = source_id, resume
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

        resume, read = self.resume, 0
        # A dead letter goes with the publish holding the first trade after it in the source (its
        # carrier), right after that publish's first message; one after the source's last trade goes
        # with the last publish. So at any pace the dead-letter topic keeps to the trades' place in the
        # source (a chunk spans minutes, hours on a thin day), and whether a letter went is what the trade
        # log says of its carrier (ResumePlan.dead_letter_sent). A live feed is not held back for that.
        waiting: deque[tuple[int, DeadLetter]] = deque()  # (its carrier, the letter), in order
        ends = to_the_end(chunks) if self.source_id is not None else ((c, False) async for c in chunks)
        try:
            async for chunk, last in ends:
                first, read = read, read + len(chunk.trades)
                waiting.extend(sorted(((min(first + k, read - 1) if last and read else first + k, letter)
                                       for k, letter in zip(chunk.letters_at(), chunk.dead_letters)),
                                      key=lambda waits: waits[0]))
                pieces = [(chunk.trades, first, False)] if resume is None else resume.cut(chunk.trades)
                for trades, at, whole in pieces:
                    if resume is not None and at + len(trades) <= resume.first_unsent:
                        summary.skipped += len(trades)  # all on the log: not even paced
                        continue
                    lead = int(np.argmin(resume.on_log(trades, at))) if whole and resume is not None else 0
                    async for due in self.pacer.release(trades, whole, lead):
                        runs = symbol_batches(due, self.batch_trades)
                        mark = None if self.source_id is None else IngestMark(self.source_id, at, at + len(due))
                        if resume is not None:
                            runs, skipped = resume.unsent(runs, at)
                            summary.skipped += skipped
                        at += len(due)
                        await self.publisher.publish(runs, mark, self._due_letters(waiting, at))
                        count()
                        if on_progress is not None:
                            on_progress(summary)
            letters = self._due_letters(waiting, None)
            if letters and resume is not None and read == 0:
                letters = await resume.unsent_without_trades(letters)
            if letters:  # of a source without trades, or after a live feed's last
                await self.publisher.publish_dead_letters(
                    letters, None if self.source_id is None else IngestMark(self.source_id, read, read))
            if resume is not None:
                resume.finish()
        finally:
            try:
                await ends.aclose()
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:  # release the source (a reader thread, a live session) now
                    await aclose()
            finally:
                # Also on interruption: what was handed to the publisher gets delivered.
                await self.publisher.flush()
                count()
        return summary

    def _due_letters(self, waiting: deque[tuple[int, DeadLetter]], stop: int | None) -> list[DeadLetter]:
        """The letters whose carrier is before `stop` (None: all), less those a resumed ingest's log
        says went already."""
        due = []
        while waiting and (stop is None or waiting[0][0] < stop):
            carrier, letter = waiting.popleft()
            if self.resume is None or not self.resume.dead_letter_sent(carrier):
                due.append(letter)
        return due
