"""The dead letters the Databento file readers produce, with their reason codes in one place."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk

BAD_ROW = "bad_row"
BAD_FILE = "bad_file"
UNKNOWN_INSTRUMENT = "unknown_instrument"


def bad_row(path: Path, position: int | str, detail: str, raw: bytes = b"") -> DeadLetter:
    return DeadLetter(reason=BAD_ROW, detail=detail, origin=f"{path}:{position}", raw=raw)


def unknown_instrument(path: Path, record_index: int, instrument_id: int, ts: int) -> DeadLetter:
    day = np.datetime64(int(ts), "ns").astype("datetime64[D]")
    return DeadLetter(reason=UNKNOWN_INSTRUMENT,
                      detail=f"instrument_id {instrument_id} has no symbol mapping on {day}",
                      origin=f"{path}:{record_index}")


def bad_file(path: Path, where: str, error: BaseException | str) -> DeadLetter:
    """The rest of a file from `where` on could not be read."""
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
