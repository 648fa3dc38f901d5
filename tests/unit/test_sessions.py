"""Sessions and the exchange's clock: what an analyst reads next to every anomaly."""

from __future__ import annotations

import importlib.util
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from domain.sessions import SessionCalendar

NY = ZoneInfo("America/New_York")
REPO = Path(__file__).resolve().parents[2]


def ns(local: str) -> int:
    """New York wall time -> UTC nanoseconds."""
    return int(datetime.fromisoformat(local).replace(tzinfo=NY).timestamp()) * 1_000_000_000


@pytest.mark.parametrize(("local", "session"), [
    ("2025-05-05 03:59:59", "closed"),
    ("2025-05-05 04:00:00", "pre_market"),
    ("2025-05-05 09:29:59", "pre_market"),
    ("2025-05-05 09:30:00", "regular"),
    ("2025-05-05 15:59:59", "regular"),
    ("2025-05-05 16:00:00", "after_hours"),
    ("2025-05-05 19:59:59", "after_hours"),
    ("2025-05-05 20:00:00", "closed"),
    ("2025-03-07 09:30:00", "regular"),  # the Friday before daylight saving time (UTC-5) ...
    ("2025-03-10 09:29:59", "pre_market"),  # ... and the Monday after (UTC-4)
    ("2025-03-10 09:30:00", "regular"),
    ("2025-05-10 10:00:00", "closed"),  # a Saturday
    ("2025-05-26 10:00:00", "closed"),  # Memorial Day
    ("2025-07-03 12:59:59", "regular"),  # an early close: the regular session ends at 13:00 ...
    ("2025-07-03 13:30:00", "after_hours"),
    ("2025-07-03 16:59:59", "after_hours"),  # ... the after-hours at 17:00
    ("2025-07-03 17:00:00", "closed"),
])
def test_a_print_belongs_to_the_session_of_its_new_york_time(local: str, session: str) -> None:
    assert SessionCalendar().session_of(ns(local)) == session


def test_local_time_is_new_york_wall_time_with_its_offset_to_the_nanosecond() -> None:
    calendar = SessionCalendar()
    assert calendar.local_time(ns("2025-05-05 09:30:00") + 123_456_789) == "2025-05-05T09:30:00.123456789-04:00"
    assert calendar.local_time(ns("2025-03-07 16:00:00")) == "2025-03-07T16:00:00.000000000-05:00"
    assert datetime.fromisoformat(calendar.local_time(ns("2025-05-05 12:00:00"))[:26] + "-04:00") == \
        datetime(2025, 5, 5, 12, tzinfo=NY)


@pytest.mark.parametrize(("local", "is_open"), [
    ("2025-05-05 09:29:59", False),  # a Monday, before the open
    ("2025-05-05 09:30:00", True),
    ("2025-05-05 15:59:59", True),
    ("2025-05-05 16:00:00", False),  # the evening: after-hours trades may stop, nobody is paged
    ("2025-05-03 11:00:00", False),  # a Saturday
    ("2025-05-04 11:00:00", False),  # a Sunday
    ("2025-12-25 11:00:00", False),  # Christmas
    ("2025-04-18 11:00:00", False),  # Good Friday
    ("2025-11-28 12:59:59", True),   # the day after Thanksgiving closes at 13:00
    ("2025-11-28 13:00:00", False),
    ("2025-03-10 09:30:00", True),   # the first Monday of daylight saving time
])
def test_the_regular_session_is_on_only_on_trading_days_between_the_open_and_the_close(local: str,
                                                                                       is_open: bool) -> None:
    assert SessionCalendar().regular_session_open(ns(local)) is is_open


@pytest.mark.parametrize(("local", "side", "cross"), [
    ("2025-05-05 09:30:00.2", b"N", True),   # the opening cross
    ("2025-05-05 09:31:00.0", b"N", False),  # a minute later: a print like any other
    ("2025-05-05 16:00:00.4", b"N", True),   # the closing cross
    ("2025-05-05 16:00:00.4", b"B", False),  # a print with an aggressor is no cross
    ("2025-11-28 13:00:00.022", b"N", True),  # an early close: the closing cross at 13:00 ...
    ("2025-11-28 16:00:00.5", b"N", False),  # ... and none at 16:00
    ("2025-03-10 16:00:30", b"N", True),     # the Monday after daylight saving time began (UTC-4)
    ("2025-03-07 16:00:30", b"N", True),     # the Friday before (UTC-5)
])
def test_the_crosses_are_the_side_n_prints_of_the_minute_after_the_open_and_the_days_close(
        local: str, side: bytes, cross: bool) -> None:
    """The closing cross of an early-close day prints at 13:00: it was judged as an ordinary print
    (a 13,395,940-share cross fired high_volume at 4,613x)."""
    at = datetime.fromisoformat(local).replace(tzinfo=NY)
    ts = np.array([int(at.timestamp() * 1_000) * 1_000_000], np.int64)
    assert SessionCalendar().auction_mask(ts, np.array([side], "S1")).tolist() == [cross]


def test_the_exchange_days_are_the_exchange_calendars_packages_and_span_the_years_they_say() -> None:
    """The domain's holiday and early-close table is data generated from exchange_calendars (XNYS);
    days before 2025 were ordinary weekdays (a 2024-11-29 closing cross judged at 16:00)."""
    from domain import exchange_days

    spec = importlib.util.spec_from_file_location("exchange_days_script", REPO / "scripts" / "exchange_days.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    closed, early = script.exchange_days(exchange_days.FIRST_YEAR, exchange_days.LAST_YEAR)
    assert exchange_days.HOLIDAYS == frozenset(closed)
    assert exchange_days.EARLY_CLOSES == frozenset(early)
    calendar = SessionCalendar()
    assert not calendar.trading_day(date(2001, 9, 11)) and not calendar.trading_day(date(2035, 12, 25))
    assert calendar.session_of(ns("2024-11-29 14:00:00")) == "after_hours"  # the day after Thanksgiving
