"""Use case: find stored anomalies by symbol, detector, event-time range and minimum score."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from domain.detectors import DETECTOR_NAMES
from domain.errors import DomainError, unknown_detectors
from domain.model import Anomaly
from domain.ports import AnomalyQuery

NS = 1_000_000_000
UNIT_NS = {"s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86_400 * NS, "w": 7 * 86_400 * NS}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_FRACTION = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})[.,](\d{1,9})(.*)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class InvalidQuery(DomainError):
    """A query that cannot be run as asked (unreadable time, empty range, bad limit, unknown detector)."""


def parse_time(text: str, now_ns: int) -> int:
    """Event time in ns from ISO 8601 (`2025-05-05T13:00:00Z`, an offset, up to 9 fractional
    digits; no zone means UTC; a bare date is its midnight), integer ns since the epoch, `now`,
    or an age before now such as `30m`, `1h`, `7d` (units s, m, h, d, w); between 1970 and 2262
    (what 64-bit nanoseconds since the epoch hold)."""
    ns = _parse_time(text, now_ns)
    if not 0 <= ns < 2**63:
        raise InvalidQuery(f"time {text!r} is outside what event times hold (1970 to 2262)")
    return ns


def _parse_time(text: str, now_ns: int) -> int:
    value = text.strip()
    if value.lower() == "now":
        return now_ns
    relative = _RELATIVE.match(value.lower())
    if relative:
        return now_ns - int(float(relative.group(1)) * UNIT_NS[relative.group(2)])
    if value.isdigit() and len(value) >= 16:
        return int(value)
    if value.isdigit() and len(value) > 8:  # (eight digits are a date: 20250505)
        unit = "seconds" if len(value) <= 10 else "milliseconds" if len(value) <= 13 else "microseconds"
        raise InvalidQuery(f"time {text!r} reads as {unit} since the epoch; integers are nanoseconds "
                           f"({int(value) * 10 ** {'seconds': 9, 'milliseconds': 6}.get(unit, 3)})")
    fraction = 0
    split = _FRACTION.match(value)
    if split:
        value = split.group(1) + split.group(3)
        fraction = int(split.group(2).ljust(9, "0"))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"cannot read time {text!r}: use ISO 8601 like 2025-05-05T13:00:00Z, "
                           f"integer ns, or an age like 30m, 1h, 7d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1_000 + fraction


@dataclass(frozen=True, slots=True)
class Matches:
    """The first `limit` matches in the order asked for, and how many match in all."""

    found: list[Anomaly]
    total: int

    @property
    def cut(self) -> bool:
        """Whether the limit left matches out."""
        return self.total > len(self.found)


class QueryAnomalies:
    """Resolve the user's times against the clock, check the request, ask the AnomalyQuery port (how
    many match in all only when the limit was reached: one more request then, none otherwise)."""

    def __init__(self, query: AnomalyQuery, clock: Callable[[], int] = time.time_ns) -> None:
        self.query = query
        self.clock = clock

    def __call__(self, *, symbols: Sequence[str] = (), detectors: Sequence[str] = (),
                 since: str | int | None = None, until: str | int | None = None,
                 min_score: float | None = None, limit: int = 50, order: str = "time") -> Matches:
        now = self.clock()
        since_ns = parse_time(since, now) if isinstance(since, str) else since
        until_ns = parse_time(until, now) if isinstance(until, str) else until
        if since_ns is not None and until_ns is not None and since_ns >= until_ns:
            raise InvalidQuery("--since must be before --until")
        if limit < 1:
            raise InvalidQuery(f"limit must be at least 1, got {limit}")
        if order not in ("time", "score"):
            raise InvalidQuery(f"order must be 'time' or 'score', got {order!r}")
        detectors = [d.strip().lower() for d in detectors if d.strip()]  # any case, as replay's --detectors
        unknown = [d for d in detectors if d not in DETECTOR_NAMES]
        if unknown:  # a misspelt one would match nothing, which reads as "all quiet"
            raise InvalidQuery(unknown_detectors(unknown, DETECTOR_NAMES))
        found = self.query.search(symbols=tuple(symbols), detectors=tuple(detectors), since_ns=since_ns,
                                  until_ns=until_ns, min_score=min_score, limit=limit, order=order)
        if len(found) < limit:
            return Matches(found, len(found))
        total = self.query.count(symbols=tuple(symbols), detectors=tuple(detectors), since_ns=since_ns,
                                 until_ns=until_ns, min_score=min_score)
        return Matches(found, max(total, len(found)))  # (counted after the search: never fewer)
