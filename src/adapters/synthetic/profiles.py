"""Per-symbol character of the synthetic market: names, price levels, volatility, size scale, activity."""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

PRICE_RANGE = (5.0, 900.0)
TAIL_Z = 2.5758  # the body's 99.5th percentile, where the Pareto tail takes over
TAIL_INDEX = 2.2  # P(size >= k x p99.9) = 0.1% x k**-2.2, as on real NVDA days up to about 6x
TAIL_CAP = 5.0  # x p99.9: the largest normal print, safely under the 8x block-trade alert
# Names shipped in ../shared data are real tickers; a synthetic symbol must never be mistaken for one.
RESERVED_NAMES = frozenset({"NVDA", "AAPL", "MSFT", "TSLA", "AMZN", "META", "GOOG", "SPY", "QQQ"})


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    symbol: str
    instrument_id: int
    price0: float  # dollars at the open
    daily_vol: float  # stdev of the day's log return
    spread_ticks: int
    size_median: float  # shares; the log-normal body's median
    size_sigma: float
    lot_share: float  # chance a body print is rounded to a 100-share lot
    weight: float  # share of the day's normal trades


def make_profiles(rng: np.random.Generator, n_symbols: int) -> list[SymbolProfile]:
    names = _names(rng, n_symbols)
    ids = np.sort(rng.choice(np.arange(100, 20_000), n_symbols, replace=False))
    lo, hi = np.log(PRICE_RANGE[0]), np.log(PRICE_RANGE[1])
    prices = np.exp(rng.uniform(lo + 0.1, hi - 0.1, n_symbols))
    # Skewed activity: a few names trade far more than the rest (ratio capped so every name has a tape).
    weights = np.exp(np.clip(rng.normal(0.0, 0.9, n_symbols), -1.6, 1.6))
    weights /= weights.sum()
    spread_bps = rng.uniform(0.5, 3.0, n_symbols)
    spreads = np.maximum(1, np.round(prices * spread_bps * 1e-4 * 100)).astype(int)
    return [
        SymbolProfile(
            symbol=names[i],
            instrument_id=int(ids[i]),
            price0=float(round(prices[i], 2)),
            daily_vol=float(rng.uniform(0.012, 0.035)),
            spread_ticks=int(spreads[i]),
            size_median=float(np.exp(rng.uniform(np.log(12), np.log(160)))),
            size_sigma=float(rng.uniform(1.0, 1.3)),
            lot_share=float(rng.uniform(0.3, 0.6)),
            weight=float(weights[i]),
        )
        for i in range(n_symbols)
    ]


def draw_sizes(rng: np.random.Generator, profile: SymbolProfile, n: int) -> np.ndarray:
    """A log-normal body with a Pareto tail, as on the real tape.

    Above the body's 99.5th percentile sizes follow a Pareto law of index TAIL_INDEX, so prints of 2x
    the p99.9 size are about a fifth as common as prints above it (real NVDA days: 36 of 172 and 53
    of 207 in regular hours) and size alone cannot tell a large normal print from an anomaly. The
    tail is truncated at TAIL_CAP x p99.9: a normal print must never reach the block-trade alert,
    because the labels have to be the only anomalies on the tape.
    """
    z = np.clip(rng.standard_normal(n), -4.0, TAIL_Z)
    raw = profile.size_median * np.exp(profile.size_sigma * z)
    tail = z >= TAIL_Z
    start = profile.size_median * np.exp(profile.size_sigma * TAIL_Z)
    # Truncated Pareto by inversion; the tail holds 0.5% of prints, so p99.9 = start * 5**(1/index).
    top = TAIL_CAP * 5.0 ** (1.0 / TAIL_INDEX)
    u = rng.random(int(tail.sum()))
    raw[tail] = start * (1.0 - u * (1.0 - top ** -TAIL_INDEX)) ** (-1.0 / TAIL_INDEX)
    lots = (raw >= 60) & (rng.random(n) < profile.lot_share)
    sizes = np.where(lots, np.maximum(100, np.round(raw / 100) * 100), np.maximum(1, np.round(raw)))
    return sizes.astype(np.int64)


def _names(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list(string.ascii_uppercase))
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        name = "".join(rng.choice(letters, int(rng.choice([3, 4], p=[0.4, 0.6]))))
        if name not in seen and name not in RESERVED_NAMES:
            seen.add(name)
            out.append(name)
    return sorted(out)
