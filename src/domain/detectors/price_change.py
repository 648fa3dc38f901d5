"""Rapid price change: a print far from every one of the symbol's last few prices."""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel, new_hits
from domain.detectors.base import InPlace, change, change_bound, price_text, record
from domain.detectors.histogram import decay_table
from domain.market import MarketBatch
from domain.model import Anomaly

LOOKBACK = 3

STATE = np.dtype([
    ("recent", "f8", (LOOKBACK,)),  # last log prices, newest first
    ("n_recent", "u1"),
    ("move_sum", "f8"),             # decayed sum of clipped |tick-to-tick log move|
    ("move_n", "f8"),
    ("seen", "i4"),
    ("bar", "i4"),                  # current bar (minutes since the epoch; -1: none yet)
    ("threshold", "f8"),            # in force for the current bar (NaN: warming up)
])


@kernel
def _scan(slot: np.ndarray, ts: np.ndarray, log_price: np.ndarray, auction: np.ndarray,
          recent: np.ndarray, n_recent: np.ndarray, move_sum: np.ndarray, move_n: np.ndarray, seen: np.ndarray,
          bar: np.ndarray, threshold: np.ndarray, bar_ns: int, decay: np.ndarray, max_gap_bars: int,
          warmup: int, k_typical: float, min_move: float, reset_bars: int,
          hit: np.ndarray, score: np.ndarray, detail: np.ndarray) -> int:
    k = 0
    for i in range(len(ts)):
        s = slot[i]
        b = max(ts[i] // bar_ns, bar[s])  # an older print (refused upstream) counts in the current bar
        if b != bar[s]:
            if bar[s] >= 0:
                if b - bar[s] >= reset_bars:
                    n_recent[s] = 0  # hours without a print (a night): the first one after has no reference
                keep = decay[min(b - bar[s], max_gap_bars)]
                move_sum[s] *= keep
                move_n[s] *= keep
            bar[s] = b
            typical = move_sum[s] / move_n[s] if move_n[s] > 0 else np.nan
            threshold[s] = max(k_typical * typical, min_move) if seen[s] >= warmup else np.nan
        lp = log_price[i]
        nearest, signed = np.inf, 0.0
        for j in range(n_recent[s]):  # newest first: the most recent price wins a tie
            d = lp - recent[s, j]
            if abs(d) < nearest:
                nearest, signed = abs(d), d
        thr = threshold[s]
        if thr == thr and not auction[i] and n_recent[s] > 0 and nearest >= thr:
            hit[k], score[k] = i, nearest / thr
            detail[k, 0], detail[k, 1], detail[k, 2] = signed, thr, move_sum[s] / move_n[s]
            k += 1
        # Tick moves feed the volatility estimate, clipped so one bad print cannot inflate the
        # estimate that judges the next; the very first print has none.
        tick = abs(lp - recent[s, 0]) if n_recent[s] > 0 else 0.0
        move_sum[s] += min(tick, thr) if thr == thr else tick
        move_n[s] += 1.0
        seen[s] += 1
        for j in range(recent.shape[1] - 1, 0, -1):
            recent[s, j] = recent[s, j - 1]
        recent[s, 0] = lp
        n_recent[s] = min(n_recent[s] + 1, recent.shape[1])
    return k


class PriceChangeDetector(InPlace):
    """Flags |log(p / p_ref)| >= max(k x typical tick move, min_move) for every recent p_ref.

    Taking the smallest move against the last `LOOKBACK` prices means a lone bad print fires once and
    the print that returns to normal does not, while a real level shift fires once and the next
    trade at the new level is near its predecessor. A print after `reset_bars` without one (the
    night between two days' sessions) is not compared with the last day's: an overnight gap is not
    a print out of line.
    """

    name = "price_change"

    def __init__(self, k: float = 20.0, min_move: float = 0.0025, warmup_trades: int = 300,
                 half_life_bars: float = 30.0, max_gap_bars: int = 60, bar_ns: int = 60_000_000_000,
                 reset_bars: int = 240) -> None:
        self.k = k
        self.reset_bars = reset_bars
        self.min_move = min_move
        self.warmup_trades = warmup_trades
        self.half_life_bars = half_life_bars
        self.max_gap_bars = max_gap_bars
        self.bar_ns = bar_ns
        self._decay = decay_table(half_life_bars, max_gap_bars)

    def initial_state(self) -> np.ndarray:
        return record(STATE, bar=-1, threshold=np.nan)

    def update(self, batch: MarketBatch, st: np.ndarray) -> list[Anomaly]:
        hit, score, detail = new_hits(len(batch))
        k = _scan(batch.slot, batch.ts, batch.log_price, batch.auction, st["recent"], st["n_recent"],
                  st["move_sum"], st["move_n"], st["seen"], st["bar"], st["threshold"], self.bar_ns,
                  self._decay, self.max_gap_bars, self.warmup_trades, self.k, self.min_move, self.reset_bars,
                  hit, score, detail)
        return [self._anomaly(batch, int(hit[j]), float(score[j]), detail[j]) for j in range(k)]

    def _anomaly(self, batch: MarketBatch, i: int, score: float, detail: np.ndarray) -> Anomaly:
        signed, threshold, typical = (float(x) for x in detail[:3])
        price = float(batch.price[i])
        ref = price / float(np.exp(signed))
        reason = (f"price {price_text(price)} moved {change(signed)} from {price_text(ref)} "
                  f"(nearest of the last {LOOKBACK} prints); threshold {change_bound(threshold, signed)}, "
                  f"{batch.symbols[batch.slot[i]]}'s typical tick move is {change_bound(typical, signed)}")
        return batch.anomaly(self.name, i, score, reason,
                             {"move": signed, "threshold": threshold, "typical_move": typical})
