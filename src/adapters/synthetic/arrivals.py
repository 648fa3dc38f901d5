"""When trades happen: the regular session clock and a U-shaped, clustered Poisson arrival process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from domain.sessions import EARLY_CLOSES, HOLIDAYS

NS = 1_000_000_000
NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True, slots=True)
class Session:
    """The regular session of one day, in UTC nanoseconds; `day` decides the UTC offset (EST/EDT)."""

    day: Date
    open_ns: int
    close_ns: int

    @classmethod
    def on(cls, day: str | Date) -> Session:
        """The regular session of `day`, which must be a full trading day (ValueError otherwise: the
        detectors would take a weekend's or a holiday's trades for the after-hours)."""
        d = Date.fromisoformat(day) if isinstance(day, str) else day
        if d.weekday() >= 5:
            raise ValueError(f"{d} is a {d:%A}: the exchange is closed; give a trading day")
        if d in HOLIDAYS:
            raise ValueError(f"{d} is an exchange holiday; give a trading day")
        if d in EARLY_CLOSES:
            raise ValueError(f"{d} closes early (13:00) and the generator simulates full days; give another day")
        open_ns = int(datetime.combine(d, time(9, 30), NEW_YORK).timestamp()) * NS
        close_ns = int(datetime.combine(d, time(16, 0), NEW_YORK).timestamp()) * NS
        return cls(d, open_ns, close_ns)

    @staticmethod
    def last_full_day(before: Date) -> Date:
        """The last full trading day before `before` (no weekend, holiday or early close)."""
        day = before - timedelta(days=1)
        while day.weekday() >= 5 or day in HOLIDAYS or day in EARLY_CLOSES:
            day -= timedelta(days=1)
        return day

    @property
    def seconds(self) -> int:
        return (self.close_ns - self.open_ns) // NS


def u_curve(seconds: int) -> np.ndarray:
    """Relative activity per second of the session: heavy at the open, a midday lull, busy into the close."""
    x = (np.arange(seconds) + 0.5) / seconds
    return 0.55 + 2.4 * np.exp(-x / 0.05) + 1.4 * np.exp(-(1.0 - x) / 0.06)


@dataclass(frozen=True)
class Activity:
    """Per-second activity of every symbol, each summing to 1: the U curve times a slow random mood
    (AR(1) per minute), so quiet and busy stretches come and go like on a real tape.

    Only the per-minute moods are stored (symbols x minutes); a symbol's per-second curve is built
    when needed, so a market of thousands of symbols does not hold thousands of day-long arrays.
    """

    curve: np.ndarray  # the U curve per second, shared
    mood: np.ndarray  # (symbols, minutes) log activity
    scale: np.ndarray  # per symbol: 1 / the sum of its per-second activity

    @classmethod
    def draw(cls, rng: np.random.Generator, symbols: int, seconds: int) -> Activity:
        minutes = -(-seconds // 60)
        curve = u_curve(seconds)
        level, mood = np.empty(symbols), np.empty((symbols, minutes))
        for s in range(symbols):  # each symbol's draws in turn, as markets of a given seed always had them
            level[s] = rng.normal(0.0, 0.25)
            mood[s] = rng.normal(0.0, 0.1, minutes)  # the noise, made the mood in place below
        # mood_m = 0.92 mood_{m-1} + noise_m, started from `level`: one step a minute for all symbols at
        # once. (scipy.signal's lfilter did this per symbol, with the same arithmetic, but importing
        # scipy.signal took a second of every replay of the built-in sample.)
        previous = level
        for m in range(minutes):
            mood[:, m] += 0.92 * previous
            previous = mood[:, m]
        scale = np.array([1.0 / (curve * np.exp(np.repeat(mood[s], 60)[:seconds])).sum() for s in range(symbols)])
        return cls(curve, mood, scale)

    def per_second(self, symbol: int) -> np.ndarray:
        return self.curve * np.exp(np.repeat(self.mood[symbol], 60)[:len(self.curve)]) * self.scale[symbol]

    def at(self, symbol: int, second: int) -> float:
        return float(self.curve[second] * np.exp(self.mood[symbol, second // 60]) * self.scale[symbol])


def draw_times(rng: np.random.Generator, per_second: np.ndarray, n: int, start_ns: int,
               end_ns: int, child_share: float = 0.25) -> np.ndarray:
    """n sorted arrival times: a Poisson process modulated by `per_second` (which starts at `start_ns`),
    a share of them arriving as children a few milliseconds after a parent, as sweeps do."""
    n_children = int(round(n * child_share)) if n > 10 else 0
    n_parents = n - n_children
    cdf = np.cumsum(per_second)
    u = rng.random(n_parents) * cdf[-1]
    sec = np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
    parents = start_ns + ((sec + rng.random(n_parents)) * NS).astype(np.int64)
    parent_of = rng.integers(0, n_parents, n_children)
    delay = np.where(rng.random(n_children) < 0.3, 0, rng.exponential(2e6, n_children) + 1_000).astype(np.int64)
    times = np.concatenate((parents, parents[parent_of] + delay))
    return np.sort(np.minimum(times, end_ns - 1))
