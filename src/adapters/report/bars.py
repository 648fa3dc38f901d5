"""Per-symbol 1-minute OHLCV bars built from trade batches, for the replay report's charts."""

from __future__ import annotations

import numpy as np

from adapters.report.symbol_codes import SymbolCodes

MINUTE_NS = 60_000_000_000

# What `BarCollector.bars` returns: ts is the bar's minute start, int ns since the epoch (UTC).
BAR_DTYPE = np.dtype([("ts", "i8"), ("open", "f8"), ("high", "f8"), ("low", "f8"),
                      ("close", "f8"), ("volume", "i8"), ("trades", "i8")])

# Kept internally: first/last trade time let bars of one minute split over batches merge exactly.
_ROW_DTYPE = np.dtype([("code", "i8"), ("minute", "i8"), ("open", "f8"), ("high", "f8"),
                       ("low", "f8"), ("close", "f8"), ("volume", "i8"), ("trades", "i8"),
                       ("first_ts", "i8"), ("last_ts", "i8")])

_U16 = 1 << 16


def _stable_order(group: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative ints via 16-bit radix passes (numpy radix-sorts uint16)."""
    if group.max(initial=0) >= _U16 * _U16:
        return np.argsort(group, kind="stable")
    order = np.argsort((group & 0xFFFF).astype(np.uint16), kind="stable")
    high = (group >> 16).astype(np.uint16)[order]
    if high.any():
        order = order[np.argsort(high, kind="stable")]
    return order


def _first_per_group(mask: np.ndarray, group_id: np.ndarray, last: bool = False) -> np.ndarray:
    """Index of the first (or last) row of each group where mask holds; every group has one."""
    idx = np.flatnonzero(mask)
    gid = group_id[idx]
    if last:
        keep = np.append(gid[1:] != gid[:-1], True)
    else:
        keep = np.insert(gid[1:] != gid[:-1], 0, True)
    return idx[keep]


def _merge(rows: np.ndarray) -> np.ndarray:
    """Collapse rows of the same (code, minute) into one bar, sorted by code then minute.

    Open is the price of the earliest trade, close of the latest; equal times keep arrival order,
    which is the row order here.
    """
    minute = rows["minute"]
    key = (rows["code"] << 32) | (minute - minute.min(initial=0))
    # The input is a few already-sorted runs (merged bars, then each batch's), which timsort
    # merges in near-linear time.
    order = np.argsort(key, kind="stable")
    rows, key = rows[order], key[order]
    new_group = np.insert(key[1:] != key[:-1], 0, True)
    if new_group.all():
        return rows
    starts = np.flatnonzero(new_group)
    group_id = np.cumsum(new_group) - 1
    out = np.empty(len(starts), _ROW_DTYPE)
    out["code"] = rows["code"][starts]
    out["minute"] = rows["minute"][starts]
    out["high"] = np.maximum.reduceat(rows["high"], starts)
    out["low"] = np.minimum.reduceat(rows["low"], starts)
    out["volume"] = np.add.reduceat(rows["volume"], starts)
    out["trades"] = np.add.reduceat(rows["trades"], starts)
    first_ts = np.minimum.reduceat(rows["first_ts"], starts)
    last_ts = np.maximum.reduceat(rows["last_ts"], starts)
    opens = _first_per_group(rows["first_ts"] == first_ts[group_id], group_id)
    closes = _first_per_group(rows["last_ts"] == last_ts[group_id], group_id, last=True)
    out["open"], out["first_ts"] = rows["open"][opens], first_ts
    out["close"], out["last_ts"] = rows["close"][closes], last_ts
    return out


class BarCollector:
    """Folds trade batches of many symbols into per-symbol 1-minute OHLCV bars.

    Memory grows with the number of (symbol, minute) bars, never with trades: each batch is reduced
    to bars at once; bars of a minute seen in several batches are merged when the pending rows
    outgrow the merged ones (amortised, like a list doubling) or when bars are read.
    """

    def __init__(self) -> None:
        self._codes = SymbolCodes()
        self._merged = np.empty(0, _ROW_DTYPE)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._trades = 0

    @property
    def trade_count(self) -> int:
        return self._trades

    def add(self, trades: np.ndarray) -> None:
        """Fold one batch of TRADE_DTYPE rows (any symbols, any order) into the bars."""
        if len(trades) == 0:
            return
        rows = self._batch_bars(trades)
        self._pending.append(rows)
        self._pending_rows += len(rows)
        self._trades += len(trades)
        if self._pending_rows > max(len(self._merged), 1 << 16):
            self._flush()

    def _batch_bars(self, trades: np.ndarray) -> np.ndarray:
        ts = trades["ts_event"].astype(np.int64, copy=False)
        codes = self._codes.encode(trades["symbol"])
        minute = ts // MINUTE_NS
        first_minute = int(minute.min())
        span = int(minute.max()) - first_minute + 1
        group = codes * span + (minute - first_minute)
        # Replays deliver trades in event-time order, so a stable sort on the group keeps time
        # order within each group; otherwise sort by time first.
        time_order = None if bool(np.all(ts[1:] >= ts[:-1])) else np.argsort(ts, kind="stable")
        if time_order is not None:
            group = group[time_order]
        order = _stable_order(group)
        if time_order is not None:
            order = time_order[order]
        group = group[order]
        price = trades["price"][order]
        starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
        ends = np.append(starts[1:], len(order)) - 1
        rows = np.empty(len(starts), _ROW_DTYPE)
        g = group[starts]
        rows["code"] = g // span
        rows["minute"] = g % span + first_minute
        rows["open"] = price[starts]
        rows["close"] = price[ends]
        rows["high"] = np.maximum.reduceat(price, starts)
        rows["low"] = np.minimum.reduceat(price, starts)
        rows["volume"] = np.add.reduceat(trades["size"][order].astype(np.int64, copy=False), starts)
        rows["trades"] = np.diff(np.append(starts, len(order)))
        rows["first_ts"] = ts[order[starts]]
        rows["last_ts"] = ts[order[ends]]
        return rows

    def _flush(self) -> None:
        if self._pending:
            self._merged = _merge(np.concatenate([self._merged, *self._pending]))
            self._pending.clear()
            self._pending_rows = 0

    def symbols(self) -> list[str]:
        """Every symbol seen, sorted."""
        return sorted(self._codes.names)

    def bars(self, symbol: str) -> np.ndarray:
        """The symbol's bars as BAR_DTYPE, oldest first; empty if the symbol was never seen."""
        self._flush()
        code = self._codes.code_of(symbol)
        if code is None:
            return np.empty(0, BAR_DTYPE)
        lo, hi = np.searchsorted(self._merged["code"], [code, code + 1])
        rows = self._merged[lo:hi]
        out = np.empty(len(rows), BAR_DTYPE)
        out["ts"] = rows["minute"] * MINUTE_NS
        for name in ("open", "high", "low", "close", "volume", "trades"):
            out[name] = rows[name]
        return out
