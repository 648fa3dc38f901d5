"""Decayed log-scale histograms in state records: quantiles and tail probabilities, compiled.

Decay is lazy: instead of shrinking every bin each bar, a new observation is added with a weight
that grows by 2**(1/half_life) per bar, and the whole row is rescaled only when that weight gets
large. Ratios (quantiles, tail shares) are what the detectors read, and those are unaffected.
"""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel

RESCALE_AT = 2.0**40


@kernel
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
def tail_mass(hist: np.ndarray, b: int) -> float:
    """Mass in bins b and above."""
    acc = 0.0
    for j in range(b, len(hist)):
        acc += hist[j]
    return acc


@kernel
def grow_weight(weight: float, bars: int, half_life_bars: float) -> tuple[float, float]:
    """(new observation weight after `bars` bars, factor to multiply the stored masses by): the factor
    is 1 until the weight gets large, then everything is rescaled so the weight is 1 again."""
    weight *= 2.0 ** (bars / half_life_bars)
    if weight > RESCALE_AT:
        return 1.0, 1.0 / weight
    return weight, 1.0
