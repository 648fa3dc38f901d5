"""Merge per-file trade streams into one event-time-ordered stream, a chunk at a time, with numpy."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk

_BEFORE_ANY = np.iinfo(np.int64).min


class _Lane:
    """One file's stream: its sorted, not yet emitted trades and how far into event time it has read."""

    def __init__(self, stream: Iterator[SourceChunk]) -> None:
        self.stream = stream
        self.buffer = np.empty(0, TRADE_DTYPE)
        self.watermark = _BEFORE_ANY  # ts_event of the last record read: later ones are assumed >= it
        self.done = False

    def pull(self, letters: list[DeadLetter]) -> None:
        chunk = next(self.stream, None)
        if chunk is None:
            self.done = True
            return
        letters.extend(chunk.dead_letters)
        if len(chunk.trades) == 0:
            return
        self.watermark = int(chunk.trades["ts_event"][-1])
        self.buffer = _sort(np.concatenate((self.buffer, chunk.trades)) if len(self.buffer) else chunk.trades)

    def take_before(self, watermark: int | None) -> np.ndarray:
        # Strictly before: a file whose last read print is at the watermark may hold more at that time.
        cut = len(self.buffer) if watermark is None else int(
            np.searchsorted(self.buffer["ts_event"], watermark, side="left"))
        head, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return head


def merge_by_event_time(streams: Sequence[Iterator[SourceChunk]]) -> Iterator[SourceChunk]:
    """k-way merge: emit every buffered trade before the lowest watermark among open files.

    Always reading next from the file that is furthest behind keeps memory near one chunk per file.
    Prints of several files at one timestamp are put in sequence order (one feed split over several
    files comes back in its own order; the guard refuses a sequence that goes back as a resend),
    then file order, then record order. A file that is itself
    out of order by more than a chunk comes out out of order; the domain rejects such trades.
    """
    lanes = [_Lane(stream) for stream in streams]
    try:
        yield from _merged(lanes)
    finally:  # stopped early or failed: close every file's stream (and its reader thread, if any)
        for stream in streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def _merged(lanes: list[_Lane]) -> Iterator[SourceChunk]:
    letters: list[DeadLetter] = []
    while True:
        open_lanes = [lane for lane in lanes if not lane.done]
        if not open_lanes:
            break
        behind = min(open_lanes, key=lambda lane: lane.watermark)
        behind.pull(letters)
        still_open = [lane.watermark for lane in lanes if not lane.done]
        watermark = min(still_open) if still_open else None
        heads = [head for lane in lanes if len(head := lane.take_before(watermark))]
        if len(heads) == 1:
            trades = heads[0]
        else:
            trades = _interleave(np.concatenate(heads)) if heads else np.empty(0, TRADE_DTYPE)
        if len(trades) or letters:
            yield SourceChunk(trades, letters)
            letters = []


def _sort(trades: np.ndarray) -> np.ndarray:
    ts = trades["ts_event"]
    if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])):
        return trades
    return trades[np.argsort(ts, kind="stable")]


def _interleave(trades: np.ndarray) -> np.ndarray:
    """Several files' trades by event time, then sequence (stable: then file and record order)."""
    return trades[np.lexsort((trades["sequence"], trades["ts_event"]))]
