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
           index: np.ndarray | None = None) -> MarketBatch:
        """`index` picks and orders the trades of `rows` (default: all, as they are), rows in arrival
        order; `slot`, `auction` and `pool` are already in the order of `index`."""
        n = len(rows) if index is None else len(index)
        index = np.arange(n) if index is None else index
        position = _positions(index, len(rows))
        ts, price, log_price, size = np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n)
        publisher, instrument = np.empty(n, np.uint16), np.empty(n, np.uint32)
        sequence, side = np.empty(n, np.uint64), np.empty(n, np.uint8)
        _scatter(position, rows["ts_event"], rows["price"], rows["size"], rows["publisher_id"], rows["instrument_id"],
                 rows["sequence"], rows["side"].view(np.uint8), ts, price, log_price, size, publisher, instrument,
                 sequence, side)
        return cls(rows=rows, index=index, symbols=symbols, slot=slot.astype(np.int32, copy=False), pools=pools,
                   pool=np.zeros(n, np.int32) if pool is None else pool.astype(np.int32, copy=False),
                   ts=ts, price=price, log_price=log_price, size=size, auction=auction, publisher=publisher,
                   instrument=instrument, sequence=sequence, side=side.view("S1"),
                   arrival=position[position >= 0])

    def select(self, keep: np.ndarray) -> MarketBatch:
        """The trades where `keep` is true, in the same order."""
        index = self.index[keep]
        fields = {name: getattr(self, name)[keep] for name in _PER_TRADE}
        position = _positions(index, len(self.rows))
        return replace(self, index=index, arrival=position[position >= 0], **fields)

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
def _scatter(position: np.ndarray, ts_in: np.ndarray, price_in: np.ndarray, size_in: np.ndarray,
             pub_in: np.ndarray, inst_in: np.ndarray, seq_in: np.ndarray, side_in: np.ndarray, ts: np.ndarray,
             price: np.ndarray, log_price: np.ndarray, size: np.ndarray, pub: np.ndarray, inst: np.ndarray,
             seq: np.ndarray, side: np.ndarray) -> None:
    """The columns detectors read, each record written to its place in the batch (`position[r]`, or
    nowhere when negative). The wide records are read once, front to back, and only the compact
    columns are written out of order: scattered reads of the records would miss the cache every time."""
    for r in range(len(position)):
        i = position[r]
        if i >= 0:
            ts[i], price[i], size[i] = ts_in[r], price_in[r], size_in[r]
            log_price[i] = np.log(price_in[r])
            pub[i], inst[i], seq[i], side[i] = pub_in[r], inst_in[r], seq_in[r], side_in[r]


def _positions(index: np.ndarray, n_rows: int) -> np.ndarray:
    """For each of `n_rows` rows (in arrival order), its position in `index`, or -1 if not picked; the
    picked positions, read in row order, list the batch in arrival order."""
    position = np.full(n_rows, -1, np.int64)
    position[index] = np.arange(len(index))
    return position
