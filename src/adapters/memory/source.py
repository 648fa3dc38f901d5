"""A trade source over arrays already in memory, cut into chunks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from domain.ports import SourceChunk


class InMemoryTradeSource:
    def __init__(self, trades: np.ndarray, chunk_size: int = 65_536) -> None:
        self.trades = trades
        self.chunk_size = chunk_size

    def chunks(self) -> Iterator[SourceChunk]:
        for start in range(0, len(self.trades), self.chunk_size):
            yield SourceChunk(self.trades[start:start + self.chunk_size])
