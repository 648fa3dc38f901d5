"""Exchange session clock: which prints are the scheduled opening and closing auction crosses."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S


class SessionCalendar:
    """US equities by default: crosses at 09:30 and 16:00 America/New_York.

    A cross prints with no aggressor side (`N`) within seconds of the scheduled time; those
    prints are the day's largest by design and are not anomalies.
    """

    def __init__(self, tz: str = "America/New_York", open_s: int = 9 * 3600 + 1800,
                 close_s: int = 16 * 3600, window_s: int = 60) -> None:
        self.tz = ZoneInfo(tz)
        self.crosses_ns = np.array([open_s, close_s], np.int64) * NS_PER_S
        self.window_ns = window_s * NS_PER_S
        self._offsets: dict[int, int] = {}

    def _offset_ns(self, utc_day: int) -> int:
        # The UTC offset at noon of that UTC day; DST switches happen at night, outside sessions.
        off = self._offsets.get(utc_day)
        if off is None:
            noon = datetime.fromtimestamp(utc_day * 86_400 + 43_200, tz=timezone.utc)
            delta = noon.astimezone(self.tz).utcoffset()
            off = int(delta.total_seconds()) * NS_PER_S if delta is not None else 0
            self._offsets[utc_day] = off
        return off

    def auction_mask(self, ts: np.ndarray, side: np.ndarray) -> np.ndarray:
        """True for prints with side N within `window_s` after a scheduled cross."""
        out = side == b"N"
        rows = np.flatnonzero(out)
        if not len(rows):
            return out
        t = ts[rows]
        days = t // NS_PER_DAY
        offsets = np.zeros(len(t), np.int64)
        for day in np.unique(days):
            offsets[days == day] = self._offset_ns(int(day))
        local = (t + offsets) % NS_PER_DAY
        near = np.zeros(len(t), bool)
        for cross in self.crosses_ns.tolist():
            near |= (local >= cross) & (local < cross + self.window_ns)
        out[rows] = near
        return out
