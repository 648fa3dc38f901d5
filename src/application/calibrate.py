"""Use case: learn per-symbol size thresholds from historical trades."""

from __future__ import annotations

import numpy as np

from domain.detectors.high_volume import N_BINS, histogram_quantile, size_bins
from domain.engine import split_by_symbol
from domain.ports import TradeSource
from domain.sessions import SessionCalendar
from domain.thresholds import SymbolThresholds, Thresholds
from domain.validation import invalid_reasons


def calibrate(source: TradeSource, quantile: float = 0.999, multiple: float = 8.0,
              min_trades: int = 1000, calendar: SessionCalendar | None = None) -> Thresholds:
    """Threshold = multiple x the symbol's size quantile, auction crosses and bad rows excluded.

    Sizes are counted in the same log-scale histogram the online detector uses, so memory is
    a few kilobytes per symbol however long the history. Symbols with fewer than `min_trades`
    trades get no threshold (the online estimate covers them).
    """
    calendar = calendar or SessionCalendar()
    hists: dict[str, np.ndarray] = {}
    for chunk in source.chunks():
        trades = chunk.trades[invalid_reasons(chunk.trades) == ""]
        for symbol, rows in split_by_symbol(trades):
            regular = ~calendar.auction_mask(rows["ts_event"], rows["side"])
            hist = hists.setdefault(symbol, np.zeros(N_BINS))
            hist += np.bincount(size_bins(rows["size"][regular].astype(np.float64)), minlength=N_BINS)
    symbols = {}
    for symbol, hist in hists.items():
        n = int(hist.sum())
        if n >= min_trades:
            q = histogram_quantile(hist, quantile)
            symbols[symbol] = SymbolThresholds(round(multiple * q, 1), round(q, 1), n)
    return Thresholds(quantile, multiple, symbols)
