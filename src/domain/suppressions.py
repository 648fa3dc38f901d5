"""Suppressions: known patterns an analyst has decided not to be told about again.

A rule names any of a symbol, a detector, a window of the exchange's time of day (New York,
[start, end)) and a last day it applies (inclusive, exchange date); an anomaly matching every part
a rule names is suppressed: judged as always (state, models and ids do not change), but not
published. A rule must name at least one part: an empty rule would silence everything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from domain.detectors import DETECTOR_NAMES
from domain.errors import ConfigError
from domain.model import Anomaly


@dataclass(frozen=True, slots=True)
class Suppression:
    symbol: str | None = None
    detector: str | None = None
    start: time | None = None  # time-of-day window on the exchange's clock, [start, end)
    end: time | None = None
    until: date | None = None  # last exchange date it applies
    note: str = ""

    def __post_init__(self) -> None:
        if (self.start is None) != (self.end is None):
            raise ConfigError("a suppression's time-of-day window needs both a start and an end")
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise ConfigError(f"a suppression's window must start before it ends, got {self.start}-{self.end}")
        if self.symbol is None and self.detector is None and self.start is None and self.until is None:
            raise ConfigError("a suppression must name a symbol, a detector, a time-of-day window or an end date: "
                              "an empty one would silence every anomaly")

    @property
    def id(self) -> str:
        """Short and derived from what the rule matches (the note aside): the same rule, the same id."""
        key = f"{self.symbol}|{self.detector}|{self.start}|{self.end}|{self.until}"
        return hashlib.blake2b(key.encode(), digest_size=4).hexdigest()

    def matches(self, a: Anomaly) -> bool:
        if self.symbol is not None and a.symbol.upper() != self.symbol:
            return False
        if self.detector is not None and a.detector != self.detector:
            return False
        local = a.ts_local  # "2025-05-05T09:30:00.123456789-04:00"
        if self.until is not None and (not local or date.fromisoformat(local[:10]) > self.until):
            return False
        if self.start is not None and self.end is not None:
            if not local:
                return False
            clock = time.fromisoformat(local[11:19])
            return self.start <= clock < self.end
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "symbol": self.symbol, "detector": self.detector,
                "between": None if self.start is None or self.end is None else f"{_clock(self.start)}-{_clock(self.end)}",
                "until": None if self.until is None else self.until.isoformat(), "note": self.note}

    @classmethod
    def of(cls, symbol: str | None = None, detector: str | None = None, between: str | None = None,
           until: str | None = None, note: str = "") -> Suppression:
        """From text as a user writes it: between "15:50-16:00", until "2026-12-31"."""
        start = end = None
        if between:
            try:
                first, _, last = between.partition("-")
                start, end = time.fromisoformat(first.strip()), time.fromisoformat(last.strip())
                if start.microsecond or end.microsecond or start.tzinfo or end.tzinfo:
                    raise ValueError("whole seconds of New York time only")
            except ValueError:
                raise ConfigError(f"suppression window {between!r} is not HH:MM-HH:MM or HH:MM:SS-HH:MM:SS "
                                  "(New York time)") from None
        detector = detector.strip().lower() if detector and detector.strip() else None  # any case, as replay's
        if detector and detector not in DETECTOR_NAMES:
            raise ConfigError(f"unknown detector {detector!r} in a suppression; choose from {', '.join(DETECTOR_NAMES)}")
        day = None
        if until:
            try:
                day = date.fromisoformat(until)
            except ValueError:
                raise ConfigError(f"suppression end {until!r} is not a date YYYY-MM-DD") from None
        return cls(symbol=symbol.strip().upper() if symbol and symbol.strip() else None,
                   detector=detector or None, start=start, end=end, until=day, note=note)


class Suppressions:
    def __init__(self, rules: list[Suppression]) -> None:
        self.rules = rules

    def rule_for(self, a: Anomaly) -> Suppression | None:
        """The first rule that suppresses `a`, if any."""
        return next((r for r in self.rules if r.matches(a)), None)


def _clock(t: time) -> str:
    """A window's bound as written: HH:MM, or HH:MM:SS when it has seconds (stored as given, so the
    rule read back is the rule written, with the same id)."""
    return f"{t:%H:%M:%S}" if t.second else f"{t:%H:%M}"
