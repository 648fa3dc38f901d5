"""Read ahead: a TradeSource whose chunks are decoded on a background thread while detection runs,
and the same for several streams at once under one shared budget (the files of a multi-file source)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

from domain.ports import SourceChunk, TradeSource

# Trades decoded ahead of detection, at most: two of the replay's default 16,384-trade chunks. More
# was tried (262,144: decoding could then go on through a model fit's ~0.1 s pause in detection)
# and measured no faster (a real NVDA day, 10 alternating runs in one process: median 0.474 against
# 0.458 s, and 0.528 against 0.532 s): a fit holds the GIL most of the time, and the reader needs it too.
READ_AHEAD_TRADES = 32_768

_END = object()


class ReadAheadBudget:
    """How many decoded trades the readers sharing it may hold that nobody has taken yet.

    A reader whose own queue is empty may always queue one chunk, whatever the others hold: the
    consumer may be waiting for exactly that stream (a merge waits for the file furthest behind),
    so held memory is at most the budget plus one chunk per stream.
    """

    def __init__(self, trades: int) -> None:
        if trades < 1:
            raise ValueError(f"a read-ahead budget must be at least one trade, got {trades}")
        self.trades = trades
        self.queued = 0
        self.changed = threading.Condition()


def read_ahead(chunks: Callable[[], Iterator[SourceChunk]], budget: ReadAheadBudget,
               name: str = "source-prefetch") -> Iterator[SourceChunk]:
    """The chunks of `chunks()`, read on a thread of their own (named `name`) while the caller works
    on earlier ones. Chunks arrive in the same order; an error raised while reading is raised here,
    where its chunk would have arrived; closing the iterator stops the reader (joined, 5 s at most)."""
    ready: deque[tuple[object, int]] = deque()
    changed = budget.changed
    stop = False

    def offer(item: object, size: int) -> bool:
        """Queue `item` once there is room for it; False when the consumer has stopped."""
        with changed:
            changed.wait_for(lambda: stop or not ready or budget.queued + size <= budget.trades)
            if stop:
                return False
            ready.append((item, size))
            budget.queued += size
            changed.notify_all()
            return True

    def read() -> None:
        try:
            for chunk in chunks():
                if not offer(chunk, len(chunk.trades)):
                    return
            offer(_END, 0)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            offer(exc, 0)

    def take() -> object:
        with changed:
            changed.wait_for(lambda: bool(ready))
            item, size = ready.popleft()
            budget.queued -= size
            changed.notify_all()
            return item

    reader = threading.Thread(target=read, name=name, daemon=True)
    reader.start()
    try:
        while True:
            item = take()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, SourceChunk)
            yield item
    finally:
        with changed:  # the consumer stopped early: let the reader finish instead of waiting for room
            stop = True
            # What this stream still holds goes back to the budget the other streams share.
            budget.queued -= sum(size for _, size in ready)
            ready.clear()
            changed.notify_all()
        reader.join(timeout=5)


class PrefetchingSource:
    """Wraps a source so chunks holding up to `ahead` trades (at least one chunk) are read while
    the current one is processed.

    Decoding (zstd, Arrow's CSV parser, DBN record copies) releases the GIL, and so do the compiled
    detectors, so on two cores reading and detecting overlap. Chunks arrive in the same order, and an
    error raised while reading is raised here, at the point the chunk would have arrived.
    """

    def __init__(self, source: TradeSource, ahead: int = READ_AHEAD_TRADES) -> None:
        self.source = source
        self.ahead = ahead

    def chunks(self) -> Iterator[SourceChunk]:
        return read_ahead(self.source.chunks, ReadAheadBudget(self.ahead))

    def __repr__(self) -> str:
        return f"PrefetchingSource({self.source!r}, ahead={self.ahead})"
