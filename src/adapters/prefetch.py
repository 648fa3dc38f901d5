"""Read ahead: a TradeSource whose chunks are decoded on a background thread while detection runs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from domain.ports import SourceChunk, TradeSource

_END = object()


class PrefetchingSource:
    """Wraps a source so the next `depth` chunks are read while the current one is processed.

    Decoding (zstd, Arrow's CSV parser, DBN record copies) releases the GIL, and so do the compiled
    detectors, so on two cores reading and detecting overlap. Chunks arrive in the same order, and an
    error raised while reading is raised here, at the point the chunk would have arrived.
    """

    def __init__(self, source: TradeSource, depth: int = 2) -> None:
        self.source = source
        self.depth = depth

    def chunks(self) -> Iterator[SourceChunk]:
        ready: queue.Queue[object] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def read() -> None:
            try:
                for chunk in self.source.chunks():
                    while not stop.is_set():
                        try:
                            ready.put(chunk, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ready.put(_END)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                ready.put(exc)

        reader = threading.Thread(target=read, name="source-prefetch", daemon=True)
        reader.start()
        try:
            while True:
                item = ready.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, SourceChunk)
                yield item
        finally:
            stop.set()  # the consumer stopped early: let the reader finish instead of blocking on put
            reader.join(timeout=5)

    def __repr__(self) -> str:
        return f"PrefetchingSource({self.source!r}, depth={self.depth})"
