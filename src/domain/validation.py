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


def invalid_reasons(trades: np.ndarray) -> np.ndarray:
    """Per row: '' when valid, else the first failing reason code."""
    price = trades["price"]
    checks = {
        "missing_symbol": words_of(trades["symbol"])[:, 0] == 0,
        "bad_timestamp": trades["ts_event"] <= 0,
        "bad_price": ~np.isfinite(price) | (price <= 0),
        "bad_size": trades["size"] <= 0,
    }
    out = np.full(len(trades), "", dtype="U16")
    for reason in reversed(REASONS):  # first reason wins: assign in reverse order
        out[checks[reason]] = reason
    return out


def dead_letter_for(row: np.void, reason: str, origin: str = "") -> DeadLetter:
    detail = (f"{REASONS.get(reason, reason)}: symbol={row['symbol']!r} ts_event={int(row['ts_event'])} "
              f"price={float(row['price'])!r} size={int(row['size'])} sequence={int(row['sequence'])}")
    return DeadLetter(reason=reason, detail=detail, origin=origin)
