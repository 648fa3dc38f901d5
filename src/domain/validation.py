"""Record checks: impossible values become dead letters with a reason, never a crash."""

from __future__ import annotations

import numpy as np

from domain.model import DeadLetter
from domain.symbols import words_of

# reason code -> human explanation, in the order they are checked
REASONS = {
    "missing_symbol": "no symbol",
    "bad_timestamp": "ts_event is not a positive nanosecond timestamp",
    "bad_price": "price is NaN, infinite, zero or negative",
    "bad_size": "size is zero or negative",
}


def invalid_rows(trades: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(indices of invalid rows, the first failing reason code of each), checked in one pass of
    boolean masks; reason strings are only made for the (rare) invalid rows."""
    price = trades["price"]
    checks = {
        "missing_symbol": words_of(trades["symbol"])[:, 0] == 0,
        "bad_timestamp": trades["ts_event"] <= 0,
        "bad_price": ~np.isfinite(price) | (price <= 0),
        "bad_size": trades["size"] <= 0,
    }
    bad = np.zeros(len(trades), bool)
    for mask in checks.values():
        bad |= mask
    rows = np.flatnonzero(bad)
    return rows, [next(r for r in REASONS if checks[r][i]) for i in rows.tolist()]


def dead_letter_for(trade: np.void, reason: str, origin: str = "", row: int = -1) -> DeadLetter:
    """`row`: the trade's position in the batch it was judged in (lets an adapter find its message)."""
    detail = (f"{REASONS.get(reason, reason)}: symbol={str(trade['symbol'])!r} ts_event={int(trade['ts_event'])} "
              f"price={float(trade['price'])!r} size={int(trade['size'])} sequence={int(trade['sequence'])}")
    return DeadLetter(reason=reason, detail=detail, origin=origin, row=row)
