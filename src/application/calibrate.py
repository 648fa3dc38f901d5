"""Use case: learn per-symbol size thresholds from historical trades."""

from __future__ import annotations

from collections import Counter

import numpy as np

from domain.detectors.high_volume import N_BINS, size_bins, size_quantile
from domain.guard import ACCEPTED, GUARD_DTYPE, VERDICTS, SequenceGuard, initial_guard_state
from domain.ports import TradeSource
from domain.sessions import SessionCalendar
from domain.thresholds import SymbolThresholds, Thresholds
from domain.symbols import factorize
from domain.validation import invalid_rows


def calibrate(source: TradeSource, quantile: float = 0.999, multiple: float = 8.0,
              min_trades: int = 1000, calendar: SessionCalendar | None = None,
              rejected: Counter[str] | None = None, too_few: dict[str, int] | None = None) -> Thresholds:
    """Threshold = multiple x the symbol's size quantile, auction crosses and bad rows excluded
    (counted by reason in `rejected`, when given: the reader's dead letters and invalid trades).

    Trades are judged as a replay judges them: a duplicate (the same trade read twice, as from one
    day in two files) or an out-of-order print is refused by the same guard, so a trade counts once
    (counted twice, a symbol would pass `min_trades` with half the history it asks for).

    Sizes are counted in the same log-scale histogram the online detector uses, so memory is
    a few kilobytes per symbol however long the history. Symbols with fewer than `min_trades`
    trades get no threshold (the online estimate covers them); `too_few`, when given, gets each of
    them with its count, so that a caller can say how many were left to the default rule.
    """
    calendar = calendar or SessionCalendar()
    hists: dict[str, np.ndarray] = {}
    guard = SequenceGuard()
    guards = np.empty(0, GUARD_DTYPE)  # one row per symbol, in the order of `slots`
    slots: dict[str, int] = {}
    for chunk in source.chunks():
        bad, reasons = invalid_rows(chunk.trades)
        if rejected is not None:
            rejected.update(letter.reason for letter in chunk.dead_letters)
            rejected.update(reasons)
        trades = np.delete(chunk.trades, bad) if len(bad) else chunk.trades
        codes, names = factorize(trades["symbol"])
        slot = np.array([slots.setdefault(name, len(slots)) for name in names], np.int32)
        if len(slots) > len(guards):
            guards = np.concatenate([guards] + [initial_guard_state()] * (len(slots) - len(guards)))
        verdict, _ = guard.check(slot[codes], trades["ts_event"], trades["publisher_id"], trades["instrument_id"],
                                 trades["sequence"], guards)
        refused = verdict != ACCEPTED
        if refused.any():
            if rejected is not None:
                rejected.update(VERDICTS[v] for v in verdict[refused].tolist())
            trades, codes = trades[~refused], codes[~refused]
        auction = calendar.auction_mask(trades["ts_event"], trades["side"])
        trades, codes = trades[~auction], codes[~auction]
        # One bincount over (symbol, bin) pairs: no loop over the chunk's trades per symbol.
        counts = np.bincount(codes.astype(np.int64) * N_BINS + size_bins(trades["size"].astype(np.float64)),
                             minlength=len(names) * N_BINS).reshape(len(names), N_BINS)
        for name, row in zip(names, counts):
            hists[name] = hists.get(name, 0) + row
    symbols = {}
    for symbol, hist in hists.items():
        n = int(hist.sum())
        if n >= min_trades:
            q = size_quantile(hist, quantile)
            symbols[symbol] = SymbolThresholds(round(multiple * q, 1), round(q, 1), n)
        elif too_few is not None:
            too_few[symbol] = n
    return Thresholds(quantile, multiple, symbols)
