"""Turn CSV text columns into numpy numbers, marking rows that do not parse instead of failing a batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INT_PATTERN = r"^[+-]?[0-9]+$"
DECIMAL_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(?i:nan|inf|infinity)$"
ISO_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
               r"(Z|[+-][0-9]{2}:?[0-9]{2})$")

# ISO 8601 but with no zone: a local time as often as UTC, so not guessed (see `zoneless`).
ZONELESS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?$"

UTC_NS = pa.timestamp("ns", tz="UTC")
UNDEF_PRICE = np.iinfo(np.int64).max
PRICE_SCALE = 1e9


def looks_like_integers(column: pa.Array, sample: int = 1000) -> bool:
    """True when most non-empty values of the column's head are plain integers (fixed point, ns)."""
    head = column.slice(0, sample)
    head = pc.filter(head, pc.not_equal(head, ""))
    if len(head) == 0:
        return False
    return pc.mean(pc.match_substring_regex(head, INT_PATTERN).cast(pa.int8())).as_py() > 0.5


def integer_median(column: pa.Array, sample: int = 1000) -> float | None:
    """The median of the plain integers among the column's head (None: there are none)."""
    head = column.slice(0, sample)
    head = pc.filter(head, pc.match_substring_regex(head, INT_PATTERN))
    values = np.asarray(head.cast(pa.float64()), np.float64)
    return float(np.median(values)) if len(values) else None


FIXED_POINT_FLOOR = 1_000_000  # 1e-9 units: $0.001. A price written in whole dollars is never this big


def looks_like_fixed_point_prices(column: pa.Array, sample: int = 1000) -> bool:
    """True when the column's head holds integers in Databento's 1e-9 fixed point: plain integers
    (mostly) whose median is at least FIXED_POINT_FLOOR. Whole-dollar prices ("113") are integers
    too, but small ones: read as decimal prices, they and any later "114.11" parse alike."""
    if not looks_like_integers(column, sample):
        return False
    median = integer_median(column, sample)
    return median is not None and median >= FIXED_POINT_FLOOR


def parse(column: pa.Array, target: pa.DataType, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """Values as numpy (zero where unparseable) and the mask of rows that did not parse.

    The whole column is cast at once; only a batch with a bad value pays for the regex and for the
    bisection that isolates values the pattern admits but the cast still rejects (overflow, month 13).
    """
    try:
        return _numpy(column.cast(target)), np.zeros(len(column), bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    candidate = _mask(pc.match_substring_regex(column, pattern))
    rows = np.flatnonzero(candidate)
    values = np.zeros(len(column), _numpy_dtype(target))
    bad = ~candidate
    for start, stop, part in _castable_runs(column, rows, target, 0, len(rows)):
        if part is None:
            bad[rows[start]] = True
        else:
            values[rows[start:stop]] = part
    return values, bad


def parse_timestamps(column: pa.Array, integers: bool) -> tuple[np.ndarray, np.ndarray]:
    """int64 ns since the epoch, from integer ns or ISO 8601 text (nanoseconds kept exactly)."""
    if integers:
        return parse(column, pa.int64(), INT_PATTERN)
    return parse(column, UTC_NS, ISO_PATTERN)


def zoneless(column: pa.Array, bad: np.ndarray) -> np.ndarray:
    """Of the `bad` rows of a timestamp column, those that are ISO 8601 times with no zone: their dead
    letters say what to add, where 'unparseable' would leave a reader to find it. Only the bad rows
    are matched (none, normally)."""
    out = np.zeros(len(column), bool)
    rows = np.flatnonzero(bad)
    if len(rows):
        out[rows] = _mask(pc.match_substring_regex(column.take(pa.array(rows)), ZONELESS_PATTERN))
    return out


def parse_prices(column: pa.Array, fixed_point: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 currency units, from 1e-9 fixed-point integers or decimal text.

    An empty price or Databento's UNDEF_PRICE is an undefined price: NaN, left to domain validation.
    """
    empty = _mask(pc.equal(column, ""))
    if fixed_point:
        raw, bad = parse(column, pa.int64(), INT_PATTERN)
        prices = raw / PRICE_SCALE
        prices[raw == UNDEF_PRICE] = np.nan
    else:
        prices, bad = parse(column, pa.float64(), DECIMAL_PATTERN)
    if empty.any():
        prices[empty] = np.nan
        bad &= ~empty
    return prices, bad


def _castable_runs(column: pa.Array, rows: np.ndarray, target: pa.DataType, start: int,
                   stop: int) -> Iterator[tuple[int, int, np.ndarray | None]]:
    """(start, stop, values) over positions of `rows`, bisecting; values None for one bad row."""
    if start >= stop:
        return
    try:
        yield start, stop, _numpy(column.take(pa.array(rows[start:stop])).cast(target))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if stop - start == 1:
            yield start, stop, None
            return
        middle = (start + stop) // 2
        yield from _castable_runs(column, rows, target, start, middle)
        yield from _castable_runs(column, rows, target, middle, stop)


def _numpy(array: pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(array.type):
        array = array.cast(pa.int64())
    return array.to_numpy(zero_copy_only=False)


def _numpy_dtype(target: pa.DataType) -> np.dtype:
    return np.dtype(np.int64) if pa.types.is_timestamp(target) else np.dtype(target.to_pandas_dtype())


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

