"""Value objects: the trade batch layout, anomalies and dead letters."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# One row per trade. Timestamps are int nanoseconds since the UNIX epoch (UTC); prices are
# float64 in the instrument's currency units (Databento's 1e-9 fixed point divided by 1e9);
# sizes are shares. `side` is Databento's aggressor side: b"A" ask, b"B" bid, b"N" none.
TRADE_DTYPE = np.dtype(
    [
        ("ts_event", "i8"),
        ("ts_recv", "i8"),
        ("price", "f8"),
        ("size", "i8"),
        ("publisher_id", "u2"),
        ("instrument_id", "u4"),
        ("sequence", "u8"),
        ("side", "S1"),
        ("flags", "u1"),
        ("symbol", "U24"),
    ]
)


def empty_trades(n: int = 0) -> np.ndarray:
    """A zeroed trade batch of length n."""
    return np.zeros(n, dtype=TRADE_DTYPE)


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade, for the tests' builders; batches are numpy arrays of TRADE_DTYPE."""

    symbol: str
    ts_event: int
    price: float
    size: int
    publisher_id: int = 0
    instrument_id: int = 0
    sequence: int = 0
    side: str = "N"
    flags: int = 0
    ts_recv: int | None = None


def trades_to_batch(trades: list[Trade]) -> np.ndarray:
    """Pack Trade objects into a batch (used by the tests' builders)."""
    batch = empty_trades(len(trades))
    for i, t in enumerate(trades):
        batch[i] = (
            t.ts_event,
            t.ts_event if t.ts_recv is None else t.ts_recv,
            t.price,
            t.size,
            t.publisher_id,
            t.instrument_id,
            t.sequence,
            t.side.encode(),
            t.flags,
            t.symbol,
        )
    return batch


SEVERITIES = ("low", "medium", "high")


def severity_for(score: float) -> str:
    """Score is the detector's statistic over its threshold: 1 is just over, 4 is far over."""
    if score >= 4.0:
        return "high"
    if score >= 2.0:
        return "medium"
    return "low"


def anomaly_id(detector: str, symbol: str, publisher_id: int, instrument_id: int,
               ts_event: int, sequence: int) -> str:
    """Deterministic id: the same detector firing on the same trade always gives the same id."""
    key = f"{detector}|{symbol}|{publisher_id}|{instrument_id}|{ts_event}|{sequence}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


# What a user is told when something given as an id (anomaly_id's, or an incident's) is none.
NOT_AN_ID = "is not an anomaly or incident id (32 hex digits, as replay --out and query show)"


def is_record_id(text: str) -> bool:
    """Whether `text` has the shape of an anomaly's or incident's id: 32 lowercase hex digits."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True, slots=True)
class Print:
    """One trade of the tape around an anomaly (its context), as an analyst reads it."""

    ts_event: int
    price: float
    size: int
    side: str  # "A" ask, "B" bid, "N" none

    def to_dict(self) -> dict[str, Any]:
        return {"ts_event": self.ts_event, "price": self.price, "size": self.size, "side": self.side}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Print:
        return cls(int(d["ts_event"]), float(d["price"]), int(d["size"]), str(d.get("side", "N")))


def prints_from(items: Any) -> tuple[Print, ...]:
    """Prints from their `to_dict` forms (a missing list: none)."""
    return tuple(Print.from_dict(p) for p in (items or []))


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A trade a detector found unusual, with the numbers that explain why."""

    id: str
    detector: str
    symbol: str
    ts_event: int
    price: float
    size: int
    score: float
    severity: str
    reason: str
    publisher_id: int = 0
    instrument_id: int = 0
    sequence: int = 0
    details: dict[str, float] = field(default_factory=dict)
    session: str = ""  # the exchange session of the trade's local time (domain.sessions); "" if not known
    ts_local: str = ""  # the trade's time on the exchange's clock, ISO 8601 with its offset
    # The symbol's trades just before the print the anomaly was found at, oldest first (domain.context):
    # the tape leading up to it. The trades after it come with its incident, once they have happened.
    context: tuple[Print, ...] = ()
    # Where in the batch it was found (a grouped position of the detect call's MarketBatch; -1: not
    # known): how the engine finds its context. Not part of the anomaly's value.
    found: int = field(default=-1, compare=False, repr=False)

    @classmethod
    def of_trade(cls, detector: str, row: np.void, score: float, reason: str,
                 details: dict[str, float] | None = None) -> Anomaly:
        return cls.of_print(detector, str(row["symbol"]), int(row["ts_event"]), float(row["price"]),
                            int(row["size"]), int(row["publisher_id"]), int(row["instrument_id"]),
                            int(row["sequence"]), score, reason, details)

    @classmethod
    def of_print(cls, detector: str, symbol: str, ts: int, price: float, size: int, publisher_id: int,
                 instrument_id: int, sequence: int, score: float, reason: str,
                 details: dict[str, float] | None = None, found: int = -1) -> Anomaly:
        """The anomaly of one print, given by its fields (a detector that reports after the fact keeps
        them in its state); `found`: the batch position it was found at."""
        return cls(
            id=anomaly_id(detector, symbol, publisher_id, instrument_id, ts, sequence),
            detector=detector,
            symbol=symbol,
            ts_event=ts,
            price=price,
            size=size,
            score=round(float(score), 4),
            severity=severity_for(score),
            reason=reason,
            publisher_id=publisher_id,
            instrument_id=instrument_id,
            sequence=sequence,
            details={k: float(v) for k, v in (details or {}).items()},
            found=found,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "symbol": self.symbol,
            "ts_event": self.ts_event,
            "price": self.price,
            "size": self.size,
            "score": self.score,
            "severity": self.severity,
            "reason": self.reason,
            "publisher_id": self.publisher_id,
            "instrument_id": self.instrument_id,
            "sequence": self.sequence,
            "details": dict(self.details),
            "session": self.session,
            "ts_local": self.ts_local,
            "context": [p.to_dict() for p in self.context],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Anomaly:
        """The inverse of `to_dict` (KeyError, TypeError or ValueError on anything else)."""
        if not isinstance(d, dict):
            raise TypeError(f"an anomaly is a JSON object, not {type(d).__name__}")
        return cls(id=str(d["id"]), detector=str(d["detector"]), symbol=str(d["symbol"]),
                   ts_event=int(d["ts_event"]), price=float(d["price"]), size=int(d["size"]),
                   score=float(d["score"]), severity=str(d["severity"]), reason=str(d["reason"]),
                   publisher_id=int(d.get("publisher_id", 0)), instrument_id=int(d.get("instrument_id", 0)),
                   sequence=int(d.get("sequence", 0)),
                   details={str(k): float(v) for k, v in dict(d.get("details") or {}).items()},
                   session=str(d.get("session", "")), ts_local=str(d.get("ts_local", "")),
                   context=prints_from(d.get("context")))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be processed, the reason, and where it came from."""

    reason: str
    detail: str
    origin: str = ""
    raw: bytes = b""
    key: bytes | None = None  # the key of the message it came in, when it came in one
    row: int = -1  # a rejected trade's position in the batch it was judged in; -1: not a trade of one
    records: int = 1  # input records it stands for: 0 for the unread rest of a file (counted as no trade)
    # Where in its source it stands, numbered as SourceChunk.places numbers trades (a file's line or
    # record); -1: not said. Not part of what the letter says: two reads of one row are one letter.
    place: int = field(default=-1, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, "origin": self.origin,
                "raw": self.raw.decode("utf-8", errors="replace")}
