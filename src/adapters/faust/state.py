"""State records in a Faust table (RocksDB-backed, with a changelog topic), as versioned bytes."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np
from faust.streams import current_event
from rocksdict import WriteBatch

from domain.state import StateSchema


class RawValues:
    """What FaustTableStateStore stores when the values are opaque bytes (a BlobStore: a symbol's
    open incidents): kept as they are, a key never written read as None."""

    @staticmethod
    def decode(keys: Sequence[str], values: Sequence[bytes | None]) -> list[bytes | None]:
        return list(values)

    @staticmethod
    def encode(values: Sequence[bytes]) -> list[bytes]:
        return list(values)


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

    def __init__(self, table: MutableMapping[str, bytes], schema: StateSchema | RawValues,
                 batched: bool = False) -> None:
        self.table = table
        self.schema: Any = schema  # StateSchema (records) or RawValues (FaustTableBlobStore)
        self.unsent: dict[str, bytes] | None = {} if batched else None
        self._key_bytes: dict[str, bytes] = {}

    def load(self, keys: Sequence[str]) -> np.ndarray:
        local = self._local_db()
        if local is None:
            return self.schema.decode(keys, [self.table.get(k) for k in keys])
        db, store = local
        return self.schema.decode(keys, db.get([self._encoded(store, k) for k in keys]))

    def save(self, keys: Sequence[str], rows: np.ndarray) -> None:
        if self.unsent is None:
            for key, value in zip(keys, self.schema.encode(rows)):
                self.table[key] = value
            return
        values = self.schema.encode(rows)
        self.unsent.update(zip(keys, values))
        local = self._local_db()
        if local is None:
            store: Any = self.table.data  # type: ignore[attr-defined]  # the table's local store
            for key, value in zip(keys, values):
                store[key] = value
            return
        db, store = local
        batch = WriteBatch(raw_mode=True)
        for key, value in zip(keys, values):
            batch.put(self._encoded(store, key), value)
        db.write(batch)

    def drain_serialized(self) -> dict[bytes, bytes]:
        """`drain()`, keys and values serialized as the table's changelog carries them (what its
        recovery reads back)."""
        store: Any = self.table.data  # type: ignore[attr-defined]
        raw = getattr(self.table, "value_serializer", None) == "raw"
        return {self._encoded(store, k): v if raw else store._encode_value(v) for k, v in self.drain().items()}

    def _local_db(self) -> tuple[Any, Any] | None:
        """The RocksDB of the partition being processed (the current event's, as Faust's own store
        picks it) and the table's store, when the table keeps raw values in Faust's rocksdict store.
        Reading and writing a batch's keys there at once skips Faust's per-key layers, measured at
        about 25 us a key (a quarter of a streaming take's time at 125 symbols a partition)."""
        store = getattr(self.table, "data", None)
        event = current_event()
        if (event is None or not getattr(store, "use_rocksdict", False)
                or getattr(self.table, "value_serializer", None) != "raw"):
            return None
        return store._db_for_partition(event.message.partition), store  # type: ignore[union-attr]

    def _encoded(self, store: Any, key: str) -> bytes:
        """The key as the table's store writes it (its key serializer), remembered per key."""
        encoded = self._key_bytes.get(key)
        if encoded is None:
            encoded = self._key_bytes[key] = store._encode_key(key)
        return encoded

    def drain(self) -> dict[str, bytes]:
        """The records saved since the last drain (each key's latest), to be written to the changelog."""
        if self.unsent is None:
            return {}
        unsent, self.unsent = self.unsent, {}
        return unsent


class FaustTableBlobStore(FaustTableStateStore):
    """BlobStore over a Faust table of opaque byte values (same local-store and changelog batching)."""

    def __init__(self, table: MutableMapping[str, bytes], batched: bool = False) -> None:
        super().__init__(table, RawValues(), batched)

    def load(self, keys: Sequence[str]) -> list[bytes | None]:  # type: ignore[override]
        return super().load(keys)  # type: ignore[return-value]

    def save(self, keys: Sequence[str], values: Sequence[bytes]) -> None:  # type: ignore[override]
        super().save(keys, values)  # type: ignore[arg-type]
