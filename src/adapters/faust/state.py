"""State records in a Faust table (RocksDB-backed, with a changelog topic), as versioned bytes."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import numpy as np

from domain.state import StateSchema


class FaustTableStateStore:
    """StateStore over a Faust table whose values are `StateSchema`-encoded records.

    Values are plain bytes in a documented layout (see `domain.state`), never pickles: reading a
    changelog runs no code, and a value of another format fails with an error naming it. Every save
    assigns the key again (`table[k] = v`): a value changed in place would never reach the changelog.
    """

    def __init__(self, table: MutableMapping[str, bytes], schema: StateSchema) -> None:
        self.table = table
        self.schema = schema

    def load(self, keys: Sequence[str]) -> np.ndarray:
        return self.schema.decode(keys, [self.table.get(k) for k in keys])

    def save(self, keys: Sequence[str], rows: np.ndarray) -> None:
        for key, value in zip(keys, self.schema.encode(rows)):
            self.table[key] = value
