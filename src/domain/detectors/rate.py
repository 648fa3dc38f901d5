"""Activity against its norm: trade bursts (counts in 1 s) and volume surges (shares in 60 s)."""

from __future__ import annotations

import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros  # LLVM's cttz, as numba's own bit operations use

from domain.compiled import inline, kernel, new_hits
from domain.detectors.base import InPlace, qty, record
from domain.detectors.histogram import decay_table
from domain.market import MarketBatch
from domain.model import Anomaly


def rate_state(n_buckets: int) -> np.dtype:
    return np.dtype([
        ("ring", "f4", (n_buckets,)),  # per-bucket totals of the sliding window, indexed by bucket % n
        ("head", "i8"),                # newest bucket id in the ring (-1: empty)
        ("window", "f8"),              # the ring's sum, kept as buckets come and go
        ("filled", "u8"),              # bit j set: ring slot j may be non-zero (the others are 0)
        ("norm_sum", "f8"),            # decayed sum of per-bar totals
        ("norm_n", "f8"),              # decayed number of bars
        ("bar_total", "f8"),           # total of the bar in progress
        ("bar", "i8"),
        ("bars_seen", "i4"),
        ("quiet_until", "i8"),         # no second alert for the same episode before this event time
        ("in_episode", "u1"),          # fired, and the window has not fallen back under half the threshold
        ("log_size", "f8", (3,)),      # decayed count, sum and sum of squares of log(size): the cap's basis
        ("cap", "f8"),                 # largest contribution of one print, in force for the current bar
    ])


@inline
def _bits(start: int, stop: int) -> np.uint64:
    """Bits start .. stop - 1 set (stop <= 63)."""
    return (np.uint64(1) << np.uint64(stop)) - (np.uint64(1) << np.uint64(start))


@inline
def _drop(ring: np.ndarray, slots: np.uint64, window: np.ndarray, s: int, subtract: bool) -> None:
    """Empty the ring slots whose bits are set, lowest first, taking them off the window sum."""
    while slots != np.uint64(0):
        j: int = trailing_zeros(slots)  # type: ignore[call-arg]  # an intrinsic: typed by numba, not mypy
        if subtract:
            window[s] -= ring[j]
        ring[j] = 0.0
        slots &= slots - np.uint64(1)


@kernel
def _scan(slot: np.ndarray, ts: np.ndarray, size: np.ndarray, auction: np.ndarray, ring: np.ndarray,
          head: np.ndarray, window: np.ndarray, filled: np.ndarray, norm_sum: np.ndarray, norm_n: np.ndarray,
          bar_total: np.ndarray, bar: np.ndarray, bars_seen: np.ndarray, quiet_until: np.ndarray, in_episode: np.ndarray, log_size: np.ndarray, cap: np.ndarray, count_trades: bool,
          cap_z: float, cap_multiple: float, size_decay: np.ndarray, floor_caps: float, norm_clip: float, rearm: float,
          bar_ns: int, bucket_ns: int, window_bars: float, decay: np.ndarray, max_gap_bars: int,
          warmup_bars: int, multiple: float, minimum: float, cooldown_ns: int,
          hit: np.ndarray, score: np.ndarray, detail: np.ndarray) -> int:
    n_buckets = ring.shape[1]
    k = 0
    for i in range(len(ts)):
        s = slot[i]
        b = ts[i] // bar_ns
        if b != bar[s]:
            # The cap follows the size distribution, which moves slowly: re-read every 8th bar.
            if not count_trades and log_size[s, 0] > 0 and (bars_seen[s] % 8 == 0 or cap[s] != cap[s]):
                n, mean = log_size[s, 0], log_size[s, 1] / log_size[s, 0]
                sd = np.sqrt(max(log_size[s, 2] / n - mean * mean, 0.0))
                cap[s] = cap_multiple * np.exp(mean + cap_z * sd)
            if not count_trades and bar[s] >= 0:
                kept = size_decay[min(b - bar[s], max_gap_bars)]
                for m in range(3):
                    log_size[s, m] *= kept
            if bar[s] >= 0:
                # An episode's own bars must not raise the norm that judges the rest of it: once warm,
                # a bar adds at most `norm_clip` x the current norm.
                added = bar_total[s]
                if bars_seen[s] >= warmup_bars and norm_n[s] > 0:
                    added = min(added, norm_clip * norm_sum[s] / norm_n[s])
                keep = decay[1]
                norm_sum[s] = norm_sum[s] * keep + added
                norm_n[s] = norm_n[s] * keep + 1.0
                gap = min(b - bar[s] - 1, max_gap_bars)  # empty bars count as zero
                if gap > 0:
                    kg = decay[gap]
                    norm_sum[s] *= kg
                    norm_n[s] = norm_n[s] * kg + (1.0 - kg) / (1.0 - keep)
                bars_seen[s] += 1
            bar[s] = b
            bar_total[s] = 0.0
        if count_trades:
            w = 1.0
        elif auction[i]:
            w = 0.0  # auction crosses are scheduled liquidity events, not surges
        else:
            w = min(size[i], cap[s]) if cap[s] == cap[s] else size[i]
            ls = np.log(size[i])
            log_size[s, 0] += 1.0
            log_size[s, 1] += ls
            log_size[s, 2] += ls * ls
        q = ts[i] // bucket_ns
        slot_q = q % n_buckets
        if head[s] < 0 or q - head[s] >= n_buckets:
            # The whole window went stale: clear the slots in use (a quiet symbol has only a few, and
            # starts over with almost every print).
            _drop(ring[s], filled[s], window, s, False)
            filled[s] = np.uint64(0)
            window[s] = 0.0
        elif q > head[s]:
            # Buckets head+1 .. q take over the slots of the buckets that leave the window, oldest
            # first; only slots in use are visited, so a gap costs the same however long it is.
            first = (head[s] + 1) % n_buckets
            end = first + q - head[s]
            if end <= n_buckets:
                late, early = _bits(first, end), np.uint64(0)
            else:
                late, early = _bits(first, n_buckets), _bits(0, end - n_buckets)
            _drop(ring[s], filled[s] & late, window, s, True)
            _drop(ring[s], filled[s] & early, window, s, True)
            filled[s] &= ~(late | early)
        head[s] = max(head[s], q)
        ring[s, slot_q] += w
        filled[s] |= np.uint64(1) << np.uint64(slot_q)
        window[s] += w
        total = window[s]
        # The threshold, max(multiple x norm, floor), is at least the floor: below it nothing can
        # fire, and a quiet symbol's window almost always is, so the norm is only read above it.
        floor = minimum if count_trades else floor_caps * cap[s]
        if (total >= floor or in_episode[s]) and bars_seen[s] >= warmup_bars and norm_n[s] > 0:
            expected = norm_sum[s] / norm_n[s] * window_bars
            thr = max(multiple * expected, floor)
            if in_episode[s] and not total >= rearm * thr:
                in_episode[s] = 0
            if not auction[i] and total >= thr and ts[i] >= quiet_until[s] and not in_episode[s]:
                in_episode[s] = 1
                hit[k], score[k] = i, total / thr
                detail[k, 0], detail[k, 1], detail[k, 2], detail[k, 3] = total, expected, thr, cap[s]
                k += 1
                quiet_until[s] = ts[i] + cooldown_ns
        bar_total[s] += w
    return k


class WindowRateDetector(InPlace):
    """Flags the trade at which a sliding-window total first exceeds `multiple` x its norm.

    The norm is the decayed mean per-bar total (empty bars count as zero, so quiet hours lower
    it), scaled to the window length; a bar adds at most `norm_clip` x the norm, so an episode
    does not talk the norm into accepting it. One alert per episode: after firing, the detector
    stays quiet until the window falls under `rearm` x the threshold, and for `cooldown_ns` at least.
    """

    name = "window_rate"
    unit = "trades"

    count_trades = True

    def __init__(self, window_ns: int, bucket_ns: int, multiple: float, minimum: float,
                 warmup_bars: int = 15, half_life_bars: float = 10.0, max_gap_bars: int = 60,
                 cooldown_ns: int = 60_000_000_000, cap_z: float = 2.576, cap_multiple: float = 2.0,
                 floor_caps: float = 3.0,
                 norm_clip: float = 3.0, rearm: float = 0.5,
                 size_half_life_bars: float = 390.0, bar_ns: int = 60_000_000_000) -> None:
        self.window_ns = window_ns
        self.bucket_ns = bucket_ns
        self.multiple = multiple
        self.minimum = minimum
        self.warmup_bars = warmup_bars
        self.half_life_bars = half_life_bars
        self.max_gap_bars = max_gap_bars
        self.cooldown_ns = cooldown_ns
        self.cap_z = cap_z
        self.cap_multiple = cap_multiple
        self.floor_caps = floor_caps
        self.norm_clip = norm_clip
        self.rearm = rearm
        self.size_half_life_bars = size_half_life_bars
        self.bar_ns = bar_ns
        if not 0 < window_ns // bucket_ns <= 63:
            raise ValueError("a window holds 1 to 63 buckets (one bit each)")
        self.state_dtype = rate_state(window_ns // bucket_ns)
        self._decay = decay_table(half_life_bars, max_gap_bars)
        self._size_decay = decay_table(size_half_life_bars, max_gap_bars)

    def initial_state(self) -> np.ndarray:
        return record(self.state_dtype, head=-1, bar=-1, quiet_until=-1, cap=np.nan)

    def update(self, batch: MarketBatch, st: np.ndarray) -> list[Anomaly]:
        hit, score, detail = new_hits(len(batch))
        k = _scan(batch.slot, batch.ts, batch.size, batch.auction, st["ring"], st["head"], st["window"],
                  st["filled"], st["norm_sum"], st["norm_n"], st["bar_total"], st["bar"], st["bars_seen"],
                  st["quiet_until"], st["in_episode"], st["log_size"], st["cap"],
                  self.count_trades, self.cap_z, self.cap_multiple, self._size_decay, self.floor_caps, self.norm_clip,
                  self.rearm, self.bar_ns, self.bucket_ns, self.window_ns / self.bar_ns, self._decay,
                  self.max_gap_bars, self.warmup_bars, self.multiple, self.minimum, self.cooldown_ns,
                  hit, score, detail)
        return [self._anomaly(batch, int(hit[j]), float(score[j]), detail[j]) for j in range(k)]

    def _anomaly(self, batch: MarketBatch, i: int, score: float, detail: np.ndarray) -> Anomaly:
        total, expected, threshold, cap = (float(x) for x in detail)
        secs = self.window_ns / 1e9
        capped = "" if self.count_trades else f" (each print counted up to {qty(cap)})"
        reason = (f"{qty(total)} {self.unit} in {secs:g}s{capped} is {total / max(expected, 1e-9):.1f}x "
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
        # A burst lasts a second: its bar barely moves a one-minute norm, and a busy session's norm
        # must be free to catch up with it (the open), so bars are not clipped here.
        kw.setdefault("norm_clip", float("inf"))
        super().__init__(multiple=multiple, minimum=minimum, **kw)  # type: ignore[arg-type]


class VolumeSurgeDetector(WindowRateDetector):
    """Shares traded in the last minute far above the norm, with no single print needing to be big.

    Each print counts up to a cap (`cap_multiple` x the symbol's p99.5 size, from log-size moments),
    so one or two large prints cannot make a surge on a quiet name (that is high_volume's call): the
    alert needs at least `floor_caps` caps' worth of shares. Auction crosses do not count.
    """

    name = "volume_surge"
    unit = "shares"
    count_trades = False

    def __init__(self, multiple: float = 8.0, floor_caps: float = 3.0, **kw: int | float) -> None:
        kw.setdefault("window_ns", 60_000_000_000)
        kw.setdefault("bucket_ns", 1_000_000_000)
        super().__init__(multiple=multiple, minimum=0.0, floor_caps=floor_caps, **kw)  # type: ignore[arg-type]

