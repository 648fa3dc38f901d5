"""A batch of many symbols' accepted trades as columns, each trade pointing at its symbol's state row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from domain.model import Anomaly


@dataclass(frozen=True, slots=True)
class MarketBatch:
    """Trades in event-time order per symbol, plus the columns every detector reads.

    `slot[i]` is the row of trade i's symbol in the batch's state arrays (`symbols[slot[i]]` is its
    name) and `pool[i]` the row of its model pool in the pool state arrays (`pools[pool[i]]`).
    Prices are float64 currency units, sizes float64 shares, times int64 UTC nanoseconds.
    """

    trades: np.ndarray
    symbols: tuple[str, ...]
    slot: np.ndarray
    pools: tuple[int, ...]
    pool: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    log_price: np.ndarray
    size: np.ndarray
    auction: np.ndarray

    @classmethod
    def of(cls, trades: np.ndarray, symbols: tuple[str, ...], slot: np.ndarray, auction: np.ndarray,
           pools: tuple[int, ...] = (0,), pool: np.ndarray | None = None) -> MarketBatch:
        price = trades["price"].astype(np.float64)
        return cls(trades=trades, symbols=symbols, slot=slot.astype(np.int32, copy=False), pools=pools,
                   pool=np.zeros(len(trades), np.int32) if pool is None else pool.astype(np.int32, copy=False),
                   ts=trades["ts_event"].astype(np.int64), price=price, log_price=np.log(price),
                   size=trades["size"].astype(np.float64), auction=auction)

    def __len__(self) -> int:
        return len(self.trades)

    def anomaly(self, detector: str, i: int, score: float, reason: str,
                details: dict[str, float] | None = None) -> Anomaly:
        return Anomaly.of_trade(detector, self.trades[i], score, reason, details)
