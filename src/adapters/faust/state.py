"""State records in a Faust table (RocksDB-backed, with a changelog topic), as versioned bytes."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np

from domain.state import StateSchema


class FaustTableStateStore:
    """StateStore over a Faust table whose values are `StateSchema`-encoded records.

    Values are plain bytes in a documented layout (see `domain.state`), never pickles: reading a
    changelog runs no code, and a value of another format fails with an error naming it.

    `batched`: a save goes to the table's local store at once and is kept in `unsent` until the
    worker writes the take's changes to the changelog as one record batch per partition
    (`adapters.faust.outputs.write_changelog`): a changelog message per symbol and take, sent one by
    one through Faust's producer buffer, was measured to cost more than detection itself. Without
    it, every save assigns the table key (`table[k] = v`) and Faust sends the changelog record.
    """

    def __init__(self, table: MutableMapping[str, bytes], schema: StateSchema, batched: bool = False) -> None:
        self.table = table
        self.schema = schema
        self.unsent: dict[str, bytes] | None = {} if batched else None

    def load(self, keys: Sequence[str]) -> np.ndarray:
        return self.schema.decode(keys, [self.table.get(k) for k in keys])

    def save(self, keys: Sequence[str], rows: np.ndarray) -> None:
        if self.unsent is None:
            for key, value in zip(keys, self.schema.encode(rows)):
                self.table[key] = value
            return
        store: Any = self.table.data  # type: ignore[attr-defined]  # the table's local store (RocksDB)
        for key, value in zip(keys, self.schema.encode(rows)):
            store[key] = value
            self.unsent[key] = value

    def drain(self) -> dict[str, bytes]:
        """The records saved since the last drain (each key's latest), to be written to the changelog."""
        if self.unsent is None:
            return {}
        unsent, self.unsent = self.unsent, {}
        return unsent
