"""Exchange session clock: the trading sessions of a print's local time, and which prints are the
scheduled opening and closing auction crosses."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

from domain.exchange_days import EARLY_CLOSES, HOLIDAYS

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
PRE_MARKET, REGULAR, AFTER_HOURS, CLOSED = "pre_market", "regular", "after_hours", "closed"
SESSIONS = (PRE_MARKET, REGULAR, AFTER_HOURS, CLOSED)


# NYSE and Nasdaq full-day closures (weekends aside) and 13:00 early closes: domain.exchange_days,
# 2000-2035; days outside those years are taken as ordinary weekdays.
EARLY_CLOSE_S = 13 * 3600


class SessionCalendar:
    """US equities by default: crosses at 09:30 and 16:00 America/New_York.

    A cross prints with no aggressor side (`N`) within seconds of the scheduled time; those
    prints are the day's largest by design and are not anomalies.
    """

    def __init__(self, tz: str = "America/New_York", open_s: int = 9 * 3600 + 1800,
                 close_s: int = 16 * 3600, window_s: int = 60, pre_market_s: int = 4 * 3600,
                 after_hours_end_s: int = 20 * 3600, pre_open_s: int = 300, first_part_s: int = 1800,
                 closing_s: int = 600, post_close_s: int = 1800,
                 broker_opens_s: tuple[int, ...] = (7 * 3600, 8 * 3600), broker_open_s: int = 120,
                 final_s: int = 60) -> None:
        self.tz = ZoneInfo(tz)
        self.crosses_ns = np.array([open_s, close_s], np.int64) * NS_PER_S
        # The transitions, each a part of the day with a norm of its own in the rate detectors: the
        # pre-open (the `pre_open_s` before the open, when opening imbalances are published), the first
        # `first_part_s` of the regular session, the closing minutes (the `closing_s` before the close,
        # closing imbalances) and the post-close (`post_close_s`). `opening_ns`: local times of day the
        # pre-open, the first part and the rest of the session begin; `closing_ns`: offsets from the
        # day's close (13:00 on early-close days) at which the closing minutes, the post-close and the
        # rest of the after-hours begin.
        self.opening_ns = np.array([open_s - pre_open_s, open_s, open_s + first_part_s], np.int64) * NS_PER_S
        self.closing_ns = np.array([-closing_s, 0, post_close_s], np.int64) * NS_PER_S
        # The pre-market's broker-open minutes, [start, end) local times of day: brokers release the
        # orders their customers queued overnight at 07:00 and at 08:00. On both real NVDA days the
        # minute from each trades five to ten times the minutes around it, much of it within a second
        # (78-101 prints), every day: a part of their own, like the open and the close. Two minutes
        # each: the release's and the one after it, still busier than the pre-market.
        self.broker_open_ns = np.array([[start, start + broker_open_s] for start in broker_opens_s],
                                       np.int64).reshape(-1, 2) * NS_PER_S
        # The closing minutes' last (`final_s` before the close): on the real NVDA days it trades 7.7x and
        # 12.8x the shares of the nine before it (their mean; 3.7x and 7.0x the trades), so pooled with
        # them it would fire whenever it was a little busier than the day before's. A part of its own.
        self.final_ns = final_s * NS_PER_S
        self.window_ns = window_s * NS_PER_S
        # When the exchange trades at all: from the pre-market's start (local time of day) to the end
        # of the after-hours (an offset from the day's close: 20:00, 17:00 on early-close days).
        self.trading_ns = np.array([pre_market_s, after_hours_end_s - close_s], np.int64) * NS_PER_S
        # Session starts in local time of day: pre-market, regular (open to close), after-hours, and
        # from the end of after-hours to the next pre-market no session at all.
        self.session_starts = ((pre_market_s, PRE_MARKET), (open_s, REGULAR), (close_s, AFTER_HOURS),
                               (after_hours_end_s, CLOSED))
        # On early-close days the regular session ends at 13:00 and the after-hours four hours later.
        self.early_starts = ((pre_market_s, PRE_MARKET), (open_s, REGULAR), (EARLY_CLOSE_S, AFTER_HOURS),
                             (EARLY_CLOSE_S + after_hours_end_s - close_s, CLOSED))
        self._offsets: dict[int, int] = {}

    def session_of(self, ts_ns: int) -> str:
        """The session a print at `ts_ns` (UTC nanoseconds) belongs to, by its local day and time of day:
        none (`closed`) on weekends and exchange holidays, the early closes' shorter sessions."""
        local_ns = ts_ns + self._offset_ns(ts_ns // NS_PER_DAY)
        day = _utc_date(local_ns // NS_PER_DAY)
        if not self.trading_day(day):
            return CLOSED
        local_s = local_ns % NS_PER_DAY // NS_PER_S
        session = CLOSED
        for start, name in self.early_starts if day in EARLY_CLOSES else self.session_starts:
            if local_s >= start:
                session = name
        return session

    def trading_day(self, day: date) -> bool:
        """A weekday on which the exchange opens (HOLIDAYS)."""
        return day.weekday() < 5 and day not in HOLIDAYS

    def regular_session_open(self, ts_ns: int) -> bool:
        """Whether the regular session is on at `ts_ns`: a trading day, from the open to the close
        (13:00 on early-close days), New York time. What a stopped feed is judged against."""
        local_ns = ts_ns + self._offset_ns(ts_ns // NS_PER_DAY)
        day = _utc_date(local_ns // NS_PER_DAY)
        if not self.trading_day(day):
            return False
        seconds = local_ns % NS_PER_DAY // NS_PER_S
        close = EARLY_CLOSE_S if day in EARLY_CLOSES else int(self.crosses_ns[1] // NS_PER_S)
        return int(self.crosses_ns[0] // NS_PER_S) <= seconds < close

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

    def day_table(self, ts: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """What a compiled kernel needs to place a time in its day's part: (first UTC day of `ts`,
        per UTC day from it to the last: the UTC offset and the local time of day the regular session
        closes, both ns). `norm_period` reads it."""
        first, last = (int(ts.min()) // NS_PER_DAY, int(ts.max()) // NS_PER_DAY) if len(ts) else (0, 0)
        days = range(first, last + 1)
        offsets = np.array([self._offset_ns(d) for d in days], np.int64)
        closes = np.array([EARLY_CLOSE_S * NS_PER_S if _utc_date(d) in EARLY_CLOSES else int(self.crosses_ns[1])
                           for d in days], np.int64)
        return first, offsets, closes

    def auction_mask(self, ts: np.ndarray, side: np.ndarray) -> np.ndarray:
        """True for prints with side N within `window_s` after a scheduled cross: the open and the
        day's close (13:00 on early-close days)."""
        out = side == b"N"
        rows = np.flatnonzero(out)
        if not len(rows):
            return out
        t = ts[rows]
        first, offsets, closes = self.day_table(t)
        day = t // NS_PER_DAY - first
        local = (t + offsets[day]) % NS_PER_DAY
        opening = int(self.crosses_ns[0])
        out[rows] = (((local >= opening) & (local < opening + self.window_ns))
                     | ((local >= closes[day]) & (local < closes[day] + self.window_ns)))
        return out


def _utc_date(utc_day: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + utc_day)
