"""The dead letters the Databento file readers produce, with their reason codes in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk
from domain.validation import dead_letter_for, invalid_rows

BAD_ROW = "bad_row"
BAD_FILE = "bad_file"
UNKNOWN_INSTRUMENT = "unknown_instrument"


# Where in a file a dead letter comes from, as a user reads it: both counted from 1, and named, so a
# DBN record number is never taken for a line or counted from 0 (`x.csv, line 2`: the first data row
# under the header; `x.dbn, record 1`: the file's first record, counting every record it holds).

def line(number: int | str) -> str:
    """A CSV's physical line, 1-based: the header is line 1 ("?" when the parser could not say)."""
    return f"line {number}"


def record(index: int) -> str:
    """A DBN record given by its 0-based index in the file, as the 1-based position users read."""
    return f"record {index + 1}"


def origin(path: Path | str, where: str) -> str:
    return f"{path}, {where}"


def bad_row(path: Path, where: str, detail: str, raw: bytes = b"", place: int = -1) -> DeadLetter:
    """`where`: line(n) or record(i); `place`: the same as a number, as the trades' places (-1: unknown)."""
    return DeadLetter(reason=BAD_ROW, detail=detail, origin=origin(path, where), raw=raw, place=place)


def unknown_instrument(path: Path, record_index: int, instrument_id: int, ts: int) -> DeadLetter:
    day = np.datetime64(int(ts), "ns").astype("datetime64[D]")
    return DeadLetter(reason=UNKNOWN_INSTRUMENT,
                      detail=f"instrument_id {instrument_id} has no symbol mapping on {day}",
                      origin=origin(path, record(record_index)), place=record_index)


def bad_file(path: Path, where: str, error: BaseException | str) -> DeadLetter:
    """The rest of a file from `where` (line(n), record(i), "the start") on could not be read."""
    cause = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return DeadLetter(reason=BAD_FILE, detail=f"unreadable from {where} on: {printable(cause)}", origin=str(path),
                      records=0)


def printable(text: str, limit: int = 200) -> str:
    """`text` fit for one line of a terminal: control characters escaped, cut at `limit` characters
    (a parser's message can quote a whole line of whatever the file holds)."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if len(out) <= limit else out[:limit] + "..."


def letters_only(*letters: DeadLetter) -> SourceChunk:
    return SourceChunk(np.empty(0, TRADE_DTYPE), list(letters))


def refused_by_checks(trades: np.ndarray, path: Path, places: np.ndarray, where: Callable[[int], str],
                      raw: Callable[[int], bytes] | None = None
                      ) -> tuple[SourceChunk, list[tuple[int, DeadLetter]]]:
    """The engine's own record checks (domain.validation: no symbol, bad timestamp, price or size),
    made while each trade's place in its file is known (`places`: per row, the number `where` names:
    line or record): the chunk of trades that pass, with their places, and (row, dead letter) for
    each that does not, the letter saying where it is and, with `raw`, holding the row as it stood.
    The engine makes the same checks on whatever reaches it, but once several files are merged it
    can only quote the values."""
    bad, reasons = invalid_rows(trades)
    if not len(bad):
        return SourceChunk(trades, places=places), []
    refused = [(row, replace(dead_letter_for(trades[row], reason), origin=origin(path, where(place)),
                             raw=raw(row) if raw is not None else b"", place=place))
               for row, reason, place in zip(bad.tolist(), reasons, places[bad].tolist())]
    return SourceChunk(np.delete(trades, bad), places=np.delete(places, bad)), refused
