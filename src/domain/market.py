"""A batch of many symbols' accepted trades as columns, each trade pointing at its symbol's state row."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from domain.compiled import kernel
from domain.model import Anomaly


@dataclass(frozen=True, slots=True)
class MarketBatch:
    """Trades grouped by symbol (each symbol's in arrival order), as the columns detectors read.

    `slot[i]` is the row of trade i's symbol in the batch's state arrays (`symbols[slot[i]]` is its
    name) and `pool[i]` the row of its model pool in the pool state arrays (`pools[pool[i]]`);
    `arrival` lists the trades in the order they arrived (across symbols), for detectors whose state
    spans symbols, and `rows[index[i]]` is trade i's original record. Prices are float64 currency
    units, sizes float64 shares, times int64 UTC nanoseconds.
    """

    rows: np.ndarray
    index: np.ndarray
    symbols: tuple[str, ...]
    slot: np.ndarray
    pools: tuple[int, ...]
    pool: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    log_price: np.ndarray
    size: np.ndarray
    auction: np.ndarray
    publisher: np.ndarray
    instrument: np.ndarray
    sequence: np.ndarray
    side: np.ndarray
    arrival: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, symbols: tuple[str, ...], slot: np.ndarray, auction: np.ndarray,
           pools: tuple[int, ...] = (0,), pool: np.ndarray | None = None,
           index: np.ndarray | None = None) -> MarketBatch:  # noqa: PLR0913
        """`index` picks and orders the trades of `rows` (default: all, as they are), rows in arrival
        order; `slot`, `auction` and `pool` are already in the order of `index`."""
        n = len(rows) if index is None else len(index)
        index = np.arange(n) if index is None else index
        ts, price, log_price, size = np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n)
        publisher, instrument = np.empty(n, np.uint16), np.empty(n, np.uint32)
        sequence, side = np.empty(n, np.uint64), np.empty(n, np.uint8)
        _gather(index, rows["ts_event"], rows["price"], rows["size"], rows["publisher_id"], rows["instrument_id"],
                rows["sequence"], rows["side"].view(np.uint8), ts, price, log_price, size, publisher, instrument,
                sequence, side)
        return cls(rows=rows, index=index, symbols=symbols, slot=slot.astype(np.int32, copy=False), pools=pools,
                   pool=np.zeros(n, np.int32) if pool is None else pool.astype(np.int32, copy=False),
                   ts=ts, price=price, log_price=log_price, size=size, auction=auction, publisher=publisher,
                   instrument=instrument, sequence=sequence, side=side.view("S1"),
                   arrival=_arrival(index, len(rows)))

    def select(self, keep: np.ndarray) -> MarketBatch:
        """The trades where `keep` is true, in the same order."""
        index = self.index[keep]
        fields = {name: getattr(self, name)[keep] for name in _PER_TRADE}
        return replace(self, index=index, arrival=_arrival(index, len(self.rows)), **fields)

    def with_auctions(self, auction: np.ndarray) -> MarketBatch:
        return replace(self, auction=auction)

    def __len__(self) -> int:
        return len(self.ts)

    def trade(self, i: int) -> np.void:
        return self.rows[self.index[i]]

    def anomaly(self, detector: str, i: int, score: float, reason: str,
                details: dict[str, float] | None = None) -> Anomaly:
        return Anomaly.of_trade(detector, self.trade(i), score, reason, details)


_PER_TRADE = ("slot", "pool", "ts", "price", "log_price", "size", "auction", "publisher", "instrument", "sequence",
              "side")


@kernel
def _gather(index: np.ndarray, ts_in: np.ndarray, price_in: np.ndarray, size_in: np.ndarray, pub_in: np.ndarray,
            inst_in: np.ndarray, seq_in: np.ndarray, side_in: np.ndarray, ts: np.ndarray, price: np.ndarray,
            log_price: np.ndarray, size: np.ndarray, pub: np.ndarray, inst: np.ndarray, seq: np.ndarray,
            side: np.ndarray) -> None:
    """The columns detectors read, in `index` order. The wide records are read once, front to back
    (scattered reads of them would miss the cache on every trade); the compact columns are then
    reordered, which stays in cache."""
    n = len(index)
    rows = len(ts_in)
    c_ts, c_price, c_size = np.empty(rows, np.int64), np.empty(rows), np.empty(rows)
    c_pub, c_inst = np.empty(rows, np.uint16), np.empty(rows, np.uint32)
    c_seq, c_side = np.empty(rows, np.uint64), np.empty(rows, np.uint8)
    for r in range(rows):
        c_ts[r], c_price[r], c_size[r] = ts_in[r], price_in[r], size_in[r]
        c_pub[r], c_inst[r], c_seq[r], c_side[r] = pub_in[r], inst_in[r], seq_in[r], side_in[r]
    for i in range(n):
        r = index[i]
        ts[i], price[i], size[i] = c_ts[r], c_price[r], c_size[r]
        log_price[i] = np.log(c_price[r])
        pub[i], inst[i], seq[i], side[i] = c_pub[r], c_inst[r], c_seq[r], c_side[r]


def _arrival(index: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Positions of the picked trades in arrival order (rows are in arrival order): an inverse permutation."""
    if index is None:
        return np.arange(n_rows)
    position = np.full(n_rows, -1, np.int64)
    position[index] = np.arange(len(index))
    return position[position >= 0]
