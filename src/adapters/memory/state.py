"""State records in memory: one growing array of rows and a key index."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from domain.state import StateSchema


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
        at = np.array([self.index.get(k, -1) for k in keys], np.int64)
        rows = self.rows[np.maximum(at, 0)] if len(self.rows) else self.schema.initial(len(keys))
        missing = at < 0
        if missing.any():
            rows[missing] = self.schema.initial_row
        return rows

    def save(self, keys: Sequence[str], rows: np.ndarray) -> None:
        at = np.array([self.index.setdefault(k, len(self.index)) for k in keys], np.int64)
        if len(self.index) > len(self.rows):
            grown = self.schema.initial(max(len(self.index), 2 * len(self.rows)))
            grown[:len(self.rows)] = self.rows
            self.rows = grown
        self.rows[at] = rows

    def get(self, key: str) -> np.ndarray | None:
        """One key's row (a copy), or None if never saved."""
        at = self.index.get(key)
        return None if at is None else self.rows[at:at + 1].copy()
