"""When trades happen: the regular session clock and a U-shaped, clustered Poisson arrival process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime, time
from zoneinfo import ZoneInfo

import numpy as np

NS = 1_000_000_000
NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True, slots=True)
class Session:
    """The regular session of one day, in UTC nanoseconds; `date` decides the UTC offset (EST/EDT)."""

    day: Date
    open_ns: int
    close_ns: int

    @classmethod
    def on(cls, day: str | Date) -> Session:
        d = Date.fromisoformat(day) if isinstance(day, str) else day
        open_ns = int(datetime.combine(d, time(9, 30), NEW_YORK).timestamp()) * NS
        close_ns = int(datetime.combine(d, time(16, 0), NEW_YORK).timestamp()) * NS
        return cls(d, open_ns, close_ns)

    @property
    def seconds(self) -> int:
        return (self.close_ns - self.open_ns) // NS


def u_curve(seconds: int) -> np.ndarray:
    """Relative activity per second of the session: heavy at the open, a midday lull, busy into the close."""
    x = (np.arange(seconds) + 0.5) / seconds
    return 0.55 + 2.4 * np.exp(-x / 0.05) + 1.4 * np.exp(-(1.0 - x) / 0.06)


def intensity(rng: np.random.Generator, seconds: int) -> np.ndarray:
    """Per-second activity of one symbol, summing to 1: the U curve times a slow random mood (AR(1)
    per minute), so quiet and busy stretches come and go like on a real tape."""
    minutes = -(-seconds // 60)
    mood = np.empty(minutes)
    level = rng.normal(0.0, 0.25)
    for m in range(minutes):  # 390 steps: cheap
        level = 0.92 * level + rng.normal(0.0, 0.1)
        mood[m] = level
    curve = u_curve(seconds) * np.exp(np.repeat(mood, 60)[:seconds])
    return curve / curve.sum()


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
