"""Activity against its norm: trade bursts (counts in 1 s) and volume surges (shares in 60 s)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros  # LLVM's cttz, as numba's own bit operations use

from domain.compiled import inline, kernel
from domain.detectors.base import InPlace, level, qty, record
from domain.detectors.histogram import decay_table
from domain.market import MarketBatch
from domain.model import Anomaly
from domain.sessions import SessionCalendar


# The parts of a trading day a rate is judged in, each with a norm of its own (SessionCalendar's
# `opening_ns` and `closing_ns` place them): the open and the close are changes of regime, not bursts.
# On the real NVDA days, the minutes before the open (opening imbalances published) trade two to three
# times the pre-market's rate, the first half hour three to five times the midday's, the last ten
# minutes (closing imbalances) four to five times, the half hour after the close several times the
# evening's; the pre-market's broker-open minutes (07:00 and 08:00, `broker_open_ns`, judged apart
# from the rest of the pre-market) five to ten times the minutes around them, and the final minute
# before the close (`final_ns`, apart from the other closing minutes) 8-13x their shares, 4-7x their trades.
(PRE_MARKET, PRE_OPEN, FIRST_HALF_HOUR, REGULAR_HOURS, CLOSING_MINUTES, POST_CLOSE, AFTER_HOURS, BROKER_OPEN,
 FINAL_MINUTE) = range(9)
PERIOD_NAMES = ("pre-market", "pre-open", "first-half-hour", "regular-session", "closing-minutes", "post-close",
                "after-hours", "broker-open-minute", "final-minute")
PARTS = len(PERIOD_NAMES)
# A part still warming up (a symbol's first day) borrows the norm of the busier part before it, if that
# one is warm: the rest of the regular session the first half hour's, the evening the post-close's. A
# borrowed norm is higher than the part's own would be, so it can only make alerts rarer. The
# transitions themselves have nothing busier before them and raise no rate alert until warm.
BORROWS = np.array([-1, -1, -1, FIRST_HALF_HOUR, -1, -1, POST_CLOSE, -1, -1], np.int64)
NS_PER_DAY = 86_400_000_000_000


def rate_state(n_buckets: int, sized: bool) -> np.dtype:
    fields = [
        ("ring", "f4", (n_buckets,)),  # per-bucket totals of the sliding window, indexed by bucket % n
        ("head", "i8"),                # newest bucket id in the ring (-1: empty)
        ("window", "f8"),              # the ring's sum, kept as buckets come and go
        ("filled", "u8"),              # bit j set: ring slot j may be non-zero (the others are 0)
        ("norm", "f4", (PARTS,)),      # per part of the day: mean per-bar total (see _fold)
        ("seen", "u1", (PARTS,)),      # per part of the day: bars folded into it (saturates at 255)
        ("recent", "f4"),              # mean per-bar total of the last bars, whatever their part (see _scan)
        ("bar_total", "f4"),           # total of the bar in progress (the bar of `head`'s bucket)
        ("period", "u1"),              # the part of the day of that bar
        ("episode", "u1"),             # 0 none; 1 crossed, peak still being measured; 2 reported, not over
        # The print at which the episode crossed the threshold: the anomaly is anchored there.
        ("at_ts", "i8"), ("at_sequence", "u8"), ("at_price", "f8"), ("at_size", "u4"),
        ("at_publisher", "u2"), ("at_instrument", "u4"),
        ("peak", "f4"),                # the episode's largest window total so far
        ("at_threshold", "f4"),        # threshold and expected level (per window) when it crossed
        ("at_expected", "f4"),
        ("at_norm", "f4"),             # the norm (per window) of the part that judged it, and that part
        ("at_part", "u1"),             # (at_expected is the higher of at_norm and the recent level)
    ]
    if sized:
        fields += [
            ("log_size", "f8", (3,)),  # decayed count, sum and sum of squares of log(size): the cap's basis
            ("cap", "f8"),             # largest contribution of one print, in force for the current bar
        ]
    return np.dtype(fields)


@inline
def _period(t: int, day0: int, offsets: np.ndarray, closes: np.ndarray, opening: np.ndarray,
            closing: np.ndarray, broker_open: np.ndarray, final: int) -> int:
    """The part of the day (PERIOD_NAMES) of UTC time `t`: `opening` holds the local times of day the
    pre-open, the first half hour and the rest of the regular session begin, `closing` the offsets from
    the day's close at which the closing minutes, the post-close and the after-hours begin,
    `broker_open` the pre-market's broker-open minutes as [start, end) local times of day, `final`
    how long before the close the final minute begins (see SessionCalendar.day_table: a day before the
    table's first counts as its first)."""
    d = min(max(t // NS_PER_DAY - day0, 0), len(offsets) - 1)
    local = (t + offsets[d]) % NS_PER_DAY
    part = PRE_MARKET
    for edge in opening:
        if local >= edge:
            part += 1
    if part == PRE_MARKET:
        for j in range(len(broker_open)):
            if broker_open[j, 0] <= local < broker_open[j, 1]:
                return BROKER_OPEN
    if part == REGULAR_HOURS:
        for edge in closing:
            if local >= closes[d] + edge:
                part += 1
        if part == CLOSING_MINUTES and local >= closes[d] - final:
            return FINAL_MINUTE
    return part


@inline
def _trading_bars(first: int, stop: int, t: int, day0: int, offsets: np.ndarray, closes: np.ndarray,
                  trading: np.ndarray, bar_ns: int) -> int:
    """How many of bars first .. stop - 1 (all of UTC time `t`'s local day) fall within the hours
    the exchange trades (`trading`: the pre-market's start, local time of day, and the after-hours'
    end as an offset from the day's close; see SessionCalendar.trading_ns)."""
    d = min(max(t // NS_PER_DAY - day0, 0), len(offsets) - 1)
    midnight = t - (t + offsets[d]) % NS_PER_DAY
    lo = (midnight + trading[0]) // bar_ns
    hi = (midnight + closes[d] + trading[1]) // bar_ns
    return max(0, min(stop, hi) - max(first, lo))


@inline
def _fold(norm: np.ndarray, seen: np.ndarray, p: int, total: float, clip: float, warmup_bars: int,
          steady: float) -> None:
    """One bar's total into part `p`'s norm: the plain mean of its first bars, then an exponentially
    weighted mean whose newest bar weighs `steady`. Once warm, a bar counts for at most `clip` x the
    norm, so an episode does not talk the norm into accepting it."""
    n = seen[p]
    if n >= warmup_bars and total > clip * norm[p]:
        total = clip * norm[p]
    norm[p] += max(1.0 / (n + 1.0), steady) * (total - norm[p])
    if n < 255:
        seen[p] = n + 1


@inline
def _fold_empty(norm: np.ndarray, seen: np.ndarray, p: int, gap: int, memory: int, empty_decay: np.ndarray) -> None:
    """`gap` empty bars into part `p`'s norm at once, as `gap` calls of _fold with a zero total would:
    while the mean is still plain (fewer than `memory` bars) m zeros scale it by n / (n + m), after
    that each by 1 - 1 / memory (`empty_decay[g]` = that to the power g)."""
    n = int(seen[p])
    plain = min(gap, max(memory - 1 - n, 0))
    if plain > 0:
        norm[p] *= n / (n + plain)
    norm[p] *= empty_decay[gap - plain]
    seen[p] = min(n + gap, 255)


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


@inline
def _judge(part: int, seen: np.ndarray, borrows: np.ndarray, warmup_bars: int) -> int:
    """The part whose norm judges a window of part `part`: its own once warm, meanwhile the busier
    part it borrows from if that one is warm (BORROWS); -1 when none is warm yet."""
    if seen[part] < warmup_bars and borrows[part] >= 0:
        part = borrows[part]
    return part if seen[part] >= warmup_bars else -1


@inline
def _scale(part: int, window_bars: float) -> float:
    """A norm (per bar) to a window: its share of the bar, but a whole bar's for a window of a
    broker-open minute, whose trading comes at once (the queue released), not spread over the bar."""
    return max(window_bars, 1.0) if part == BROKER_OPEN else window_bars


@inline
def _oldest(head: int, filled: np.uint64, n_buckets: int) -> int:
    """The oldest bucket of the window (newest `head`) whose ring slot is in use (`filled`)."""
    first = (head + 1) % n_buckets  # the slot of the oldest bucket the window can hold
    mask = (np.uint64(1) << np.uint64(n_buckets)) - np.uint64(1)
    rotated = ((filled >> np.uint64(first)) | (filled << np.uint64(n_buckets - first))) & mask
    if rotated == np.uint64(0):
        return head
    j: int = trailing_zeros(rotated)  # type: ignore[call-arg]  # an intrinsic: typed by numba, not mypy
    return head - n_buckets + 1 + j


@kernel
def _scan(slot: np.ndarray, ts: np.ndarray, size: np.ndarray, auction: np.ndarray, price: np.ndarray,
          publisher: np.ndarray, instrument: np.ndarray, sequence: np.ndarray,
          ring: np.ndarray, head: np.ndarray, window: np.ndarray, filled: np.ndarray, norm: np.ndarray,
          seen: np.ndarray, recent: np.ndarray, bar_total: np.ndarray, period: np.ndarray,
          episode: np.ndarray, at_ts: np.ndarray, at_sequence: np.ndarray, at_price: np.ndarray,
          at_size: np.ndarray, at_publisher: np.ndarray, at_instrument: np.ndarray, peak: np.ndarray,
          at_threshold: np.ndarray, at_expected: np.ndarray, at_norm: np.ndarray, at_part: np.ndarray,
          log_size: np.ndarray, cap: np.ndarray, count_trades: bool,
          day0: int, offsets: np.ndarray, closes: np.ndarray, opening: np.ndarray, closing: np.ndarray,
          broker_open: np.ndarray, final: int, trading: np.ndarray, borrows: np.ndarray, cap_z: float,
          cap_multiple: float, size_decay: np.ndarray,
          floor_caps: float, norm_clip: float, rearm: float, bar_ns: int, bucket_ns: int, window_bars: float,
          memory_bars: int, empty_decay: np.ndarray, recent_decay: np.ndarray, max_gap_bars: int, warmup_bars: int,
          multiple: float, minimum: float, cooldown_ns: int, settle_ns: int, hit: np.ndarray, where: np.ndarray,
          what: np.ndarray) -> int:
    """Returns the number of episodes reported; for each, `hit` = the trade that closed its
    measurement, `where` its anchor print (ts, sequence, size, publisher, instrument) and `what`
    (peak, expected per window, threshold, cap, price, seconds the peak was measured over, the part of
    the day whose norm judged it, that norm per window)."""
    n_buckets = ring.shape[1]
    per_bar = bar_ns // bucket_ns
    steady = 1.0 / memory_bars
    k = 0
    # Whether bar `edge_bar` begins a part of the day (the minute before it is of another part): asked
    # for a window of symbol `edge_s` that reaches back into the bar before, once per symbol and bar.
    edge_s, edge_bar, edge = -1, -1, False
    for i in range(len(ts)):
        s = slot[i]
        # The bar in progress is the newest bucket's (a bar is a whole number of buckets; -1: none yet).
        last = head[s] // per_bar
        b = max(ts[i] // bar_ns, last)  # an older print (refused upstream) counts in the current bar
        if b != last:
            # The cap follows the size distribution, which moves slowly: re-read every 8 bars at most.
            if not count_trades and log_size[s, 0] > 0 and (b // 8 != last // 8 or cap[s] != cap[s]):
                n, mean = log_size[s, 0], log_size[s, 1] / log_size[s, 0]
                sd = np.sqrt(max(log_size[s, 2] / n - mean * mean, 0.0))
                cap[s] = cap_multiple * np.exp(mean + cap_z * sd)
            if not count_trades and last >= 0:
                kept = size_decay[min(b - last, max_gap_bars)]
                for m in range(3):
                    log_size[s, m] *= kept
            now = _period(ts[i], day0, offsets, closes, opening, closing, broker_open, final)
            if last >= 0:
                # The bar just ended goes into the norm of its part of the day. Empty bars count as
                # zero within a part, while the exchange trades (a stray print at 03:00 made the hour
                # to 04:00 a warm pre-market norm of nothing); a part left and come back to (the next
                # day's regular session) resumes its norm as it was.
                p = period[s]
                gap = min(b - last - 1, max_gap_bars)
                _fold(norm[s], seen[s], p, bar_total[s], norm_clip, warmup_bars, steady)
                if now == p and (b - last) * bar_ns < NS_PER_DAY // 2 and gap > 0:
                    quiet = min(_trading_bars(last + 1, b, ts[i], day0, offsets, closes, trading, bar_ns), gap)
                    if quiet > 0:
                        _fold_empty(norm[s], seen[s], p, quiet, memory_bars, empty_decay)
                # The recent level follows every bar, empty ones as zero: a symbol whose activity has
                # moved to a new level (an evening busier than yesterday's, whose norm the after-hours
                # resumes) is judged against that level once it has held for a while, so the shift
                # alerts once, not every few minutes until the part's norm catches up. Clipped like the
                # norm, so that one surge hardly raises the bar for the next. A broker-open minute is
                # the overnight queue, not the tape's level: it leaves the level as it was.
                added = recent[s] if p == BROKER_OPEN else bar_total[s]
                level = max(recent[s], norm[s, p])
                if seen[s, p] >= warmup_bars and added > norm_clip * level:
                    added = norm_clip * level
                recent[s] = (recent[s] + recent_decay[0] * (added - recent[s])) * recent_decay[gap + 1]
            period[s] = now
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
        if episode[s] == 1:
            # Crossed: its peak is measured until it falls back (under `rearm` x the threshold it
            # crossed) or for `settle_ns`, whichever comes first; reported at this print, the first
            # that knows. A print past the deadline is not part of the measure, so what is reported
            # does not depend on when the symbol next trades.
            over = ts[i] >= at_ts[s] + settle_ns
            if not over:
                peak[s] = max(peak[s], total)
            if over or total < rearm * at_threshold[s]:
                hit[k] = i
                where[k, 0], where[k, 1], where[k, 2] = at_ts[s], np.int64(at_sequence[s]), at_size[s]
                where[k, 3], where[k, 4] = at_publisher[s], at_instrument[s]
                what[k, 0], what[k, 1], what[k, 2] = peak[s], at_expected[s], at_threshold[s]
                what[k, 3], what[k, 4] = cap[s], at_price[s]
                what[k, 5] = settle_ns / 1e9 if over else (ts[i] - at_ts[s]) / 1e9
                what[k, 6], what[k, 7] = at_part[s], at_norm[s]
                k += 1
                episode[s] = 2
        if episode[s] == 2 and total < rearm * at_threshold[s]:
            episode[s] = 0  # over: the next crossing is a new episode
        # The threshold, max(multiple x norm, floor), is at least the floor: below it nothing can
        # fire, and a quiet symbol's window almost always is, so the norm is only read above it.
        p = _judge(period[s], seen[s], borrows, warmup_bars)
        floor = minimum if count_trades else floor_caps * cap[s]
        if (episode[s] == 0 and total >= floor and not auction[i] and p >= 0
                and (at_ts[s] < 0 or ts[i] >= at_ts[s] + cooldown_ns)):
            # A window whose prints reach back into the part before (a one-minute window in its part's
            # first minute) holds prints of both: it is judged against the busier, once both are warm.
            oldest = _oldest(head[s], filled[s], n_buckets)  # (`b` is the newest bucket's bar)
            if oldest // per_bar < b and (s, b) != (edge_s, edge_bar):
                edge_s, edge_bar = s, b
                edge = (_period(b * bar_ns - 1, day0, offsets, closes, opening, closing, broker_open, final)
                        != _period(b * bar_ns, day0, offsets, closes, opening, closing, broker_open, final))
            before = p
            if oldest // per_bar < b - 1 or (oldest // per_bar == b - 1 and edge):
                before = _judge(_period(oldest * bucket_ns, day0, offsets, closes, opening, closing, broker_open,
                                        final), seen[s], borrows, warmup_bars)
            if before >= 0 and before != p and (norm[s, before] * _scale(before, window_bars)
                                                > norm[s, p] * _scale(p, window_bars)):
                p = before
            scale = _scale(p, window_bars)
            expected = max(norm[s, p], recent[s]) * scale
            thr = max(multiple * expected, floor)
            if total >= thr and before >= 0:
                episode[s] = 1
                at_ts[s], at_sequence[s], at_price[s], at_size[s] = ts[i], sequence[i], price[i], np.uint32(size[i])
                at_publisher[s], at_instrument[s] = publisher[i], instrument[i]
                peak[s], at_threshold[s], at_expected[s] = total, thr, expected
                at_norm[s], at_part[s] = norm[s, p] * scale, p
        bar_total[s] += w
    return k


class WindowRateDetector(InPlace):
    """Flags an episode in which a sliding-window total exceeds `multiple` x its norm, scored by its peak.

    The norm is the mean per-bar total of the same part of the day (PERIOD_NAMES: each has its own,
    so the open is judged against the opening's history, not against the pre-market's) over its last
    `memory_bars` bars, empty bars counting as zero, scaled to the window length; a bar adds at most
    `norm_clip` x the norm, so an episode does not talk the norm into accepting it. Each part warms
    up on `warmup_bars` of its own (meanwhile BORROWS). What the window is judged against is the
    higher of that norm and the recent level, the same mean over the symbol's last `recent_bars`
    bars whatever their part, so a day busier than the part's history alerts once. An episode is
    anchored at the print where the window crossed the threshold and reported with its peak once it
    falls back under `rearm` x that threshold, or once `settle_ns` have passed since crossing if it
    lasts longer (the peak of those `settle_ns`); the report is made at the symbol's first print
    that knows. One report per episode, and none within `cooldown_ns` of the last crossing.
    """

    name = "window_rate"
    unit = "trades"

    count_trades = True

    def __init__(self, window_ns: int, bucket_ns: int, multiple: float, minimum: float,
                 warmup_bars: int = 15, memory_bars: int = 15, recent_bars: float = 15.0,
                 max_gap_bars: int = 60,
                 cooldown_ns: int = 60_000_000_000, cap_z: float = 2.576, cap_multiple: float = 2.0,
                 floor_caps: float = 3.0, norm_clip: float = 3.0, rearm: float = 0.5,
                 settle_ns: int | None = None, size_half_life_bars: float = 390.0,
                 bar_ns: int = 60_000_000_000, calendar: SessionCalendar | None = None) -> None:
        self.window_ns = window_ns
        self.bucket_ns = bucket_ns
        self.multiple = multiple
        self.minimum = minimum
        self.warmup_bars = warmup_bars
        self.memory_bars = memory_bars
        self.max_gap_bars = max_gap_bars
        self.cooldown_ns = cooldown_ns
        self.cap_z = cap_z
        self.cap_multiple = cap_multiple
        self.floor_caps = floor_caps
        self.norm_clip = norm_clip
        self.rearm = rearm
        self.settle_ns = window_ns if settle_ns is None else settle_ns
        self.size_half_life_bars = size_half_life_bars
        self.bar_ns = bar_ns
        self.calendar = calendar or SessionCalendar()
        if not 0 < window_ns // bucket_ns <= 63:
            raise ValueError("a window holds 1 to 63 buckets (one bit each)")
        if bar_ns % bucket_ns:
            raise ValueError("a bar is a whole number of buckets (the bar in progress is the newest bucket's)")
        if not 1 <= memory_bars <= 255 or recent_bars < 1:
            raise ValueError("memory_bars is 1 to 255 (bars are counted in a byte), recent_bars at least 1")
        if not 0 < warmup_bars <= 255:
            raise ValueError("warmup_bars is 1 to 255 (bars are counted in a byte)")
        self.state_dtype = rate_state(window_ns // bucket_ns, sized=not self.count_trades)
        self._size_decay = decay_table(size_half_life_bars, max_gap_bars)
        self.recent_bars = recent_bars
        self._empty_decay = (1.0 - 1.0 / memory_bars) ** np.arange(max_gap_bars + 1, dtype=np.float64)
        # [0]: the newest bar's weight in the recent level; [1 + g]: what g empty bars leave of it
        self._recent_decay = (1.0 - 1.0 / recent_bars) ** np.arange(-1, max_gap_bars + 1, dtype=np.float64)
        self._recent_decay[0] = 1.0 / recent_bars

    def initial_state(self) -> np.ndarray:
        values = {"head": -1, "at_ts": -1}
        return record(self.state_dtype, **values, **({} if self.count_trades else {"cap": np.nan}))

    def update(self, batch: MarketBatch, st: np.ndarray) -> list[Anomaly]:
        n = len(batch)
        hit, where, what = np.empty(n, np.int64), np.empty((n, 5), np.int64), np.empty((n, 8), np.float64)
        if self.count_trades:  # no size cap to keep: scratch columns the kernel may write and nobody reads
            log_size, cap = np.zeros((len(st), 3)), np.full(len(st), np.nan)
        else:
            log_size, cap = st["log_size"], st["cap"]
        day0, offsets, closes = self.calendar.day_table(batch.ts)
        k = _scan(batch.slot, batch.ts, batch.size, batch.auction, batch.price, batch.publisher, batch.instrument,
                  batch.sequence, st["ring"], st["head"], st["window"], st["filled"], st["norm"], st["seen"],
                  st["recent"], st["bar_total"], st["period"], st["episode"], st["at_ts"],
                  st["at_sequence"], st["at_price"], st["at_size"], st["at_publisher"], st["at_instrument"],
                  st["peak"], st["at_threshold"], st["at_expected"], st["at_norm"], st["at_part"], log_size, cap,
                  self.count_trades, day0, offsets, closes, self.calendar.opening_ns, self.calendar.closing_ns,
                  self.calendar.broker_open_ns, self.calendar.final_ns, self.calendar.trading_ns, BORROWS,
                  self.cap_z, self.cap_multiple, self._size_decay, self.floor_caps, self.norm_clip,
                  self.rearm, self.bar_ns, self.bucket_ns, self.window_ns / self.bar_ns, self.memory_bars,
                  self._empty_decay, self._recent_decay, self.max_gap_bars, self.warmup_bars, self.multiple,
                  self.minimum, self.cooldown_ns, self.settle_ns, hit, where, what)
        return [self._anomaly(batch.symbols[batch.slot[int(hit[j])]], where[j], what[j], found=int(hit[j]))
                for j in range(k)]

    def unfinished(self, symbols: Sequence[str], st: np.ndarray, last_ts: np.ndarray) -> list[Anomaly]:
        """The episodes still being measured when the input ended (`last_ts`: each symbol's last
        event time), reported with their peak so far and marked reported. Only an embedded run ends:
        a stream reports them at the symbol's next print, as ever, and then completes their measure."""
        out = []
        for s in np.flatnonzero(st["episode"] == 1).tolist():
            where = np.array([st["at_ts"][s], st["at_sequence"][s], st["at_size"][s], st["at_publisher"][s],
                              st["at_instrument"][s]], np.int64)
            measured = max(int(last_ts[s]) - int(st["at_ts"][s]), 0) / 1e9
            what = np.array([st["peak"][s], st["at_expected"][s], st["at_threshold"][s],
                             np.nan if self.count_trades else st["cap"][s], st["at_price"][s], measured,
                             st["at_part"][s], st["at_norm"][s]], np.float64)
            out.append(self._anomaly(symbols[s], where, what, cut_short=True))
            st["episode"][s] = 2
        return out

    def _anomaly(self, symbol: str, where: np.ndarray, what: np.ndarray, found: int = -1,
                 cut_short: bool = False) -> Anomaly:
        ts, sequence, size, publisher, instrument = (int(x) for x in where)
        peak, expected, threshold, cap, price, measured, part, norm = (float(x) for x in what)
        secs = self.window_ns / 1e9
        name = PERIOD_NAMES[int(part)]
        capped = "" if self.count_trades else f" (each print counted up to {qty(cap)})"
        # (a recent level that reads as the norm, 4.14 and 4.14, is quoted as the norm)
        judged = (f"recent level of {level(expected)} per {secs:g}s (its {name} norm: {level(norm)})"
                  if expected > norm and level(expected) != level(norm)
                  else f"{name} norm of {level(expected)} per {secs:g}s")
        reason = (f"{qty(peak)} {self.unit} in {secs:g}s at the peak{capped}, {peak / max(expected, 1e-9):,.1f}x "
                  f"{symbol}'s {judged} (alert at {qty(threshold)}; peak of the {measured:.3g}s after crossing"
                  + (", when the input ended)" if cut_short else ")"))
        details = {"window_total": peak, "expected": expected, "part_norm": norm, "threshold": threshold,
                   "measured_seconds": measured} | ({"input_ended": 1.0} if cut_short else {})
        return Anomaly.of_print(self.name, symbol, ts, price, size, publisher, instrument, sequence,
                                peak / threshold, reason, details, found=found)


class TradeBurstDetector(WindowRateDetector):
    """A sudden cluster of trade arrivals: trades in the last second far above the norm."""

    name = "trade_burst"
    unit = "trades"

    def __init__(self, multiple: float = 30.0, minimum: float = 100.0, **kw: int | float) -> None:
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

