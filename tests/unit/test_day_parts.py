"""Rate norms per part of the day: the open and the close are transitions judged against their own
history, a part still warming up borrows only a busier norm, and a symbol whose activity has moved
to a new level is judged against that level (the recent level), not against yesterday's evening."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from builders import S, DetectorRun, calm_flow, run_detector

from domain.detectors import TradeBurstDetector, VolumeSurgeDetector
from domain.detectors.rate import (AFTER_HOURS, BROKER_OPEN, FINAL_MINUTE, PERIOD_NAMES, POST_CLOSE, PRE_MARKET, _fold,
                                   _fold_empty, _period)
from domain.sessions import SessionCalendar

NEW_YORK = ZoneInfo("America/New_York")


def at(local: str) -> int:
    """UTC nanoseconds of a New York wall-clock time ('2025-03-04 15:55')."""
    return int(datetime.fromisoformat(local).replace(tzinfo=NEW_YORK).timestamp()) * S


def between(start: str, end: str, rate: float, seed: int) -> np.ndarray:
    lo, hi = at(start), at(end)
    flow = calm_flow(int(rate * (hi - lo) / S * 1.3) + 50, start=lo, rate=rate, seed=seed)
    return flow[flow["ts_event"] < hi]


def sweep(like: np.ndarray, start: str, n: int) -> np.ndarray:
    """`n` prints within one second from `start`."""
    out = np.repeat(like[:1], n)
    out["ts_event"] = at(start) + np.linspace(1, S - 1, n).astype(np.int64)
    return out


def tape(*pieces: np.ndarray) -> np.ndarray:
    merged = np.concatenate(pieces)
    merged = merged[np.argsort(merged["ts_event"], kind="stable")]
    merged["sequence"] = np.arange(1, len(merged) + 1)
    return merged


@pytest.mark.parametrize(("local", "part"), [
    ("2025-03-04 04:00", "pre-market"), ("2025-03-04 06:59", "pre-market"), ("2025-03-04 07:00", "broker-open-minute"),
    ("2025-03-04 07:01", "broker-open-minute"), ("2025-03-04 07:02", "pre-market"),
    ("2025-03-04 08:00", "broker-open-minute"), ("2025-03-04 08:02", "pre-market"), ("2025-03-04 09:25", "pre-open"), ("2025-03-04 09:30", "first-half-hour"),
    ("2025-03-04 09:59", "first-half-hour"), ("2025-03-04 10:00", "regular-session"),
    ("2025-03-04 15:49", "regular-session"), ("2025-03-04 15:50", "closing-minutes"),
    ("2025-03-04 15:58", "closing-minutes"), ("2025-03-04 15:59", "final-minute"),
    ("2025-03-04 16:00", "post-close"), ("2025-03-04 16:30", "after-hours"), ("2025-03-04 21:00", "after-hours"),
    ("2025-07-15 09:27", "pre-open"), ("2025-07-15 08:01", "broker-open-minute"),  # summer time: the same clock
    ("2025-11-28 12:50", "closing-minutes"), ("2025-11-28 12:59", "final-minute"),  # an early close (13:00)
    ("2025-11-28 13:05", "post-close"),
    ("2025-11-28 13:31", "after-hours"),
])
def test_the_parts_of_the_day_follow_the_new_york_clock(local: str, part: str) -> None:
    calendar = SessionCalendar()
    ts = at(local)
    day0, offsets, closes = calendar.day_table(np.array([ts], np.int64))
    assert PERIOD_NAMES[_period(ts, day0, offsets, closes, calendar.opening_ns, calendar.closing_ns,
                                 calendar.broker_open_ns, calendar.final_ns)] == part


def closing_days(days: int, extra: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Afternoons of consecutive days: 4 trades/s to 15:50, then 20/s in the closing minutes with a
    300-print second at 15:55 (what the closing imbalances bring, every day)."""
    pieces = []
    for d in range(days):
        day = f"2025-03-{4 + d:02d}"
        regular = between(f"{day} 15:00", f"{day} 15:50", 4.0, seed=40 + d)
        closing = between(f"{day} 15:50", f"{day} 16:00", 20.0, seed=50 + d)
        pieces += [regular, closing, sweep(closing, f"{day} 15:55", 300)]
        if extra and d in extra:
            pieces.append(extra[d])
    return tape(*pieces)


def test_the_closing_minutes_are_judged_against_their_own_norm() -> None:
    """A 300-print second at 15:55 would be 75x the regular session's 4/s (over the 30x alert); the
    closing minutes' own norm (20/s, learnt on their own bars) makes it the daily routine it is."""
    detector = TradeBurstDetector()
    _, found = run_detector(detector, closing_days(3), chunk=5_000)
    assert found == []
    assert 300 >= max(detector.multiple * 4.0, detector.minimum)


def test_a_real_burst_in_the_closing_minutes_still_fires() -> None:
    like = between("2025-03-06 15:50", "2025-03-06 15:51", 20.0, seed=9)
    flow = closing_days(3, extra={2: sweep(like, "2025-03-06 15:57", 2_000)})
    _, found = run_detector(TradeBurstDetector(), flow, chunk=5_000)
    assert len(found) == 1
    assert found[0].ts_event >= at("2025-03-06 15:57")
    assert "closing-minutes norm" in found[0].reason


def test_the_rest_of_the_session_borrows_the_first_half_hours_norm_while_it_warms_up() -> None:
    """On a symbol's first day the regular session's own norm is warm at 10:15; a burst at 10:05 is
    judged against the first half hour's (busier) norm meanwhile, not ignored."""
    flow = between("2025-03-04 09:30", "2025-03-04 10:30", 8.0, seed=3)
    _, found = run_detector(TradeBurstDetector(), tape(flow, sweep(flow, "2025-03-04 10:05", 600)), chunk=4_096)
    assert len(found) == 1
    assert at("2025-03-04 10:05") <= found[0].ts_event < at("2025-03-04 10:06")
    assert "first-half-hour norm" in found[0].reason


def evening(day: str, rate: float, seed: int) -> np.ndarray:
    """A post-close half hour at 5 trades/s, then the evening at `rate`."""
    return tape(between(f"{day} 16:00", f"{day} 16:30", 5.0, seed=seed),
                between(f"{day} 16:30", f"{day} 20:00" if rate < 1 else f"{day} 17:00", rate, seed=seed + 1))


def test_an_evening_busier_than_yesterdays_is_judged_against_what_the_tape_is_doing_now() -> None:
    """Yesterday's evening was thin (0.1 trades/s); today trading goes on at the post-close's 5/s after
    16:30. The after-hours norm resumes at yesterday's level, far under today's minutes, but the recent
    level (today's last quarter hour) judges them: nothing fires, minute after minute."""
    detector = VolumeSurgeDetector()
    run, _ = run_detector(detector, evening("2025-03-04", 0.1, seed=60))
    yesterday = float(run.state()["norm"][AFTER_HOURS])
    today = evening("2025-03-05", 5.0, seed=70)
    late = today[today["ts_event"] >= at("2025-03-05 16:30")]
    minutes = np.bincount((late["ts_event"] - at("2025-03-05 16:30")) // (60 * S), late["size"])
    assert np.median(minutes) > 2 * detector.multiple * yesterday
    assert run.feed(today) == []
    # Without a recent level (one that would take forever to move), yesterday's norm judges, and fires.
    forgetful = DetectorRun(VolumeSurgeDetector(recent_bars=1e12))
    forgetful.feed(evening("2025-03-04", 0.1, seed=60))
    fired = forgetful.feed(today)
    assert fired and all("after-hours norm" in a.reason for a in fired)


@pytest.mark.parametrize(("seen", "gap"), [(0, 5), (3, 4), (3, 30), (14, 1), (15, 60), (200, 60), (254, 3)])
def test_empty_bars_fold_at_once_as_they_would_one_by_one(seen: int, gap: int) -> None:
    memory, steady = 15, 1 / 15
    one = (np.array([1234.5]), np.array([seen], np.uint8))
    for _ in range(gap):
        _fold(one[0], one[1], 0, 0.0, np.inf, 15, steady)
    at_once = (np.array([1234.5]), np.array([seen], np.uint8))
    _fold_empty(at_once[0], at_once[1], 0, gap, memory, (1 - steady) ** np.arange(61.0))
    assert at_once[0][0] == pytest.approx(one[0][0], rel=1e-9)
    assert at_once[1][0] == one[1][0]


def test_the_hours_the_exchange_is_shut_are_no_quiet_minutes_of_a_norm() -> None:
    """One stray print at 03:00, then the pre-market from 04:00 at 1 trade/s: the hour between had
    been folded into the pre-market's norm as 59 empty minutes, warm and near zero, and the first
    minutes of 04:00 fired as a surge thousands of times that norm. The shut hours now count for
    nothing (the stray print's own minute does), so 04:00 is judged once its part has warmed up on
    its own minutes."""
    premarket = between("2025-03-04 04:00", "2025-03-04 05:00", 1.0, seed=11)
    stray = premarket[:1].copy()
    stray["ts_event"] = at("2025-03-04 03:00")
    run, found = run_detector(VolumeSurgeDetector(), tape(stray, premarket), chunk=1_000)
    assert found == []
    assert int(run.state()["seen"][PRE_MARKET]) == 1 + 59  # the stray minute and 04:00-04:58 (04:59 is open)
    # Minutes the exchange trades still count as empty: a pre-market quiet for an hour fires as before.
    quiet = tape(stray, between("2025-03-04 04:00", "2025-03-04 04:20", 1.0, seed=12),
                 between("2025-03-04 05:30", "2025-03-04 05:40", 1.0, seed=13))
    assert run_detector(VolumeSurgeDetector(), quiet, chunk=1_000)[1]


def pre_markets(days: int, release: int = 150, extra: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Mornings of consecutive weekdays, 06:30-08:30 at 0.3 trades/s, with a second of `release` prints
    at 07:00 and at 08:00 (the orders brokers queued overnight, released every day)."""
    pieces = []
    for d in range(days):
        day = f"2025-03-{3 + d + 2 * (d // 5):02d}"  # Monday 3 March on, weekends skipped
        calm = between(f"{day} 06:30", f"{day} 08:30", 0.3, seed=80 + d)
        pieces += [calm, sweep(calm, f"{day} 07:00", release), sweep(calm, f"{day} 08:00", release)]
        if extra and d in extra:
            pieces.append(extra[d])
    return tape(*pieces)


@pytest.mark.parametrize("detector", [TradeBurstDetector, VolumeSurgeDetector])
def test_the_broker_open_minutes_are_judged_apart_from_the_pre_market(detector: type) -> None:
    """150 prints in the first second of 07:00 and of 08:00 would be 500x the pre-market's 0.3/s and
    fired every morning (a real NVDA day's 08:00 did); their own part, whose trading is expected at
    once, makes them the daily routine they are, while warming up (no alert) and after; nor does
    the release still in a minute-long window at 08:01 fire against the pre-market's norm."""
    run, found = run_detector(detector(), pre_markets(6), chunk=2_000)
    assert found == []
    assert int(run.state()["seen"][BROKER_OPEN]) >= 15  # warm: four bars a day


def test_a_release_far_beyond_the_usual_one_still_fires() -> None:
    like = between("2025-03-10 08:00", "2025-03-10 08:01", 1.0, seed=9)
    _, found = run_detector(TradeBurstDetector(), pre_markets(6, extra={5: sweep(like, "2025-03-10 08:00", 4_000)}),
                            chunk=2_000)
    assert len(found) == 1
    assert at("2025-03-10 08:00") <= found[0].ts_event < at("2025-03-10 08:00:01")
    assert "broker-open-minute norm" in found[0].reason


def last_minutes(days: int, final: dict[int, float] | None = None, post_close: float = 0.0) -> np.ndarray:
    """The closing minutes of consecutive weekdays at 5 trades/s, and their final minute (15:59) at
    50/s, or at `final[day]` trades/s; then the post-close half hour at `post_close` trades/s."""
    pieces = []
    for d in range(days):
        day = f"2025-03-{3 + d + 2 * (d // 5):02d}"  # Monday 3 March on, weekends skipped
        rate = (final or {}).get(d, 50.0)
        pieces += [between(f"{day} 15:50", f"{day} 15:59", 5.0, seed=100 + d),
                   between(f"{day} 15:59", f"{day} 16:00", rate, seed=200 + d)]
        if post_close:
            pieces.append(between(f"{day} 16:00", f"{day} 16:30", post_close, seed=300 + d))
    return tape(*pieces)


def test_the_final_minute_is_judged_against_its_own_norm() -> None:
    """The minute before the close trades 10x the other closing minutes every day. Pooled with them, its
    norm was one the nine calm minutes before it had just pulled down, and the final minute fired on
    most days (12 of these 18). Against the final minutes' own norm a day whose final minute doubled is
    2x, and only a final minute far beyond its own days' fires."""
    doubled = last_minutes(18, final={17: 100.0})
    run, found = run_detector(VolumeSurgeDetector(), doubled, chunk=4_096)
    assert found == []
    assert int(run.state()["seen"][FINAL_MINUTE]) >= 15  # judged warm on the last day
    # (a day after it, whose first print reports the episode)
    _, found = run_detector(VolumeSurgeDetector(), last_minutes(19, final={17: 600.0}), chunk=4_096)
    assert len(found) == 1
    assert at("2025-03-26 15:59") <= found[0].ts_event < at("2025-03-26 16:00")
    assert "final-minute norm" in found[0].reason


def test_a_window_reaching_back_into_the_part_before_is_judged_against_the_busier_part() -> None:
    """At 16:00:20 the last minute's window still holds 40 seconds of the final minute's 50 trades/s,
    50x the post-close's 1/s: judged against the post-close's norm it fired every day once that part was
    warm. It holds prints of both parts, so it is judged against the busier (the final minute's), and
    not at all while that one is warming up."""
    run, found = run_detector(VolumeSurgeDetector(), last_minutes(18, post_close=1.0), chunk=4_096)
    assert found == []
    assert int(run.state()["seen"][FINAL_MINUTE]) >= 15 and int(run.state()["seen"][POST_CLOSE]) >= 15
