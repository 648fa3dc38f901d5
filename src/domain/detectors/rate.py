"""Activity against its norm: trade bursts (counts in 1 s) and volume surges (shares in 60 s)."""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel, new_hits
from domain.detectors.base import qty, record
from domain.market import MarketBatch
from domain.model import Anomaly


def rate_state(n_buckets: int) -> np.dtype:
    return np.dtype([
        ("ring", "f4", (n_buckets,)),  # per-bucket totals of the sliding window, indexed by bucket % n
        ("head", "i8"),                # newest bucket id in the ring (-1: empty)
        ("norm_sum", "f8"),            # decayed sum of per-bar totals
        ("norm_n", "f8"),              # decayed number of bars
        ("bar_total", "f8"),           # total of the bar in progress
        ("bar", "i8"),
        ("bars_seen", "i4"),
        ("threshold", "f8"),
        ("expected", "f8"),
        ("quiet_until", "i8"),         # no second alert for the same episode before this event time
    ])


@kernel
def _scan(slot: np.ndarray, ts: np.ndarray, weight: np.ndarray, auction: np.ndarray, ring: np.ndarray,
          head: np.ndarray, norm_sum: np.ndarray, norm_n: np.ndarray, bar_total: np.ndarray, bar: np.ndarray,
          bars_seen: np.ndarray, threshold: np.ndarray, expected: np.ndarray, quiet_until: np.ndarray,
          bar_ns: int, bucket_ns: int, window_bars: float, keep: float, max_gap_bars: int, warmup_bars: int,
          multiple: float, minimum: float, cooldown_ns: int,
          hit: np.ndarray, score: np.ndarray, detail: np.ndarray) -> int:
    n_buckets = ring.shape[1]
    k = 0
    for i in range(len(ts)):
        s = slot[i]
        b = ts[i] // bar_ns
        if b != bar[s]:
            if bar[s] >= 0:
                norm_sum[s] = norm_sum[s] * keep + bar_total[s]
                norm_n[s] = norm_n[s] * keep + 1.0
                gap = min(b - bar[s] - 1, max_gap_bars)  # empty bars count as zero
                if gap > 0:
                    kg = keep**gap
                    norm_sum[s] *= kg
                    norm_n[s] = norm_n[s] * kg + (1.0 - kg) / (1.0 - keep)
                bars_seen[s] += 1
            bar[s] = b
            bar_total[s] = 0.0
            expected[s] = norm_sum[s] / norm_n[s] * window_bars if norm_n[s] > 0 else np.nan
            threshold[s] = max(multiple * expected[s], minimum) if bars_seen[s] >= warmup_bars else np.nan
        q = ts[i] // bucket_ns
        if head[s] < 0 or q - head[s] >= n_buckets:
            ring[s] = 0.0
        else:
            for j in range(head[s] + 1, q + 1):
                ring[s, j % n_buckets] = 0.0
        head[s] = max(head[s], q)
        ring[s, q % n_buckets] += weight[i]
        total = 0.0
        for j in range(n_buckets):
            total += ring[s, j]
        thr = threshold[s]
        if thr == thr and not auction[i] and total >= thr and ts[i] >= quiet_until[s]:
            hit[k], score[k] = i, total / thr
            detail[k, 0], detail[k, 1], detail[k, 2] = total, expected[s], thr
            k += 1
            quiet_until[s] = ts[i] + cooldown_ns
        bar_total[s] += weight[i]
    return k


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
        self.state_dtype = rate_state(window_ns // bucket_ns)

    def measure(self, batch: MarketBatch) -> np.ndarray:
        raise NotImplementedError

    def initial_state(self) -> np.ndarray:
        return record(self.state_dtype, head=-1, bar=-1, threshold=np.nan, expected=np.nan, quiet_until=-1)

    def detect(self, batch: MarketBatch, state: np.ndarray) -> tuple[np.ndarray, list[Anomaly]]:
        st = state.copy()
        hit, score, detail = new_hits(len(batch))
        k = _scan(batch.slot, batch.ts, self.measure(batch), batch.auction, st["ring"], st["head"], st["norm_sum"],
                  st["norm_n"], st["bar_total"], st["bar"], st["bars_seen"], st["threshold"], st["expected"],
                  st["quiet_until"], self.bar_ns, self.bucket_ns, self.window_ns / self.bar_ns,
                  0.5 ** (1.0 / self.half_life_bars), self.max_gap_bars, self.warmup_bars, self.multiple,
                  self.minimum, self.cooldown_ns, hit, score, detail)
        return st, [self._anomaly(batch, int(hit[j]), float(score[j]), detail[j]) for j in range(k)]

    def _anomaly(self, batch: MarketBatch, i: int, score: float, detail: np.ndarray) -> Anomaly:
        total, expected, threshold = (float(x) for x in detail[:3])
        secs = self.window_ns / 1e9
        reason = (f"{qty(total)} {self.unit} in {secs:g}s is {total / max(expected, 1e-9):.1f}x "
                  f"{batch.symbols[batch.slot[i]]}'s norm of {expected:,.1f} per {secs:g}s "
                  f"(alert at {qty(threshold)})")
        return batch.anomaly(self.name, i, score, reason,
                             {"window_total": total, "expected": expected, "threshold": threshold})


class TradeBurstDetector(WindowRateDetector):
    """A sudden cluster of trade arrivals: trades in the last second far above the norm."""

    name = "trade_burst"
    unit = "trades"

    def __init__(self, multiple: float = 20.0, minimum: float = 100.0, **kw: int | float) -> None:
        kw.setdefault("window_ns", 1_000_000_000)
        kw.setdefault("bucket_ns", 100_000_000)
        super().__init__(multiple=multiple, minimum=minimum, **kw)  # type: ignore[arg-type]

    def measure(self, batch: MarketBatch) -> np.ndarray:
        return np.ones(len(batch))


class VolumeSurgeDetector(WindowRateDetector):
    """Shares traded in the last minute far above the norm, with no single print needing to be big."""

    name = "volume_surge"
    unit = "shares"

    def __init__(self, multiple: float = 8.0, minimum: float = 5000.0, **kw: int | float) -> None:
        kw.setdefault("window_ns", 60_000_000_000)
        kw.setdefault("bucket_ns", 1_000_000_000)
        super().__init__(multiple=multiple, minimum=minimum, **kw)  # type: ignore[arg-type]

    def measure(self, batch: MarketBatch) -> np.ndarray:
        # Auction crosses are scheduled liquidity events, not surges: they do not count.
        return np.where(batch.auction, 0.0, batch.size)
