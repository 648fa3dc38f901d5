"""Decayed log-scale histograms in state records: quantiles and tail probabilities, compiled.

Decay is lazy: instead of shrinking every bin each bar, a new observation is added with a weight
that grows by 2**(1/half_life) per bar, and the whole row is rescaled only when that weight gets
large. Ratios (quantiles, tail shares) are what the detectors read, and those are unaffected.
"""

from __future__ import annotations

import numpy as np

from domain.compiled import inline, kernel

RESCALE_AT = 2.0**40


@inline
def log_bin(x: float, lowest: float, bins_per_octave: float, n_bins: int) -> int:
    """Bin 0 holds x < lowest; bin b >= 1 holds [lowest * 2**((b-1)/bpo), lowest * 2**(b/bpo))."""
    if not x >= lowest:
        return 0
    b = 1 + int(np.log2(x / lowest) * bins_per_octave)
    return min(b, n_bins - 1)


@kernel
def upper_edge(b: int, lowest: float, bins_per_octave: float) -> float:
    return lowest * 2.0 ** (b / bins_per_octave)


@kernel
def top_quantile(hist: np.ndarray, total: float, tail_share: float, lowest: float,
                 bins_per_octave: float) -> float:
    """Upper edge of the bin where the mass above first reaches `tail_share` of the total
    (a slightly high estimate of the (1 - tail_share) quantile); scans from the top, so it is cheap."""
    target = tail_share * total
    acc = 0.0
    for b in range(len(hist) - 1, -1, -1):
        acc += hist[b]
        if acc >= target:
            return upper_edge(b, lowest, bins_per_octave)
    return upper_edge(0, lowest, bins_per_octave)


@kernel
def bin_quantile(hist: np.ndarray, total: float, tail_share: float, lowest: float,
                 bins_per_octave: float) -> float:
    """The (1 - tail_share) quantile, interpolated within its bin (evenly in log size, as the bins
    are): the bin's upper edge would overstate a p99.9 by up to a bin's width (NVDA: 4,096 for 3,500)."""
    target = tail_share * total
    acc = 0.0
    for b in range(len(hist) - 1, 0, -1):
        if hist[b] > 0 and acc + hist[b] >= target:
            return upper_edge(b, lowest, bins_per_octave) * 2.0 ** (-(target - acc) / hist[b] / bins_per_octave)
        acc += hist[b]
    return lowest


@kernel
def tail_mass(hist: np.ndarray, b: int) -> float:
    """Mass in bins b and above."""
    acc = 0.0
    for j in range(b, len(hist)):
        acc += hist[j]
    return acc


def growth_table(half_life_bars: float, max_gap_bars: int) -> np.ndarray:
    """2**(k / half_life) for k = 0 .. max_gap_bars: the weight growth after k bars, looked up rather
    than computed, since a quiet symbol starts a new bar with almost every print."""
    return np.asarray(2.0 ** (np.arange(max_gap_bars + 1) / half_life_bars))


def decay_table(half_life_bars: float, max_gap_bars: int) -> np.ndarray:
    """0.5**(k / half_life) for k = 0 .. max_gap_bars (see growth_table)."""
    return 1.0 / growth_table(half_life_bars, max_gap_bars)


@inline
def grow_weight(weight: float, growth: float) -> tuple[float, float]:
    """(new observation weight after growing by `growth`, factor to multiply the stored masses by):
    the factor is 1 until the weight gets large, then everything is rescaled so the weight is 1 again."""
    weight *= growth
    if weight > RESCALE_AT:
        return 1.0, 1.0 / weight
    return weight, 1.0


@kernel
def fit_tail(hist: np.ndarray, total: float, min_mass: float, bins_per_octave: float) -> tuple[float, float, float]:
    """An exponential tail in log space (a Pareto law) above the highest bin with `min_mass` at or above
    it: (that anchor bin, -ln of its tail share, mean excess in octaves). (-1, nan, nan) if no bin
    above bin 0 qualifies. The estimate is Hill's, on bin midpoints."""
    acc, anchor = 0.0, -1
    for b in range(len(hist) - 1, 0, -1):
        acc += hist[b]
        if acc >= min_mass:
            anchor = b
            break
    if anchor < 0 or total <= 0:
        return -1.0, np.nan, np.nan
    excess = 0.0
    for b in range(anchor, len(hist)):
        excess += hist[b] * (b - anchor + 0.5)
    return float(anchor), -np.log(acc / total), max(excess / acc, 0.5) / bins_per_octave


@kernel
def surprise(hist: np.ndarray, total: float, b: int, weight: float, tail: np.ndarray,
             bins_per_octave: float, cap: float) -> float:
    """-ln P(value in bin b or above): from the histogram (one pseudo-observation added) where it
    holds enough mass, beyond that from the fitted tail `tail` (anchor, nats, mean excess), so a
    value past anything seen is as rare as the symbol's own tail says, not merely "unseen"."""
    if tail[0] >= 1.0 and b > tail[0]:
        return min(tail[1] + (b - tail[0]) / bins_per_octave / tail[2], cap)
    return min(-np.log((tail_mass(hist, b) + weight) / (total + weight)), cap)


@kernel
def robust_quantile(hist: np.ndarray, total: float, tail_share: float, min_mass: float, lowest: float,
                    bins_per_octave: float) -> float:
    """The (1 - tail_share) quantile: read off the histogram when at least `min_mass` lies above it,
    else extrapolated along the fitted tail (a thin history's top bin is its sample maximum, which
    understates a high quantile)."""
    anchor, nats, mean_excess = fit_tail(hist, total, min_mass, bins_per_octave)
    target = -np.log(tail_share)
    if anchor < 1.0 or nats >= target:
        return bin_quantile(hist, total, tail_share, lowest, bins_per_octave)
    return upper_edge(int(anchor) - 1, lowest, bins_per_octave) * 2.0 ** ((target - nats) * mean_excess)
