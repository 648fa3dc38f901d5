"""State records in a Faust table (RocksDB-backed, with a changelog topic), as versioned bytes."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

import numpy as np
from faust.streams import current_event
from faust.types import TP
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

    `batched` (the worker's): the values of the partitions being processed are kept in memory, as
    the bytes the changelog carries, and a save stays there until the take commits. A save goes to
    `unsent`, which the worker writes to the changelog as one record batch per partition and take
    (`adapters.faust.outputs.write_changelog`): a changelog message per symbol and take, sent one by
    one through Faust's producer buffer, was measured to cost more than detection itself. The
    table's local store (RocksDB) is written later, a partition at a time (`store_partition`): each
    write holds that partition's committed values with the changelog offset they reach, so a restart
    or a reassignment recovers from that offset onwards. Reading and writing every touched symbol's
    record in RocksDB per take was measured at a fifth of a streaming worker's time. Without
    `batched`, every save assigns the table key (`table[k] = v`) and Faust sends the changelog record.

    The partition is the current event's (the worker acts as an event of the partition it
    processes). A take that does not commit a partition (revoked meanwhile) leaves nothing of it:
    `take_committed` forgets what it saved there, and `forget` drops a revoked partition's values
    (its next owner, maybe this worker again, recovers them from the changelog).
    """

    def __init__(self, table: MutableMapping[str, bytes], schema: StateSchema | RawValues,
                 batched: bool = False) -> None:
        self.table = table
        self.schema: Any = schema  # StateSchema (records) or RawValues (FaustTableBlobStore)
        self.unsent: dict[str, bytes] | None = {} if batched else None
        self._key_bytes: dict[str, bytes] = {}
        # batched, per partition: values as of the last commit (None: not in the table), values the
        # take in hand saved, committed keys not yet in the local store, and changelog offsets (the
        # last record written by the take in hand; the last committed one not yet in the local store).
        self._committed: dict[int, dict[str, bytes | None]] = {}
        self._in_take: dict[int, dict[str, bytes]] = {}
        self._unstored: dict[int, set[str]] = {}
        self._take_offset: dict[int, int] = {}
        self._commit_offset: dict[int, int] = {}

    def load(self, keys: Sequence[str]) -> np.ndarray:
        partition = self._partition()
        if partition is None or self.unsent is None:
            return self.schema.decode(keys, self._read(keys, partition))
        committed = self._committed.setdefault(partition, {})
        in_take = self._in_take.get(partition, {})
        values = [in_take.get(k, committed.get(k, _UNKNOWN)) for k in keys]
        missing = [i for i, v in enumerate(values) if v is _UNKNOWN]
        if missing:
            read = self._read([keys[i] for i in missing], partition)
            for i, value in zip(missing, read):
                values[i] = committed[keys[i]] = value
        return self.schema.decode(keys, values)

    def save(self, keys: Sequence[str], rows: np.ndarray) -> None:
        values = self.schema.encode(rows)
        if self.unsent is None:
            for key, value in zip(keys, values):
                self.table[key] = value
            return
        self.unsent.update(zip(keys, values))
        partition = self._partition()
        if partition is None:
            raise RuntimeError("a batched table store saves only while acting as an event of a partition")
        self._in_take.setdefault(partition, {}).update(zip(keys, values))

    def changelog_written(self, partition: int, offset: int) -> None:
        """The take in hand's changelog records of `partition` reach `offset` (delivered)."""
        self._take_offset[partition] = max(offset, self._take_offset.get(partition, -1))

    def take_committed(self, partitions: set[int]) -> None:
        """The take in hand committed `partitions`: what it saved there is the committed state now.
        What it saved in any other partition (revoked before its commit) is forgotten with it."""
        for partition in list(self._in_take.keys() | self._take_offset.keys()):
            if partition not in partitions:
                self.forget([partition])
                continue
            saved = self._in_take.pop(partition, {})
            self._committed.setdefault(partition, {}).update(saved)
            self._unstored.setdefault(partition, set()).update(saved)
            if partition in self._take_offset:
                self._commit_offset[partition] = self._take_offset.pop(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop everything held of `partitions` (revoked): the local store and the changelog have it."""
        for partition in partitions:
            for held in (self._committed, self._in_take, self._unstored, self._take_offset, self._commit_offset):
                held.pop(partition, None)

    def unstored_partitions(self) -> list[int]:
        """Partitions with committed values or changelog offsets not yet in the local store."""
        return sorted({p for p, keys in self._unstored.items() if keys} | self._commit_offset.keys())

    def store_partition(self, partition: int, changelog_topic: str) -> int:
        """Write `partition`'s committed values not yet in the local store there, with the changelog
        offset they reach (what recovery resumes after), in one atomic write. Returns how many keys it wrote."""
        keys = sorted(self._unstored.pop(partition, set()))
        offset = self._commit_offset.pop(partition, None)
        committed = self._committed.get(partition, {})
        values = [(k, committed[k]) for k in keys if committed.get(k) is not None]
        store: Any = self.table.data  # type: ignore[attr-defined]  # the table's local store
        db = self._local_db(partition)
        if db is None:
            for key, value in values:
                store[key] = value
            if offset is not None:
                store.set_persisted_offset(TP(changelog_topic, partition), offset)
            return len(values)
        batch = WriteBatch(raw_mode=True)
        for key, value in values:
            batch.put(self._encoded(store, key), value)
        if offset is not None:
            batch.put(store.offset_key, str(offset).encode())
        db.write(batch)
        return len(values)

    def drain_serialized(self) -> dict[bytes, bytes]:
        """`drain()`, keys and values serialized as the table's changelog carries them (what its
        recovery reads back)."""
        store: Any = self.table.data  # type: ignore[attr-defined]
        raw = getattr(self.table, "value_serializer", None) == "raw"
        return {self._encoded(store, k): v if raw else store._encode_value(v) for k, v in self.drain().items()}

    def _read(self, keys: Sequence[str], partition: int | None) -> list[bytes | None]:
        """`keys`' values in the table's local store (`partition`'s RocksDB when known)."""
        db = self._local_db(partition) if partition is not None else None
        if db is None:
            return [self.table.get(k) for k in keys]
        return db.get([self._encoded(self.table.data, k) for k in keys])  # type: ignore[attr-defined]

    @staticmethod
    def _partition() -> int | None:
        event = current_event()
        return None if event is None else int(event.message.partition)

    def _local_db(self, partition: int) -> Any | None:
        """The RocksDB of `partition` (as Faust's own store picks it), when the table keeps raw values
        in Faust's rocksdict store: a batch's keys read or written there at once skip Faust's per-key
        layers (measured at about 25 us a key)."""
        store = getattr(self.table, "data", None)
        if not getattr(store, "use_rocksdict", False) or getattr(self.table, "value_serializer", None) != "raw":
            return None
        return store._db_for_partition(partition)  # type: ignore[union-attr]

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


_UNKNOWN: Any = object()  # a key not held in memory: read it from the local store


class FaustTableBlobStore(FaustTableStateStore):
    """BlobStore over a Faust table of opaque byte values (same local-store and changelog batching)."""

    def __init__(self, table: MutableMapping[str, bytes], batched: bool = False) -> None:
        super().__init__(table, RawValues(), batched)

    def load(self, keys: Sequence[str]) -> list[bytes | None]:  # type: ignore[override]
        return super().load(keys)  # type: ignore[return-value]

    def save(self, keys: Sequence[str], values: Sequence[bytes]) -> None:  # type: ignore[override]
        super().save(keys, values)  # type: ignore[arg-type]
