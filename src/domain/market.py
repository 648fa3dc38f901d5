"""A batch of many symbols' accepted trades as columns, each trade pointing at its symbol's state row."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from domain.compiled import kernel
from domain.model import Anomaly
from domain.symbols import group_positions


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
        """The trades `picks` selects (positions or a boolean mask), in that order, in the same layout
        (fields of one compact record per trade, or separate columns): compiled kernels are
        specialised on it, and a batch with refused trades must not need a kernel of its own."""
        base = self.ts.base
        if base is not None and base.dtype == ARRIVED and self.ts.strides[0] == ARRIVED.itemsize:
            taken = _fields(base[picks])
            # The auction flags are a column of their own once `with_auctions` has set them.
            return taken if self.auction.base is base else replace(taken, auction=self.auction[picks])
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
           pools: tuple[int, ...] = (0,), pool: np.ndarray | None = None, group: bool = False) -> MarketBatch:
        """All of `rows` (in arrival order), grouped by `slot` when `group` (each symbol's trades keep
        their order; default: kept as they are). `slot`, `auction` and `pool` are per row, in row order."""
        n = len(rows)
        pool = np.zeros(n, np.int32) if pool is None else pool
        wide = (rows["ts_event"], rows["price"], rows["size"], rows["publisher_id"], rows["instrument_id"],
                rows["sequence"], rows["side"].view(np.uint8))
        if not group:
            # The wide records (144 bytes, most of it the symbol) are read once, front to back, into
            # the columns the detectors read, which they then stream through.
            columns = TradeColumns(**{f.name: np.empty(n, ARRIVED[f.name]) for f in fields(TradeColumns)})
            _extract_columns(*wide, slot, pool, auction, *_columns(columns))
            columns = replace(columns, side=columns.side.view("S1"))
            index = np.arange(n)
            return cls(rows, index, symbols, pools, columns, columns, index)
        # Many symbols: one compact record per trade (64 bytes, a cache line) in arrival order, whose
        # fields are the arrival-order columns, ...
        tape = np.empty(n, ARRIVED)
        arrived = _fields(tape)
        _extract_columns(*wide, slot, pool, auction, *_columns(arrived))
        order, arrival = group_positions(slot, len(symbols))
        # ... and grouping gathers whole compact records (one cache line per trade) into contiguous
        # columns: gathering eleven separate columns would miss the cache eleven times per trade.
        grouped = TradeColumns(**{f.name: np.empty(n, ARRIVED[f.name]) for f in fields(TradeColumns)})
        _group(order, tape, *_columns(grouped))
        return cls(rows, order, symbols, pools, replace(grouped, side=grouped.side.view("S1")), arrived, arrival)

    def select(self, keep: np.ndarray) -> MarketBatch:
        """The trades where `keep` (per grouped position) is true, in the same orders."""
        kept_arrival = keep[self.arrival]
        position = np.cumsum(keep) - 1  # new grouped position of each kept trade
        arrived = self.arrived.take(kept_arrival)
        columns = arrived if self.columns is self.arrived else self.columns.take(keep)
        return replace(self, index=self.index[keep], columns=columns, arrived=arrived,
                       arrival=position[self.arrival[kept_arrival]])

    def with_auctions(self, auction: np.ndarray) -> MarketBatch:
        """`auction` per grouped position."""
        if self.columns is self.arrived:
            columns = replace(self.columns, auction=auction)
            return replace(self, columns=columns, arrived=columns)
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


# One trade as the detectors read it, in a cache line (arrival order).
ARRIVED = np.dtype([("ts", "i8"), ("price", "f8"), ("log_price", "f8"), ("size", "f8"), ("sequence", "u8"),
                    ("instrument", "u4"), ("slot", "i4"), ("pool", "i4"), ("publisher", "u2"), ("side", "u1"),
                    ("auction", "?"), ("_pad", "u1", (4,))], align=True)


def _fields(tape: np.ndarray) -> TradeColumns:
    """The compact records' fields as columns (views: no copy)."""
    return TradeColumns(**{f.name: tape[f.name] for f in fields(TradeColumns) if f.name != "side"},
                        side=tape["side"].view("S1"))


@kernel
def _extract_columns(ts_in: np.ndarray, price_in: np.ndarray, size_in: np.ndarray, pub_in: np.ndarray,
                     inst_in: np.ndarray, seq_in: np.ndarray, side_in: np.ndarray, slot_in: np.ndarray,
                     pool_in: np.ndarray, auction_in: np.ndarray, slot: np.ndarray, pool: np.ndarray, ts: np.ndarray,
                     price: np.ndarray, log_price: np.ndarray, size: np.ndarray, auction: np.ndarray, pub: np.ndarray,
                     inst: np.ndarray, seq: np.ndarray, side: np.ndarray) -> None:
    """The columns of the trades (TradeColumns' field order), in one pass over the wide records:
    separate arrays, or the fields of one compact record per trade."""
    for r in range(len(ts_in)):
        ts[r], price[r], size[r], log_price[r] = ts_in[r], price_in[r], size_in[r], np.log(price_in[r])
        pub[r], inst[r], seq[r], side[r] = pub_in[r], inst_in[r], seq_in[r], side_in[r]
        slot[r], pool[r], auction[r] = slot_in[r], pool_in[r], auction_in[r]


def _columns(c: TradeColumns) -> list[np.ndarray]:
    """The columns in field order, `side` as bytes (what a compiled kernel takes)."""
    return [getattr(c, f.name).view(np.uint8) if f.name == "side" else getattr(c, f.name) for f in fields(c)]


@kernel
def _group(order: np.ndarray, tape: np.ndarray,
           g_slot: np.ndarray, g_pool: np.ndarray, g_ts: np.ndarray, g_price: np.ndarray, g_log_price: np.ndarray,
           g_size: np.ndarray, g_auction: np.ndarray, g_pub: np.ndarray, g_inst: np.ndarray, g_seq: np.ndarray,
           g_side: np.ndarray) -> None:
    """Every column in grouped order (g-th grouped trade = order[g]-th arrived), in one pass."""
    for g in range(len(order)):
        t = tape[order[g]]
        g_slot[g], g_pool[g], g_ts[g], g_price[g], g_log_price[g] = t.slot, t.pool, t.ts, t.price, t.log_price
        g_size[g], g_auction[g], g_pub[g], g_inst[g], g_seq[g], g_side[g] = (t.size, t.auction, t.publisher,
                                                                              t.instrument, t.sequence, t.side)
