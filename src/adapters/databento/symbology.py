"""instrument_id -> symbol from a DBN file's metadata mappings, resolved per UTC date, vectorised."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from databento_dbn import SType

NS_PER_DAY = 86_400_000_000_000
_EPOCH = dt.date(1970, 1, 1)
_SYMBOL_DTYPE = np.dtype("U24")
SYMBOL_WIDTH = _SYMBOL_DTYPE.itemsize // 4
TOO_LONG = -2  # a code: the instrument's symbol is longer than SYMBOL_WIDTH (cut, two names could become one)


class SymbolTable:
    """Date-ranged mappings, the same rule as databento's InstrumentMap: start <= date < end.

    Resolution runs once per distinct (instrument, day) in a chunk, not once per record.
    """

    def __init__(self) -> None:
        self._intervals: dict[int, list[tuple[int, int, str]]] = {}
        self._codes: dict[int, int] = {}
        self._symbols: list[str] = []
        self._symbol_codes: dict[str, int] = {}
        self._symbol_array = np.empty(0, _SYMBOL_DTYPE)

    @classmethod
    def from_metadata(cls, metadata: Any) -> SymbolTable:
        table = cls()
        mappings: Mapping[str, Sequence[Mapping[str, Any]]] = metadata.mappings or {}
        for symbol_in, entries in mappings.items():
            for entry in entries:
                if not entry["symbol"]:
                    continue
                symbol, instrument_id = _mapping_pair(symbol_in, metadata.stype_in, entry["symbol"],
                                                      metadata.stype_out)
                table.insert(instrument_id, _day(entry["start_date"]), _day(entry["end_date"]), symbol)
        return table

    def __len__(self) -> int:
        return sum(len(v) for v in self._intervals.values())

    def insert(self, instrument_id: int, start_day: int, end_day: int, symbol: str) -> None:
        bisect.insort(self._intervals.setdefault(instrument_id, []), (start_day, end_day, symbol))
        self._codes.clear()

    def resolve(self, instrument_ids: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Symbols (U24) for each record and a mask of the records that have a mapping (one to a
        symbol longer than U24 holds does not count: `long_symbol` names it)."""
        n = len(instrument_ids)
        if n == 0 or not self._intervals:
            return np.zeros(n, _SYMBOL_DTYPE), np.zeros(n, bool)
        days = np.clip(ts.astype(np.int64, copy=False) // NS_PER_DAY, 0, 0xFFFFFFFF)
        keys = (instrument_ids.astype(np.int64) << 32) | days
        if bool(np.all(keys == keys[0])):  # the usual chunk: one instrument on one day, no sort needed
            code = self._code(int(keys[0]))
            return np.full(n, self._symbols[code] if code >= 0 else "", _SYMBOL_DTYPE), np.full(n, code >= 0)
        unique, inverse = np.unique(keys, return_inverse=True)
        codes = np.fromiter((self._code(int(k)) for k in unique), np.int64, len(unique))[inverse]
        known = codes >= 0
        if len(self._symbol_array) != len(self._symbols):
            self._symbol_array = np.array(self._symbols, _SYMBOL_DTYPE)
        symbols = np.zeros(n, _SYMBOL_DTYPE)
        symbols[known] = self._symbol_array[codes[known]]
        return symbols, known

    def long_symbol(self, instrument_id: int, ts: int) -> str | None:
        """The symbol of an instrument on the day of `ts` when it is too long to hold, else None."""
        symbol = self._mapped(instrument_id, min(max(int(ts) // NS_PER_DAY, 0), 0xFFFFFFFF))
        return symbol if symbol is not None and len(symbol) > SYMBOL_WIDTH else None

    def _code(self, key: int) -> int:
        code = self._codes.get(key)
        if code is None:
            code = self._lookup(key >> 32, key & 0xFFFFFFFF)
            self._codes[key] = code
        return code

    def _mapped(self, instrument_id: int, day: int) -> str | None:
        """The symbol an instrument is mapped to on `day`, None when it has no mapping then."""
        intervals = self._intervals.get(instrument_id, [])
        pos = bisect.bisect_right(intervals, (day, float("inf"), "")) - 1
        return None if pos < 0 or day >= intervals[pos][1] else intervals[pos][2]

    def _lookup(self, instrument_id: int, day: int) -> int:
        symbol = self._mapped(instrument_id, day)
        if symbol is None:
            return -1
        if len(symbol) > SYMBOL_WIDTH:
            return TOO_LONG
        if symbol not in self._symbol_codes:
            self._symbol_codes[symbol] = len(self._symbols)
            self._symbols.append(symbol)
        return self._symbol_codes[symbol]


def _day(value: dt.date | str) -> int:
    date = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    return (date - _EPOCH).days


def _mapping_pair(symbol_in: str, stype_in: SType | None, symbol_out: str,
                  stype_out: SType | None) -> tuple[str, int]:
    """(symbol, instrument_id) from one metadata mapping, whichever side is the instrument id."""
    if stype_in == SType.INSTRUMENT_ID:
        return str(symbol_out), int(symbol_in)
    if stype_out == SType.INSTRUMENT_ID:
        return str(symbol_in), int(symbol_out)
    raise ValueError(f"mapping {symbol_in!r} -> {symbol_out!r} has no instrument_id side")
