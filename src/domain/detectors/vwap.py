"""VWAP deviation: price walked far from the symbol's recent volume-weighted average price."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from domain.batch import SymbolBatch, bar_segments
from domain.detectors.base import decay_factor, pct
from domain.model import Anomaly


@dataclass(slots=True)
class VwapState:
    pv: float = 0.0  # decayed sum of price x volume over completed bars
    v: float = 0.0
    bar_pv: float = 0.0
    bar_v: float = 0.0
    dev_sum: float = 0.0  # decayed sum of |log(bar VWAP / reference VWAP)|
    dev_n: float = 0.0
    bars_seen: int = 0
    bar: int = -1
    reference: float = float("nan")  # log reference VWAP in force for the current bar
    threshold: float = float("nan")
    quiet_until: int = -1


class VwapDeviationDetector:
    """Flags the print at which |log(price / rolling VWAP)| first exceeds max(k x norm, min_dev).

    The reference is a decayed VWAP of completed bars (frozen within a bar); the norm is how far
    bar VWAPs usually stray from it. This catches ramps whose every tick is small.
    """

    name = "vwap_deviation"

    def __init__(self, k: float = 12.0, min_dev: float = 0.02, half_life_bars: float = 2.0,
                 norm_half_life_bars: float = 60.0, warmup_bars: int = 15,
                 cooldown_ns: int = 300_000_000_000, bar_ns: int = 60_000_000_000) -> None:
        self.k = k
        self.min_dev = min_dev
        self.half_life_bars = half_life_bars
        self.norm_half_life_bars = norm_half_life_bars
        self.warmup_bars = warmup_bars
        self.cooldown_ns = cooldown_ns
        self.bar_ns = bar_ns

    def initial_state(self) -> VwapState:
        return VwapState()

    def detect(self, batch: SymbolBatch, state: VwapState) -> tuple[VwapState, list[Anomaly]]:
        st = replace(state)
        found: list[Anomaly] = []
        for bar, lo, hi in bar_segments(batch.ts, self.bar_ns):
            if bar != st.bar:
                self._roll(st, bar)
            regular = ~batch.auction[lo:hi]
            if st.threshold == st.threshold:
                dev = batch.log_price[lo:hi] - st.reference
                over = np.flatnonzero((np.abs(dev) >= st.threshold) & regular) + lo
                over = over[batch.ts[over] >= st.quiet_until]
                if over.size:
                    i = int(over[0])
                    found.append(self._anomaly(batch, i, float(batch.log_price[i] - st.reference), st))
                    st.quiet_until = int(batch.ts[i]) + self.cooldown_ns
            size = batch.size[lo:hi] * regular
            st.bar_pv += float((batch.price[lo:hi] * size).sum())
            st.bar_v += float(size.sum())
        return st, found

    def _roll(self, st: VwapState, bar: int) -> None:
        if st.bar >= 0 and st.bar_v > 0:
            bar_vwap = np.log(st.bar_pv / st.bar_v)
            if st.reference == st.reference:
                dn = decay_factor(self.norm_half_life_bars)
                st.dev_sum = st.dev_sum * dn + abs(bar_vwap - st.reference)
                st.dev_n = st.dev_n * dn + 1.0
            d = decay_factor(self.half_life_bars)
            st.pv = st.pv * d + st.bar_pv
            st.v = st.v * d + st.bar_v
            st.bars_seen += 1
        st.bar, st.bar_pv, st.bar_v = bar, 0.0, 0.0
        st.reference = float(np.log(st.pv / st.v)) if st.v > 0 else float("nan")
        warm = st.bars_seen >= self.warmup_bars and st.dev_n > 0
        st.threshold = max(self.k * st.dev_sum / st.dev_n, self.min_dev) if warm else float("nan")

    def _anomaly(self, batch: SymbolBatch, i: int, dev: float, st: VwapState) -> Anomaly:
        norm = st.dev_sum / st.dev_n
        vwap = float(np.exp(st.reference))
        reason = (f"price {batch.price[i]:,.4g} is {'+' if dev > 0 else '-'}{pct(abs(dev))} from "
                  f"{batch.symbol}'s rolling VWAP {vwap:,.4g}; threshold {pct(st.threshold)}, "
                  f"bars usually stray {pct(norm)}")
        return Anomaly.of_trade(self.name, batch.trades[i], abs(dev) / st.threshold, reason,
                                {"deviation": dev, "vwap": vwap, "threshold": st.threshold})
