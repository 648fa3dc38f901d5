"""Record checks: impossible values become dead letters with a reason, never a crash."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from domain.compiled import kernel
from domain.model import DeadLetter
from domain.symbols import words_of

# How far a print's event time may be after the time it was received (ts_recv, when known). A feed's
# clocks differ by microseconds; a print dated later than this (a typo'd year or day) is none.
MAX_AHEAD_NS = 60 * 10**9

# The largest price and size a print can have: Databento's own fields hold no more (a price in 1e-9
# units in an int64 stops at ~9.2e9; a size is a uint32). A CSV can write anything: 1e300 taken as a
# price would join the rolling VWAP and make normal prints look 100% off it.
MAX_PRICE = 1e9
MAX_SIZE = 2**32 - 1

# reason code -> human explanation, in the order they are checked
REASONS = {
    "missing_symbol": "no symbol",
    "bad_timestamp": "ts_event is not a positive nanosecond timestamp, or is over a minute after ts_recv (its receipt)",
    "bad_price": "price is NaN, infinite, zero, negative or over 1,000,000,000",
    "bad_size": "size is zero, negative or over 4,294,967,295",
}


def invalid_rows(trades: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(indices of invalid rows, the first failing reason code of each), checked in one compiled
    pass over the records; reason strings are only made for the (rare) invalid rows."""
    verdict = _verdicts(words_of(trades["symbol"])[:, 0], trades["ts_event"], trades["ts_recv"], trades["price"],
                        trades["size"])
    rows = np.flatnonzero(verdict)
    names = list(REASONS)
    return rows, [names[v - 1] for v in verdict[rows].tolist()]


@kernel
def _verdicts(first_char: np.ndarray, ts: np.ndarray, ts_recv: np.ndarray, price: np.ndarray,
              size: np.ndarray) -> np.ndarray:
    """Per row: 0 if valid, else 1 + the position in REASONS of the first check it fails. A ts_recv of
    0 or less is unknown (Databento's undefined timestamp reads as -1)."""
    out = np.zeros(len(ts), np.uint8)
    for i in range(len(ts)):
        if first_char[i] == 0:
            out[i] = 1
        elif ts[i] <= 0 or (ts_recv[i] > 0 and ts[i] - ts_recv[i] > MAX_AHEAD_NS):
            out[i] = 2
        elif not (np.isfinite(price[i]) and 0 < price[i] <= MAX_PRICE):
            out[i] = 3
        elif not 0 < size[i] <= MAX_SIZE:
            out[i] = 4
    return out


def dead_letters_for(trades: np.ndarray, reasons: Sequence[str], rows: Sequence[int],
                     origin: str = "", why: Sequence[str] | None = None) -> list[DeadLetter]:
    """The dead letter of each of `trades` (TRADE_DTYPE) with its reason and row (its position in the
    batch it was judged in, which lets an adapter find its message); its detail explains the reason
    (`why`, one per trade, else REASONS' words) and quotes the trade. Each column is read once, not
    each field of each trade: a day read twice is a dead letter per trade."""
    symbol, ts, price, size, sequence = (trades[name].tolist()
                                         for name in ("symbol", "ts_event", "price", "size", "sequence"))
    explained = why if why is not None else [REASONS.get(reason, reason) for reason in reasons]
    return [DeadLetter(reason=reason, row=row, origin=origin,
                       detail=f"{explained[k]}: symbol={str(symbol[k])!r} ts_event={ts[k]} "
                              f"price={float(price[k])!r} size={size[k]} sequence={sequence[k]}")
            for k, (reason, row) in enumerate(zip(reasons, rows))]


def dead_letter_for(trade: np.void, reason: str, origin: str = "", row: int = -1) -> DeadLetter:
    """`dead_letters_for` of one trade."""
    return dead_letters_for(np.array([trade], trade.dtype), [reason], [row], origin)[0]
