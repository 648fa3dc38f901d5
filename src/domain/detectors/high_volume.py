"""High volume: a print far above the symbol's own size distribution (auction crosses excepted)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from domain.batch import SymbolBatch, bar_segments
from domain.detectors.base import decay_factor, qty
from domain.model import Anomaly

BINS_PER_OCTAVE = 8
N_BINS = 40 * BINS_PER_OCTAVE  # sizes up to 2**40 shares


def size_bins(size: np.ndarray) -> np.ndarray:
    return np.clip((np.log2(np.maximum(size, 1.0)) * BINS_PER_OCTAVE).astype(np.int64), 0, N_BINS - 1)


def histogram_quantile(hist: np.ndarray, q: float) -> float:
    """Upper edge of the log-size bin holding quantile q: a slightly conservative estimate."""
    cum = np.cumsum(hist)
    if cum[-1] <= 0:
        return float("nan")
    i = int(np.searchsorted(cum, q * cum[-1]))
    return float(2.0 ** ((i + 1) / BINS_PER_OCTAVE))


@dataclass(slots=True)
class HighVolumeState:
    hist: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    seen: int = 0
    bar: int = -1
    reference: float = float("nan")  # the quantile in force for the current bar


class HighVolumeDetector:
    """Flags size >= multiple x the symbol's `quantile` size, or >= a calibrated threshold.

    The size distribution is a decayed log-scale histogram (fixed size), its quantile is read
    once per bar, so per-trade work is one comparison and results do not depend on batching.
    """

    name = "high_volume"

    def __init__(self, quantile: float = 0.999, multiple: float = 8.0, min_size: float = 100.0,
                 warmup_trades: int = 1000, half_life_bars: float = 390.0, bar_ns: int = 60_000_000_000,
                 calibrated: Mapping[str, float] | None = None) -> None:
        self.quantile = quantile
        self.multiple = multiple
        self.min_size = min_size
        self.warmup_trades = warmup_trades
        self.half_life_bars = half_life_bars
        self.bar_ns = bar_ns
        self.calibrated = dict(calibrated or {})

    def initial_state(self) -> HighVolumeState:
        return HighVolumeState()

    def detect(self, batch: SymbolBatch, state: HighVolumeState) -> tuple[HighVolumeState, list[Anomaly]]:
        st = replace(state, hist=state.hist.copy())
        found: list[Anomaly] = []
        calibrated = self.calibrated.get(batch.symbol)
        regular = ~batch.auction
        for bar, lo, hi in bar_segments(batch.ts, self.bar_ns):
            if bar != st.bar:
                if st.bar >= 0:
                    st.hist *= decay_factor(self.half_life_bars)
                st.bar = bar
                warm = st.seen >= self.warmup_trades
                st.reference = histogram_quantile(st.hist, self.quantile) if warm else float("nan")
            threshold = calibrated if calibrated else self.multiple * st.reference
            size = batch.size[lo:hi]
            if threshold == threshold:  # not NaN: warmed up or calibrated
                threshold = max(threshold, self.min_size)
                for i in np.flatnonzero((size >= threshold) & regular[lo:hi]):
                    found.append(self._anomaly(batch, lo + int(i), threshold, st.reference, calibrated))
            st.hist += np.bincount(size_bins(size[regular[lo:hi]]), minlength=N_BINS)
            st.seen += int(regular[lo:hi].sum())
        return st, found

    def _anomaly(self, batch: SymbolBatch, i: int, threshold: float, reference: float,
                 calibrated: float | None) -> Anomaly:
        size = float(batch.size[i])
        score = size / threshold
        if calibrated:
            reason = f"size {qty(size)} is {score:.1f}x {batch.symbol}'s calibrated threshold of {qty(threshold)}"
        else:
            reason = (f"size {qty(size)} is {size / reference:.1f}x {batch.symbol}'s "
                      f"p{self.quantile * 100:g} of {qty(reference)} (alert at {self.multiple:g}x)")
        return Anomaly.of_trade(self.name, batch.trades[i], score, reason,
                                {"threshold": threshold, "reference": reference if reference == reference else 0.0})
