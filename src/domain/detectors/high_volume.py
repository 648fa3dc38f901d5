"""High volume: a print far above the symbol's own size distribution (auction crosses excepted)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from domain.compiled import kernel, new_hits
from domain.detectors.base import InPlace, qty, record
from domain.detectors.histogram import bin_quantile, grow_weight, growth_table, log_bin, robust_quantile
from domain.market import MarketBatch
from domain.model import Anomaly

BINS_PER_OCTAVE = 4.0
N_BINS = 4 * 28 + 1  # sizes up to 2**28 shares, bin 0 unused (sizes are >= 1)

STATE = np.dtype([
    ("hist", "f4", (N_BINS,)),  # decayed counts of log2(size) in quarter octaves
    ("total", "f8"),
    ("weight", "f8"),           # weight of the next observation (lazy decay)
    ("seen", "i4"),             # regular prints counted so far
    ("bar", "i4"),              # current bar (minutes since the epoch; -1: none yet)
    ("reference", "f8"),        # the size quantile in force (NaN: warming up)
    ("refreshed", "i4"),        # `seen` when the reference was last read off the histogram
])


def size_bins(size: np.ndarray) -> np.ndarray:
    """The histogram bin of each size (vectorised; the kernel bins one print at a time the same way)."""
    return np.minimum(1 + np.floor(np.log2(np.maximum(size, 1.0)) * BINS_PER_OCTAVE).astype(np.int64), N_BINS - 1)


def size_quantile(hist: np.ndarray, quantile: float) -> float:
    """The `quantile` size of a histogram, read off it as the detector does (within its bin)."""
    return float(bin_quantile(hist.astype(np.float64), float(hist.sum()), 1.0 - quantile, 1.0, BINS_PER_OCTAVE))


@kernel
def _scan(slot: np.ndarray, ts: np.ndarray, size: np.ndarray, auction: np.ndarray, calibrated: np.ndarray,
          hist: np.ndarray, total: np.ndarray, weight: np.ndarray, seen: np.ndarray, bar: np.ndarray,
          reference: np.ndarray, refreshed: np.ndarray, bar_ns: int, growth: np.ndarray, max_gap_bars: int,
          warmup: int, refresh: int,
          tail_share: float, fit_obs: float, multiple: float, min_size: float,
          hit: np.ndarray, score: np.ndarray, detail: np.ndarray) -> int:
    k = 0
    for i in range(len(ts)):
        s = slot[i]
        b = max(ts[i] // bar_ns, bar[s])  # an older print (refused upstream) counts in the current bar
        if b != bar[s]:
            if bar[s] >= 0:
                weight[s], scale = grow_weight(weight[s], growth[min(b - bar[s], max_gap_bars)])
                if scale != 1.0:
                    for j in range(hist.shape[1]):
                        hist[s, j] *= scale
                    total[s] *= scale
            bar[s] = b
            # Re-read at a bar boundary once `refresh` new prints have arrived: the quantile only moves
            # with new information, and a quiet name then pays once per `refresh` prints, not per bar.
            if seen[s] >= warmup and (reference[s] != reference[s] or seen[s] - refreshed[s] >= refresh):
                reference[s] = robust_quantile(hist[s], total[s], tail_share, fit_obs * weight[s], 1.0,
                                               BINS_PER_OCTAVE)
                refreshed[s] = seen[s]
        if auction[i]:
            continue
        threshold = calibrated[s] if calibrated[s] > 0 else multiple * reference[s]
        if threshold == threshold:  # not NaN: warmed up or calibrated
            if calibrated[s] <= 0:  # the default rule's floor; a calibrated threshold is the analyst's own
                threshold = max(threshold, min_size)
            if size[i] >= threshold:
                hit[k], score[k] = i, size[i] / threshold
                detail[k, 0], detail[k, 1] = threshold, reference[s]
                k += 1
        hist[s, log_bin(size[i], 1.0, BINS_PER_OCTAVE, N_BINS)] += weight[s]
        total[s] += weight[s]
        seen[s] += 1
    return k


class HighVolumeDetector(InPlace):
    """Flags size >= multiple x the symbol's `quantile` size (and at least `min_size`), or, for a
    symbol with a calibrated threshold, size >= that threshold instead (higher or lower, below
    `min_size` too: calibrating is how an analyst quiets a symbol whose large prints are routine, as
    well as how one watches a symbol more closely, such as one whose shares trade a few at a time).

    The size distribution is a decayed log-scale histogram (fixed size); its quantile is read at a
    bar boundary once `refresh_trades` new prints have arrived (extrapolated along the fitted tail
    while the history is thin), so per-trade work is a comparison and a bin increment, and results
    do not depend on how the stream is batched.
    """

    name = "high_volume"

    def __init__(self, quantile: float = 0.999, multiple: float = 8.0, min_size: float = 100.0,
                 warmup_trades: int = 300, refresh_trades: int = 64, fit_obs: float = 20.0,
                 half_life_bars: float = 390.0, max_gap_bars: int = 60,
                 bar_ns: int = 60_000_000_000, calibrated: Mapping[str, float] | None = None) -> None:
        self.quantile = quantile
        self.multiple = multiple
        self.min_size = min_size
        self.warmup_trades = warmup_trades
        self.refresh_trades = refresh_trades
        self.fit_obs = fit_obs
        self.half_life_bars = half_life_bars
        self.max_gap_bars = max_gap_bars
        self.bar_ns = bar_ns
        self.calibrated = {symbol.upper(): size for symbol, size in (calibrated or {}).items()}  # any case
        self._growth = growth_table(half_life_bars, max_gap_bars)

    def initial_state(self) -> np.ndarray:
        return record(STATE, weight=1.0, bar=-1, reference=np.nan)

    def update(self, batch: MarketBatch, st: np.ndarray) -> list[Anomaly]:
        calibrated = (np.array([self.calibrated.get(s.upper(), 0.0) for s in batch.symbols], np.float64)
                      if self.calibrated else np.zeros(len(batch.symbols)))
        hit, score, detail = new_hits(len(batch))
        k = _scan(batch.slot, batch.ts, batch.size, batch.auction, calibrated, st["hist"], st["total"],
                  st["weight"], st["seen"], st["bar"], st["reference"], st["refreshed"], self.bar_ns,
                  self._growth, self.max_gap_bars, self.warmup_trades, self.refresh_trades, 1.0 - self.quantile,
                  self.fit_obs, self.multiple, self.min_size, hit, score, detail)
        return [self._anomaly(batch, int(hit[j]), float(score[j]), detail[j], calibrated)
                    for j in range(k)]

    def _anomaly(self, batch: MarketBatch, i: int, score: float, detail: np.ndarray,
                 calibrated: np.ndarray) -> Anomaly:
        symbol = batch.symbols[batch.slot[i]]
        size, threshold, reference = float(batch.size[i]), float(detail[0]), float(detail[1])
        if calibrated[batch.slot[i]] > 0:
            reason = f"size {qty(size)} is {score:,.1f}x {symbol}'s calibrated threshold of {qty(threshold)}"
        else:
            reason = (f"size {qty(size)} is {size / reference:,.1f}x {symbol}'s "
                      f"p{self.quantile * 100:g} of {qty(reference)} (alert at {self.multiple:g}x)")
        return batch.anomaly(self.name, i, score, reason,
                             {"threshold": threshold, "reference": reference if reference == reference else 0.0})
