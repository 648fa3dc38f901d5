"""JSON trades on the trades topic: one object or a list, for producers other than `ingest`."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from adapters.kafka.keys import BAD_FIELD, BAD_JSON, EMPTY_BATCH, MISSING_FIELD, check_symbol, symbol_of
from domain.model import TRADE_DTYPE, DeadLetter

REQUIRED = ("ts_event", "price", "size")
# (field, smallest, largest) of the optional integer fields, by their TRADE_DTYPE type.
_INTEGERS = (("publisher_id", 0, 2**16 - 1), ("instrument_id", 0, 2**32 - 1), ("sequence", 0, 2**64 - 1),
             ("flags", 0, 255))
_INT64 = (-(2**63), 2**63 - 1)
_ISO = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?)\s*(Z|[+-]\d\d:?\d\d)?", re.I)
_NS_PER_MINUTE = 60_000_000_000


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def decode_json(key: bytes | None, raw: bytes, origin: str,
                ) -> tuple[np.ndarray, list[DeadLetter], list[int] | None]:
    """Trades of a JSON value; a bad element of a list costs only itself (its own JSON as raw). The
    third value is, for a list, each trade's element position in it (None for a single object)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        return np.empty(0, TRADE_DTYPE), [DeadLetter(BAD_JSON, f"not JSON: {exc}", origin, raw)], None
    single = not isinstance(doc, list)
    items = [doc] if single else doc
    if not items:  # a message that says nothing is still a message: counted, not silently gone
        return np.empty(0, TRADE_DTYPE), [DeadLetter(EMPTY_BATCH, "an empty list of trades", origin, raw)], []
    key_symbol, key_problem = symbol_of(key)
    # What a trade without a `symbol` field falls back on, said when there is none to fall back on.
    no_symbol = ("symbol (and no message key)" if not key else
                 f"symbol (and the message key names none: {key_problem[1] if key_problem else 'empty'})")
    rows: list[tuple[Any, ...]] = []
    kept: list[int] = []
    letters: list[DeadLetter] = []
    for i, item in enumerate(items):
        try:
            rows.append(_row(item, key_symbol, no_symbol))
            kept.append(i)
        except _Rejected as exc:
            where, item_raw = (origin, raw) if single else (f"{origin}#{i}", _dumps(item))
            letters.append(DeadLetter(exc.reason, exc.detail, where, item_raw))
    return (np.array(rows, TRADE_DTYPE) if rows else np.empty(0, TRADE_DTYPE)), letters, None if single else kept


def _row(item: Any, key_symbol: str, no_symbol: str) -> tuple[Any, ...]:
    if not isinstance(item, dict):
        raise _Rejected(BAD_JSON, f"expected a trade object, got {type(item).__name__}")
    missing = [name for name in REQUIRED if item.get(name) is None]
    symbol = item.get("symbol")
    if symbol is None and not key_symbol:
        missing.append(no_symbol)
    if missing:
        raise _Rejected(MISSING_FIELD, f"missing {', '.join(missing)}")
    if symbol is None:
        symbol = key_symbol
    elif not isinstance(symbol, str):
        raise _Rejected(BAD_FIELD, f"symbol must be a string, got {symbol!r}")
    symbol, problem = check_symbol(symbol)
    if problem is not None:
        raise _Rejected(BAD_FIELD, problem[1])
    ts_event = _timestamp(item, "ts_event")
    ts_recv = ts_event if item.get("ts_recv") is None else _timestamp(item, "ts_recv")
    price = item["price"]
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        raise _Rejected(BAD_FIELD, f"price must be a number, got {price!r}")
    try:
        price = float(price)
    except OverflowError:  # an integer of hundreds of digits: as 1e400 reads, infinite (a bad_price)
        price = math.inf if price > 0 else -math.inf
    size = _integer(item, "size", *_INT64)
    ints = [_integer(item, name, low, high) if item.get(name) is not None else 0 for name, low, high in _INTEGERS]
    side = item.get("side", "N")
    # Databento's sides only, as a CSV's: another (Z) would be taken for an aggressor side and judged
    # where an N (an auction cross) is exempt.
    if not (isinstance(side, str) and side in ("A", "B", "N")):
        raise _Rejected(BAD_FIELD, f"side must be A, B or N, got {side!r}")
    publisher_id, instrument_id, sequence, flags = ints
    return (ts_event, ts_recv, price, size, publisher_id, instrument_id, sequence, side.encode(), flags,
            symbol)


def _integer(item: dict[str, Any], name: str, low: int, high: int) -> int:
    value = item[name]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Rejected(BAD_FIELD, f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise _Rejected(BAD_FIELD, f"{name} {value} is outside [{low}, {high}]")
    return value


def _timestamp(item: dict[str, Any], name: str) -> int:
    """Integer nanoseconds since the epoch, or an ISO 8601 string (UTC unless it has an offset)."""
    value = item[name]
    if isinstance(value, str):
        match = _ISO.fullmatch(value.strip())
        if match is None:
            raise _Rejected(BAD_FIELD, f"{name} {value!r} is not an ISO 8601 timestamp")
        base, zone = match.groups()
        # Whole seconds first (numpy's "ns" wraps years outside 1678-2261 silently), then the fraction:
        # an impossible date (month 13) or one outside int64 nanoseconds is a bad field, not a crash.
        whole, _, fraction = base.replace(" ", "T").partition(".")
        try:
            seconds = int(np.datetime64(whole, "s").astype(np.int64))
        except (ValueError, OverflowError) as exc:
            raise _Rejected(BAD_FIELD, f"{name} {value!r} is not a valid date and time: {exc}") from None
        ns = seconds * 1_000_000_000 + int(fraction.ljust(9, "0")) - _offset_minutes(zone) * _NS_PER_MINUTE
        if not _INT64[0] <= ns <= _INT64[1]:
            raise _Rejected(BAD_FIELD, f"{name} {value!r} is outside the nanosecond timestamps int64 holds")
        return ns
    return _integer(item, name, *_INT64)


def _offset_minutes(zone: str | None) -> int:
    if zone is None or zone.upper() == "Z":
        return 0
    digits = zone[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    return -minutes if zone[0] == "-" else minutes


def _dumps(item: Any) -> bytes:
    return json.dumps(item, separators=(",", ":"), allow_nan=True).encode()
