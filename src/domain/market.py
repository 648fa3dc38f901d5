"""A batch of many symbols' accepted trades as columns, each trade pointing at its symbol's state row."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from domain.compiled import kernel
from domain.model import Anomaly


@dataclass(frozen=True, slots=True)
class TradeColumns:
    """One column per trade attribute a detector reads, all in one order. Prices are float64 currency
    units, sizes float64 shares, times int64 UTC nanoseconds; `slot` and `pool` are state rows."""

    slot: np.ndarray
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

    def take(self, picks: np.ndarray) -> TradeColumns:
        """The trades `picks` selects (positions or a boolean mask), in that order."""
        return TradeColumns(**{f.name: getattr(self, f.name)[picks] for f in fields(self)})


@dataclass(frozen=True, slots=True)
class MarketBatch:
    """Trades grouped by symbol (each symbol's in arrival order), as the columns detectors read.

    `slot[i]` is the row of trade i's symbol in the batch's state arrays (`symbols[slot[i]]` is its
    name) and `pool[i]` the row of its model pool in the pool state arrays (`pools[pool[i]]`).
    Detectors whose state spans symbols walk the trades in the order they arrived instead:
    `arrived` holds the same columns in that order and `arrival[j]` is the j-th arrived trade's
    position in the grouped columns. `rows[index[i]]` is trade i's original record.
    """

    rows: np.ndarray
    index: np.ndarray
    symbols: tuple[str, ...]
    pools: tuple[int, ...]
    columns: TradeColumns
    arrived: TradeColumns
    arrival: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, symbols: tuple[str, ...], slot: np.ndarray, auction: np.ndarray,
           pools: tuple[int, ...] = (0,), pool: np.ndarray | None = None,
           order: np.ndarray | None = None) -> MarketBatch:
        """All of `rows` (in arrival order), grouped by `order` (a permutation of them; default: kept
        as they are). `slot`, `auction` and `pool` are per row, in row order."""
        n = len(rows)
        ts, price, log_price, size = np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n)
        publisher, instrument = np.empty(n, np.uint16), np.empty(n, np.uint32)
        sequence, side = np.empty(n, np.uint64), np.empty(n, np.uint8)
        # The wide records are read once, front to back, into compact columns; grouping then gathers
        # from those (small enough to stay in cache), never from the records.
        _extract(rows["ts_event"], rows["price"], rows["size"], rows["publisher_id"], rows["instrument_id"],
                 rows["sequence"], rows["side"].view(np.uint8), ts, price, log_price, size, publisher, instrument,
                 sequence, side)
        arrived = TradeColumns(slot=slot.astype(np.int32, copy=False),
                               pool=np.zeros(n, np.int32) if pool is None else pool.astype(np.int32, copy=False),
                               ts=ts, price=price, log_price=log_price, size=size, auction=auction,
                               publisher=publisher, instrument=instrument, sequence=sequence, side=side.view("S1"))
        if order is None:
            index = np.arange(n)
            return cls(rows, index, symbols, pools, arrived, arrived, index)
        arrival = np.empty(n, np.int64)
        grouped = TradeColumns(**{f.name: np.empty_like(getattr(arrived, f.name)) for f in fields(TradeColumns)})
        _group(order, arrival, *_columns(arrived), *_columns(grouped))
        return cls(rows, order, symbols, pools, grouped, arrived, arrival)

    def select(self, keep: np.ndarray) -> MarketBatch:
        """The trades where `keep` (per grouped position) is true, in the same orders."""
        kept_arrival = keep[self.arrival]
        position = np.cumsum(keep) - 1  # new grouped position of each kept trade
        return replace(self, index=self.index[keep], columns=self.columns.take(keep),
                       arrived=self.arrived.take(kept_arrival), arrival=position[self.arrival[kept_arrival]])

    def with_auctions(self, auction: np.ndarray) -> MarketBatch:
        """`auction` per grouped position."""
        return replace(self, columns=replace(self.columns, auction=auction),
                       arrived=replace(self.arrived, auction=auction[self.arrival]))

    def __len__(self) -> int:
        return len(self.index)

    # The grouped columns, as detectors read them.
    @property
    def slot(self) -> np.ndarray:
        return self.columns.slot

    @property
    def pool(self) -> np.ndarray:
        return self.columns.pool

    @property
    def ts(self) -> np.ndarray:
        return self.columns.ts

    @property
    def price(self) -> np.ndarray:
        return self.columns.price

    @property
    def log_price(self) -> np.ndarray:
        return self.columns.log_price

    @property
    def size(self) -> np.ndarray:
        return self.columns.size

    @property
    def auction(self) -> np.ndarray:
        return self.columns.auction

    @property
    def publisher(self) -> np.ndarray:
        return self.columns.publisher

    @property
    def instrument(self) -> np.ndarray:
        return self.columns.instrument

    @property
    def sequence(self) -> np.ndarray:
        return self.columns.sequence

    @property
    def side(self) -> np.ndarray:
        return self.columns.side

    def trade(self, i: int) -> np.void:
        return self.rows[self.index[i]]

    def anomaly(self, detector: str, i: int, score: float, reason: str,
                details: dict[str, float] | None = None) -> Anomaly:
        return replace(Anomaly.of_trade(detector, self.trade(i), score, reason, details), found=i)


@kernel
def _extract(ts_in: np.ndarray, price_in: np.ndarray, size_in: np.ndarray, pub_in: np.ndarray, inst_in: np.ndarray,
             seq_in: np.ndarray, side_in: np.ndarray, ts: np.ndarray, price: np.ndarray, log_price: np.ndarray,
             size: np.ndarray, pub: np.ndarray, inst: np.ndarray, seq: np.ndarray, side: np.ndarray) -> None:
    """The columns detectors read, out of the records, in one pass."""
    for r in range(len(ts_in)):
        ts[r], price[r], size[r] = ts_in[r], price_in[r], size_in[r]
        log_price[r] = np.log(price_in[r])
        pub[r], inst[r], seq[r], side[r] = pub_in[r], inst_in[r], seq_in[r], side_in[r]


def _columns(c: TradeColumns) -> list[np.ndarray]:
    """The columns in field order, `side` as bytes (what a compiled kernel takes)."""
    return [getattr(c, f.name).view(np.uint8) if f.name == "side" else getattr(c, f.name) for f in fields(c)]


@kernel
def _group(order: np.ndarray, arrival: np.ndarray,
           slot: np.ndarray, pool: np.ndarray, ts: np.ndarray, price: np.ndarray, log_price: np.ndarray,
           size: np.ndarray, auction: np.ndarray, pub: np.ndarray, inst: np.ndarray, seq: np.ndarray, side: np.ndarray,
           g_slot: np.ndarray, g_pool: np.ndarray, g_ts: np.ndarray, g_price: np.ndarray, g_log_price: np.ndarray,
           g_size: np.ndarray, g_auction: np.ndarray, g_pub: np.ndarray, g_inst: np.ndarray, g_seq: np.ndarray,
           g_side: np.ndarray) -> None:
    """Every column in grouped order (g-th grouped trade = order[g]-th arrived) in one pass, and the
    inverse permutation: a gather per column reads `order` eleven times."""
    for g in range(len(order)):
        r = order[g]
        arrival[r] = g
        g_slot[g], g_pool[g], g_ts[g], g_price[g], g_log_price[g] = slot[r], pool[r], ts[r], price[r], log_price[r]
        g_size[g], g_auction[g], g_pub[g], g_inst[g], g_seq[g], g_side[g] = (size[r], auction[r], pub[r], inst[r],
                                                                              seq[r], side[r])
