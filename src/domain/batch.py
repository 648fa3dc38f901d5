"""One symbol's slice of a trade batch, with the columns every detector needs computed once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SymbolBatch:
    """Trades of one symbol in event-time order, plus derived columns shared by the detectors."""

    symbol: str
    trades: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    log_price: np.ndarray
    size: np.ndarray
    auction: np.ndarray

    @classmethod
    def of(cls, symbol: str, trades: np.ndarray, auction: np.ndarray | None = None) -> SymbolBatch:
        price = trades["price"].astype(np.float64, copy=False)
        return cls(
            symbol=symbol,
            trades=trades,
            ts=trades["ts_event"].astype(np.int64, copy=False),
            price=price,
            log_price=np.log(price),
            size=trades["size"].astype(np.float64),
            auction=np.zeros(len(trades), bool) if auction is None else auction,
        )

    def __len__(self) -> int:
        return len(self.trades)


def bar_segments(ts: np.ndarray, bar_ns: int) -> list[tuple[int, int, int]]:
    """Split event-time-ordered timestamps into (bar, start, stop) runs of the same bar."""
    if len(ts) == 0:
        return []
    bars = ts // bar_ns
    cuts = np.flatnonzero(bars[1:] != bars[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    stops = np.concatenate((cuts, [len(ts)]))
    return [(int(bars[a]), int(a), int(b)) for a, b in zip(starts, stops)]
