"""State records in memory: one growing array of rows and a key index."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np

from domain.state import StateSchema, put_rows, take_rows


class InMemoryStateStore:
    """StateStore over a numpy array: loading and saving a batch's rows is one gather and one scatter."""

    def __init__(self, schema: StateSchema) -> None:
        self.schema = schema
        self.index: dict[str, int] = {}
        self.rows = schema.initial(0)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: object) -> bool:
        return key in self.index

    def load(self, keys: Sequence[str]) -> np.ndarray:
        at = np.fromiter(map(self.index.get, keys, repeat(-1)), np.int64, len(keys))
        if not len(self.rows):
            return self.schema.initial(len(keys))
        rows = take_rows(self.rows, np.maximum(at, 0))
        missing = at < 0
        if missing.any():
            rows[missing] = self.schema.initial_row
        return rows

    def save(self, keys: Sequence[str], rows: np.ndarray) -> None:
        index = self.index
        # Known keys are looked up in C (no Python call per key); only new ones get a row here.
        at = np.fromiter(map(index.get, keys, repeat(-1)), np.int64, len(keys))
        for j in np.flatnonzero(at < 0).tolist():
            at[j] = index.setdefault(keys[j], len(index))
        if len(index) > len(self.rows):
            grown = self.schema.initial(max(len(index), 2 * len(self.rows)))
            grown[:len(self.rows)] = self.rows
            self.rows = grown
        put_rows(self.rows, at, rows)

    def get(self, key: str) -> np.ndarray | None:
        """One key's row (a copy), or None if never saved."""
        at = self.index.get(key)
        return None if at is None else self.rows[at:at + 1].copy()


class InMemoryBlobStore:
    """BlobStore over a dict."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def load(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.values.get(k) for k in keys]

    def save(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        for key, value in zip(keys, values):
            if value:
                self.values[key] = value
            else:
                self.values.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self.values)
