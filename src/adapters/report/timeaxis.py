"""A UTC time axis that shrinks idle stretches (nights, weekends) so multi-day charts stay readable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from adapters.report.bars import MINUTE_NS

GAP_NS = 30 * MINUTE_NS  # a pause longer than this is drawn as a narrow break
_STEPS_MIN = (1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440, 2880, 10080)


@dataclass(frozen=True, slots=True)
class TradingTimeAxis:
    """Maps ns timestamps to x in minutes of active time, with each long pause cut to a sliver."""

    knots_ns: np.ndarray  # start and end of each active stretch, in order
    knots_x: np.ndarray
    breaks_x: tuple[float, ...]  # x of the middle of each cut pause

    @classmethod
    def spanning(cls, times_ns: np.ndarray) -> TradingTimeAxis:
        """An axis over minute-aligned or raw event times (at least one)."""
        minutes = np.unique(np.asarray(times_ns, np.int64) // MINUTE_NS) * MINUTE_NS
        cut = np.flatnonzero(np.diff(minutes) > GAP_NS)
        starts = np.append(minutes[:1], minutes[cut + 1])
        ends = np.append(minutes[cut], minutes[-1:]) + MINUTE_NS
        active_min = float((ends - starts).sum()) / MINUTE_NS
        pause = max(active_min * 0.025, 3.0)
        lengths = (ends - starts) / MINUTE_NS
        seg_x0 = np.concatenate(([0.0], np.cumsum(lengths[:-1] + pause)))
        knots_ns = np.column_stack([starts, ends]).ravel()
        knots_x = np.column_stack([seg_x0, seg_x0 + lengths]).ravel()
        breaks = tuple(float(x) for x in seg_x0[1:] - pause / 2)
        return cls(knots_ns, knots_x, breaks)

    @property
    def width(self) -> float:
        return float(self.knots_x[-1])

    def __call__(self, ts_ns: np.ndarray | list[int]) -> np.ndarray:
        # Relative minutes keep float precision (absolute ns would lose ~256 ns per value).
        origin = self.knots_ns[0]
        rel = (np.asarray(ts_ns, np.int64) - origin) / MINUTE_NS
        return np.interp(rel, (self.knots_ns - origin) / MINUTE_NS, self.knots_x)

    def ticks(self, target: int = 9) -> tuple[list[float], list[str]]:
        """Tick positions and labels: round UTC times, the date added where it changes."""
        step_min = next((s for s in _STEPS_MIN if self.width / s <= target), _STEPS_MIN[-1])
        step = step_min * MINUTE_NS
        min_gap = self.width / (target * 2.5)  # keep labels from touching
        positions: list[float] = []
        labels: list[str] = []
        last_date = ""
        for start, end in self.knots_ns.reshape(-1, 2):
            times = np.arange(-(-start // step) * step, end + 1, step)
            if len(times) == 0:
                times = np.array([start])  # a short stretch still gets a label
            for t, x in zip(times, self(times)):
                if positions and x - positions[-1] < min_gap:
                    continue
                moment = datetime.fromtimestamp(int(t) // 1_000_000_000, tz=timezone.utc)
                date = moment.strftime("%b %d")
                label = moment.strftime("%H:%M") + (f"\n{date}" if date != last_date else "")
                positions.append(float(x))
                labels.append(label)
                last_date = date
        return positions, labels
