"""Activity against its norm: trade bursts (counts in 1 s) and volume surges (shares in 60 s)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from domain.batch import SymbolBatch, bar_segments
from domain.detectors.base import decay_factor, qty
from domain.model import Anomaly
from domain.windows import BucketWindow


@dataclass(slots=True)
class RateState:
    window: BucketWindow
    norm_sum: float = 0.0  # decayed sum of per-bar totals
    norm_n: float = 0.0  # decayed number of bars
    bar_total: float = 0.0  # total of the bar in progress
    bar: int = -1
    bars_seen: int = 0
    threshold: float = float("nan")
    expected: float = float("nan")
    quiet_until: int = -1  # no second alert for the same episode before this event time


class WindowRateDetector:
    """Flags the trade at which a sliding-window total first exceeds `multiple` x its norm.

    The norm is the decayed mean per-bar total (empty bars count as zero, so quiet hours lower
    it), scaled to the window length. One alert per episode: after firing, the detector stays
    quiet for `cooldown_ns` of event time.
    """

    name = "window_rate"
    unit = "trades"

    def __init__(self, window_ns: int, bucket_ns: int, multiple: float, minimum: float,
                 warmup_bars: int = 15, half_life_bars: float = 10.0, max_gap_bars: int = 60,
                 cooldown_ns: int = 60_000_000_000, bar_ns: int = 60_000_000_000) -> None:
        self.window_ns = window_ns
        self.bucket_ns = bucket_ns
        self.multiple = multiple
        self.minimum = minimum
        self.warmup_bars = warmup_bars
        self.half_life_bars = half_life_bars
        self.max_gap_bars = max_gap_bars
        self.cooldown_ns = cooldown_ns
        self.bar_ns = bar_ns

    def measure(self, batch: SymbolBatch) -> np.ndarray:
        raise NotImplementedError

    def initial_state(self) -> RateState:
        return RateState(window=BucketWindow(self.bucket_ns, self.window_ns // self.bucket_ns))

    def detect(self, batch: SymbolBatch, state: RateState) -> tuple[RateState, list[Anomaly]]:
        st = replace(state, window=state.window.copy())
        weights = self.measure(batch)
        totals = st.window.push(batch.ts, weights)
        found: list[Anomaly] = []
        for bar, lo, hi in bar_segments(batch.ts, self.bar_ns):
            if bar != st.bar:
                self._roll(st, bar)
            if st.threshold == st.threshold:
                over = np.flatnonzero((totals[lo:hi] >= st.threshold) & ~batch.auction[lo:hi]) + lo
                over = over[batch.ts[over] >= st.quiet_until]
                while over.size:  # one alert per episode: only the first crossing fires
                    i = int(over[0])
                    found.append(self._anomaly(batch, i, float(totals[i]), st))
                    st.quiet_until = int(batch.ts[i]) + self.cooldown_ns
                    over = over[batch.ts[over] >= st.quiet_until]
            st.bar_total += float(weights[lo:hi].sum())
        return st, found

    def _roll(self, st: RateState, bar: int) -> None:
        if st.bar >= 0:
            d = decay_factor(self.half_life_bars)
            st.norm_sum = st.norm_sum * d + st.bar_total
            st.norm_n = st.norm_n * d + 1.0
            gap = min(bar - st.bar - 1, self.max_gap_bars)
            if gap > 0:
                dg = d**gap
                st.norm_sum *= dg
                st.norm_n = st.norm_n * dg + (1 - dg) / (1 - d)
            st.bars_seen += 1
        st.bar, st.bar_total = bar, 0.0
        st.expected = st.norm_sum / st.norm_n * (self.window_ns / self.bar_ns) if st.norm_n else float("nan")
        warm = st.bars_seen >= self.warmup_bars
        st.threshold = max(self.multiple * st.expected, self.minimum) if warm else float("nan")

    def _anomaly(self, batch: SymbolBatch, i: int, total: float, st: RateState) -> Anomaly:
        secs = self.window_ns / 1e9
        reason = (f"{qty(total)} {self.unit} in {secs:g}s is {total / max(st.expected, 1e-9):.1f}x "
                  f"{batch.symbol}'s norm of {st.expected:,.1f} per {secs:g}s (alert at {qty(st.threshold)})")
        return Anomaly.of_trade(self.name, batch.trades[i], total / st.threshold, reason,
                                {"window_total": total, "expected": st.expected, "threshold": st.threshold})


class TradeBurstDetector(WindowRateDetector):
    """A sudden cluster of trade arrivals: trades in the last second far above the norm."""

    name = "trade_burst"
    unit = "trades"

    def __init__(self, multiple: float = 20.0, minimum: float = 100.0, **kw: int | float) -> None:
        kw.setdefault("window_ns", 1_000_000_000)
        kw.setdefault("bucket_ns", 100_000_000)
        super().__init__(multiple=multiple, minimum=minimum, **kw)  # type: ignore[arg-type]

    def measure(self, batch: SymbolBatch) -> np.ndarray:
        return np.ones(len(batch))


class VolumeSurgeDetector(WindowRateDetector):
    """Shares traded in the last minute far above the norm, with no single print needing to be big."""

    name = "volume_surge"
    unit = "shares"

    def __init__(self, multiple: float = 8.0, minimum: float = 5000.0, **kw: int | float) -> None:
        kw.setdefault("window_ns", 60_000_000_000)
        kw.setdefault("bucket_ns", 1_000_000_000)
        super().__init__(multiple=multiple, minimum=minimum, **kw)  # type: ignore[arg-type]

    def measure(self, batch: SymbolBatch) -> np.ndarray:
        # Auction crosses are scheduled liquidity events, not surges: they do not count.
        return np.where(batch.auction, 0.0, batch.size)
