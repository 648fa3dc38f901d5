"""VWAP deviation: price walked far from the symbol's recent volume-weighted average price."""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel, new_hits
from domain.detectors.base import InPlace, change, change_bound, price_text, record
from domain.market import MarketBatch
from domain.model import Anomaly

STATE = np.dtype([
    ("pv", "f8"),          # decayed sum of price x volume over completed bars
    ("v", "f8"),
    ("bar_pv", "f8"),
    ("bar_v", "f8"),
    ("dev_sum", "f8"),     # decayed sum of |log(bar VWAP / reference VWAP)|
    ("dev_n", "f8"),
    ("bars_seen", "i4"),
    ("bar", "i4"),         # current bar (minutes since the epoch; -1: none yet)
    ("reference", "f8"),   # log reference VWAP in force for the current bar
    ("threshold", "f8"),
    ("quiet_until", "i8"),
])


@kernel
def _scan(slot: np.ndarray, ts: np.ndarray, price: np.ndarray, log_price: np.ndarray, size: np.ndarray,
          auction: np.ndarray, pv: np.ndarray, v: np.ndarray, bar_pv: np.ndarray, bar_v: np.ndarray,
          dev_sum: np.ndarray, dev_n: np.ndarray, bars_seen: np.ndarray, bar: np.ndarray, reference: np.ndarray,
          threshold: np.ndarray, quiet_until: np.ndarray, bar_ns: int, keep: float, norm_keep: float,
          warmup_bars: int, k_norm: float, min_dev: float, cooldown_ns: int, reset_bars: int,
          hit: np.ndarray, score: np.ndarray, detail: np.ndarray) -> int:
    k = 0
    for i in range(len(ts)):
        s = slot[i]
        b = max(ts[i] // bar_ns, bar[s])  # an older print (refused upstream) counts in the current bar
        if b != bar[s]:
            if bar[s] >= 0 and bar_v[s] > 0:
                bar_vwap = np.log(bar_pv[s] / bar_v[s])
                if reference[s] == reference[s]:
                    dev_sum[s] = dev_sum[s] * norm_keep + abs(bar_vwap - reference[s])
                    dev_n[s] = dev_n[s] * norm_keep + 1.0
                pv[s] = pv[s] * keep + bar_pv[s]
                v[s] = v[s] * keep + bar_v[s]
                bars_seen[s] += 1
            if bar[s] >= 0 and b - bar[s] >= reset_bars:
                pv[s] = v[s] = 0.0  # hours without a print (a night): a new day's VWAP, from its first bar
            bar[s] = b
            bar_pv[s] = 0.0
            bar_v[s] = 0.0
            reference[s] = np.log(pv[s] / v[s]) if v[s] > 0 else np.nan
            warm = bars_seen[s] >= warmup_bars and dev_n[s] > 0
            threshold[s] = max(k_norm * dev_sum[s] / dev_n[s], min_dev) if warm else np.nan
        if auction[i]:
            continue
        thr = threshold[s]
        if thr == thr and ts[i] >= quiet_until[s]:
            dev = log_price[i] - reference[s]
            if abs(dev) >= thr:
                hit[k], score[k] = i, abs(dev) / thr
                detail[k, 0], detail[k, 1], detail[k, 2], detail[k, 3] = dev, reference[s], thr, dev_sum[s] / dev_n[s]
                k += 1
                quiet_until[s] = ts[i] + cooldown_ns
        bar_pv[s] += price[i] * size[i]
        bar_v[s] += size[i]
    return k


class VwapDeviationDetector(InPlace):
    """Flags the print at which |log(price / rolling VWAP)| first exceeds max(k x norm, min_dev).

    The reference is a decayed VWAP of completed bars (frozen within a bar); the norm is how far
    bar VWAPs usually stray from it. This catches ramps whose every tick is small. After `reset_bars`
    without a print (the night between two days' sessions) the VWAP starts again from the new day's
    first bar: an overnight gap is not a ramp.
    """

    name = "vwap_deviation"

    def __init__(self, k: float = 12.0, min_dev: float = 0.02, half_life_bars: float = 2.0,
                 norm_half_life_bars: float = 60.0, warmup_bars: int = 15,
                 cooldown_ns: int = 300_000_000_000, bar_ns: int = 60_000_000_000, reset_bars: int = 240) -> None:
        self.k = k
        self.reset_bars = reset_bars
        self.min_dev = min_dev
        self.half_life_bars = half_life_bars
        self.norm_half_life_bars = norm_half_life_bars
        self.warmup_bars = warmup_bars
        self.cooldown_ns = cooldown_ns
        self.bar_ns = bar_ns

    def initial_state(self) -> np.ndarray:
        return record(STATE, bar=-1, reference=np.nan, threshold=np.nan, quiet_until=-1)

    def update(self, batch: MarketBatch, st: np.ndarray) -> list[Anomaly]:
        hit, score, detail = new_hits(len(batch))
        k = _scan(batch.slot, batch.ts, batch.price, batch.log_price, batch.size, batch.auction, st["pv"], st["v"],
                  st["bar_pv"], st["bar_v"], st["dev_sum"], st["dev_n"], st["bars_seen"], st["bar"],
                  st["reference"], st["threshold"], st["quiet_until"], self.bar_ns,
                  0.5 ** (1.0 / self.half_life_bars), 0.5 ** (1.0 / self.norm_half_life_bars), self.warmup_bars,
                  self.k, self.min_dev, self.cooldown_ns, self.reset_bars, hit, score, detail)
        return [self._anomaly(batch, int(hit[j]), float(score[j]), detail[j]) for j in range(k)]

    def _anomaly(self, batch: MarketBatch, i: int, score: float, detail: np.ndarray) -> Anomaly:
        dev, reference, threshold, norm = (float(x) for x in detail)
        vwap = float(np.exp(reference))
        reason = (f"price {price_text(batch.price[i])} is {change(dev)} from "
                  f"{batch.symbols[batch.slot[i]]}'s rolling VWAP {price_text(vwap)}; threshold "
                  f"{change_bound(threshold, dev)}, bars usually stray {change_bound(norm, dev)}")
        return batch.anomaly(self.name, i, score, reason, {"deviation": dev, "vwap": vwap, "threshold": threshold})
