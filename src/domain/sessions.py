"""Exchange session clock: the trading sessions of a print's local time, and which prints are the
scheduled opening and closing auction crosses."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
PRE_MARKET, REGULAR, AFTER_HOURS, CLOSED = "pre_market", "regular", "after_hours", "closed"
SESSIONS = (PRE_MARKET, REGULAR, AFTER_HOURS, CLOSED)


class SessionCalendar:
    """US equities by default: crosses at 09:30 and 16:00 America/New_York.

    A cross prints with no aggressor side (`N`) within seconds of the scheduled time; those
    prints are the day's largest by design and are not anomalies.
    """

    def __init__(self, tz: str = "America/New_York", open_s: int = 9 * 3600 + 1800,
                 close_s: int = 16 * 3600, window_s: int = 60, pre_market_s: int = 4 * 3600,
                 after_hours_end_s: int = 20 * 3600) -> None:
        self.tz = ZoneInfo(tz)
        self.crosses_ns = np.array([open_s, close_s], np.int64) * NS_PER_S
        self.window_ns = window_s * NS_PER_S
        # Session starts in local time of day: pre-market, regular (open to close), after-hours, and
        # from the end of after-hours to the next pre-market no session at all.
        self.session_starts = ((pre_market_s, PRE_MARKET), (open_s, REGULAR), (close_s, AFTER_HOURS),
                               (after_hours_end_s, CLOSED))
        self._offsets: dict[int, int] = {}

    def session_of(self, ts_ns: int) -> str:
        """The session a print at `ts_ns` (UTC nanoseconds) belongs to, by its local time of day."""
        local_s = (ts_ns + self._offset_ns(ts_ns // NS_PER_DAY)) % NS_PER_DAY // NS_PER_S
        session = CLOSED
        for start, name in self.session_starts:
            if local_s >= start:
                session = name
        return session

    def local_time(self, ts_ns: int) -> str:
        """`ts_ns` as local ISO 8601 time with its UTC offset, to the nanosecond
        (2025-05-05T09:30:00.123456789-04:00)."""
        offset = self._offset_ns(ts_ns // NS_PER_DAY)
        seconds, nanos = divmod(ts_ns + offset, NS_PER_S)
        local = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)
        sign, minutes = ("+" if offset >= 0 else "-"), abs(offset) // (60 * NS_PER_S)
        return f"{local.isoformat()}.{nanos:09d}{sign}{minutes // 60:02d}:{minutes % 60:02d}"

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
