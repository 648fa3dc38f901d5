"""State as fixed-size numpy records (one per symbol, one per model pool) and their versioned bytes.

A record is plain numbers in a documented layout, so a batch of states is one structured array the
compiled kernels update in place, and its encoding is the record's bytes behind a small header:

    magic b"SAST" | format u16 | layout u32 (CRC-32 of the record layout) | kind u8 | record bytes

Decoding never runs code (unlike pickle, which the first release used for table values), and a value
written under another format or layout fails with one error that says which.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from domain.errors import DomainError

MAGIC = b"SAST"
FORMAT = 2  # 1: the pickled objects of stockanomaly 0.1; 2: this record layout
HEADER = struct.Struct("<4sHIB")
KINDS = {"symbol": 1, "pool": 2, "tape": 3}
_PICKLE_PROTOCOL_MARK = 0x80


def _raw(rows: np.ndarray) -> np.ndarray:
    """Contiguous records as a (rows, record bytes) uint8 matrix: numpy copies structured records
    field by field, several times slower than moving their bytes."""
    return rows.view(np.uint8).reshape(len(rows), rows.dtype.itemsize)


def copy_rows(rows: np.ndarray) -> np.ndarray:
    """A contiguous copy of records."""
    return _raw(np.ascontiguousarray(rows)).copy().view(rows.dtype).reshape(len(rows))


def take_rows(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """rows[index] for contiguous records."""
    return _raw(rows)[index].view(rows.dtype).reshape(len(index))


def put_rows(target: np.ndarray, index: np.ndarray, rows: np.ndarray) -> None:
    """target[index] = rows for contiguous records."""
    _raw(target)[index] = _raw(np.ascontiguousarray(rows))


@functools.lru_cache(maxsize=64)
def _layout(dtype: np.dtype) -> int:
    # Once per layout: every state value read or written carries it in its header.
    return zlib.crc32(repr(dtype.descr).encode())


class StateFormatError(DomainError):
    """A stored state this release cannot read; the message names the format it was written in."""


@dataclass(frozen=True, slots=True)
class StateSchema:
    """The record layout of one kind of state and its initial value."""

    kind: str
    initial_row: np.ndarray  # shape (1,), the state of a key never seen

    @classmethod
    def of(cls, kind: str, parts: Sequence[tuple[str, np.ndarray]]) -> StateSchema:
        """Compose named sub-records (each a shape-(1,) structured initial value) into one layout."""
        dtype = np.dtype([(name, initial.dtype) for name, initial in parts])
        row = np.zeros(1, dtype)
        for name, initial in parts:
            row[name] = initial
        return cls(kind, row)

    @property
    def dtype(self) -> np.dtype:
        return self.initial_row.dtype

    @property
    def record_bytes(self) -> int:
        return int(self.dtype.itemsize)

    @property
    def layout(self) -> int:
        """CRC-32 of the layout's field names, types and shapes: changes whenever a field does."""
        return _layout(self.dtype)

    def initial(self, n: int) -> np.ndarray:
        return np.repeat(self.initial_row, n)

    def header(self) -> bytes:
        return HEADER.pack(MAGIC, FORMAT, self.layout, KINDS[self.kind])

    def encode(self, rows: np.ndarray) -> list[bytes]:
        """One value per row: header + the record's bytes."""
        if rows.dtype != self.dtype:
            raise TypeError(f"rows are {rows.dtype}, not this {self.kind} state layout")
        head, size = self.header(), self.record_bytes
        body = np.ascontiguousarray(rows).tobytes()
        return [head + body[i * size:(i + 1) * size] for i in range(len(rows))]

    def decode(self, keys: Sequence[str], values: Sequence[bytes | None]) -> np.ndarray:
        """Rows for `values` (None: the initial state); StateFormatError names what cannot be read."""
        rows = self.initial(len(values))
        present = [i for i, v in enumerate(values) if v is not None]
        if not present:
            return rows
        head, width = self.header(), HEADER.size + self.record_bytes
        for i in present:
            if len(values[i] or b"") != width:
                raise StateFormatError(self._describe_mismatch(keys[i], bytes(values[i] or b"")))
        # All the right length: one matrix of them, headers checked at once, bodies moved as bytes.
        stored = np.frombuffer(b"".join(values[i] or b"" for i in present), np.uint8).reshape(len(present), width)
        wrong = np.flatnonzero((stored[:, :HEADER.size] != np.frombuffer(head, np.uint8)).any(axis=1))
        if len(wrong):
            i = present[int(wrong[0])]
            raise StateFormatError(self._describe_mismatch(keys[i], bytes(values[i] or b"")))
        _raw(rows)[present] = stored[:, HEADER.size:]
        return rows

    def _describe_mismatch(self, key: str, value: bytes) -> str:
        wanted = f"this release reads {self.kind} state format {FORMAT} (layout {self.layout:08x})"
        if value[:1] and value[0] == _PICKLE_PROTOCOL_MARK:
            written = "state format 1 (a pickled object, stockanomaly 0.1)"
        elif len(value) >= HEADER.size and value[:4] == MAGIC:
            _, fmt, layout, kind = HEADER.unpack(value[:HEADER.size])
            kind_name = next((k for k, v in KINDS.items() if v == kind), f"kind {kind}")
            written = f"{kind_name} state format {fmt} (layout {layout:08x}, {len(value) - HEADER.size} bytes)"
        else:
            written = f"{len(value)} bytes in no known state format"
        return (f"state of {key!r} was written as {written}; {wanted}. Replay the history into a fresh state "
                f"store (a new STOCKANOMALY_APP_ID, or delete the state table's changelog) to rebuild it")
