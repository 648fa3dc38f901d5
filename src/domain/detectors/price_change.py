"""Rapid price change: a print far from every one of the symbol's last few prices."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from domain.batch import SymbolBatch, bar_segments
from domain.detectors.base import decay_factor, pct
from domain.model import Anomaly


@dataclass(slots=True)
class PriceChangeState:
    recent: np.ndarray = field(default_factory=lambda: np.empty(0))  # last `lookback` log prices
    move_sum: float = 0.0  # decayed sum of clipped |tick-to-tick log move|
    move_n: float = 0.0
    seen: int = 0
    bar: int = -1
    threshold: float = float("nan")


class PriceChangeDetector:
    """Flags |log(p / p_ref)| >= max(k x typical tick move, min_move) for every recent p_ref.

    Taking the smallest move against the last `lookback` prices means a lone bad print fires
    once and the print that returns to normal does not, while a real level shift fires once
    and the next trade at the new level is near its predecessor.
    """

    name = "price_change"

    def __init__(self, k: float = 20.0, min_move: float = 0.0025, lookback: int = 3,
                 warmup_trades: int = 500, half_life_bars: float = 30.0,
                 bar_ns: int = 60_000_000_000) -> None:
        self.k = k
        self.min_move = min_move
        self.lookback = lookback
        self.warmup_trades = warmup_trades
        self.half_life_bars = half_life_bars
        self.bar_ns = bar_ns

    def initial_state(self) -> PriceChangeState:
        return PriceChangeState()

    def detect(self, batch: SymbolBatch, state: PriceChangeState) -> tuple[PriceChangeState, list[Anomaly]]:
        st = replace(state)
        found: list[Anomaly] = []
        lp_all = np.concatenate((st.recent, batch.log_price))
        offset = len(st.recent)
        n = len(batch)
        # Smallest |move| against each of the previous `lookback` prices (inf where none yet).
        move = np.full(n, np.inf)
        signed = np.zeros(n)
        for j in range(1, self.lookback + 1):
            idx = np.arange(offset, offset + n) - j
            ok = idx >= 0
            d = np.where(ok, batch.log_price - lp_all[np.maximum(idx, 0)], np.inf)
            closer = np.abs(d) < move
            move = np.where(closer, np.abs(d), move)
            signed = np.where(closer, d, signed)
        # Tick-to-tick moves feed the volatility estimate; the very first trade has none.
        tick = np.abs(np.diff(lp_all[offset - 1:])) if offset else np.abs(np.diff(lp_all, prepend=lp_all[:1]))
        for bar, lo, hi in bar_segments(batch.ts, self.bar_ns):
            if bar != st.bar:
                if st.bar >= 0:
                    keep = decay_factor(self.half_life_bars)
                    st.move_sum *= keep
                    st.move_n *= keep
                st.bar = bar
                typical = st.move_sum / st.move_n if st.move_n else float("nan")
                warm = st.seen >= self.warmup_trades
                st.threshold = max(self.k * typical, self.min_move) if warm else float("nan")
            if st.threshold == st.threshold:
                hits = np.flatnonzero((move[lo:hi] >= st.threshold) & ~batch.auction[lo:hi]) + lo
                for i in hits:
                    found.append(self._anomaly(batch, int(i), float(signed[i]), float(move[i]), st))
            # Clip so one bad print cannot inflate the volatility estimate that judges the next.
            cap = st.threshold if st.threshold == st.threshold else np.inf
            seg = tick[lo:hi]
            st.move_sum += float(np.minimum(seg, cap).sum())
            st.move_n += hi - lo
            st.seen += hi - lo
        st.recent = lp_all[-self.lookback:].copy()
        return st, found

    def _anomaly(self, batch: SymbolBatch, i: int, signed: float, move: float, st: PriceChangeState) -> Anomaly:
        price = float(batch.price[i])
        ref = price / float(np.exp(signed))
        typical = st.move_sum / st.move_n if st.move_n else 0.0
        score = move / st.threshold
        reason = (f"price {price:,.4g} moved {'+' if signed > 0 else '-'}{pct(move)} from {ref:,.4g} "
                  f"(nearest of the last {self.lookback} prints); threshold {pct(st.threshold)}, "
                  f"{batch.symbol}'s typical tick move is {pct(typical)}")
        return Anomaly.of_trade(self.name, batch.trades[i], score, reason,
                                {"move": signed, "threshold": st.threshold, "typical_move": typical})
