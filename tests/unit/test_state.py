"""State records: compact, encoded as versioned bytes that round-trip exactly, refused with a clear error
when written in another format (the pickles of the first release included)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from builders import calm_flow
from test_engine import Run

from adapters.faust.state import FaustTableStateStore
from domain.detectors import default_detectors
from domain.engine import DetectionEngine
from domain.state import FORMAT, HEADER, StateFormatError, StateSchema


@pytest.fixture(scope="module")
def warm() -> Run:
    run = Run()
    run(calm_flow(20_000))
    return run


def test_a_symbol_state_is_under_two_kilobytes_encoded(warm: Run) -> None:
    value = warm.engine.schema.encode(warm.states.load(["ACME"]))[0]
    assert len(value) == HEADER.size + warm.engine.schema.record_bytes <= 2048


def test_encoded_state_round_trips_exactly(warm: Run) -> None:
    schema = warm.engine.schema
    rows = warm.states.load(["ACME"])
    decoded = schema.decode(["ACME"], schema.encode(rows))
    assert decoded.tobytes() == rows.tobytes()


def test_missing_keys_decode_to_the_initial_state(warm: Run) -> None:
    schema = warm.engine.schema
    rows = schema.decode(["ACME", "NEW"], [schema.encode(warm.states.load(["ACME"]))[0], None])
    assert rows[1:].tobytes() == schema.initial_row.tobytes()


def test_a_pickled_state_of_the_first_release_is_refused_naming_its_format(warm: Run) -> None:
    legacy = pickle.dumps({"guard": None, "detectors": {}, "trades": 1}, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(StateFormatError,
                       match=r"'ACME'.*state format 1 \(a pickled object.*reads symbol state format 2"):
        warm.engine.schema.decode(["ACME"], [legacy])


def test_a_state_of_another_layout_is_refused_naming_both_layouts(warm: Run) -> None:
    other = StateSchema.of("symbol", [("guard", np.zeros(1, [("x", "i8")]))])
    value = other.encode(other.initial(1))[0]
    with pytest.raises(StateFormatError, match=f"layout {other.layout:08x}.*format {FORMAT} \\(layout "
                                                f"{warm.engine.schema.layout:08x}"):
        warm.engine.schema.decode(["ACME"], [value])


def test_the_layout_does_not_depend_on_which_detectors_run() -> None:
    everything = DetectionEngine(default_detectors())
    one = DetectionEngine(default_detectors(), enabled=["price_change"])
    assert one.schema.layout == everything.schema.layout


class WriteTrackingDict(dict):
    """Counts assignments: Faust only changelogs values that are assigned again."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __setitem__(self, key, value):  # type: ignore[no-untyped-def]
        self.writes += 1
        super().__setitem__(key, value)


def test_table_store_saves_bytes_by_assignment_and_resumes_the_same_state(warm: Run) -> None:
    table = WriteTrackingDict()
    store = FaustTableStateStore(table, warm.engine.schema)
    store.save(["ACME"], warm.states.load(["ACME"]))
    assert table.writes == 1 and isinstance(table["ACME"], bytes) and table["ACME"][:4] == b"SAST"
    loaded = store.load(["ACME", "NOPE"])
    assert loaded[:1].tobytes() == warm.states.load(["ACME"]).tobytes()
    assert loaded[1:].tobytes() == warm.engine.schema.initial_row.tobytes()


class RocksTable:
    """What FaustTableStateStore uses of a Faust table kept in Faust's rocksdict store: one RocksDB
    per partition (real ones, in a temporary directory), raw values, Faust's key encoding."""

    value_serializer = "raw"

    def __init__(self, path) -> None:  # type: ignore[no-untyped-def]
        import rocksdict
        from faust.stores.rocksdb import Store

        self.path, self.dbs, self.rocksdict = path, {}, rocksdict
        self.offset_key = Store.offset_key
        self.data = self

    use_rocksdict = True

    def _db_for_partition(self, partition: int):  # type: ignore[no-untyped-def]
        if partition not in self.dbs:
            self.dbs[partition] = self.rocksdict.Rdict(str(self.path / str(partition)),
                                                       options=self.rocksdict.Options(raw_mode=True))
        return self.dbs[partition]

    @staticmethod
    def _encode_key(key: str) -> bytes:
        return key.encode()

    def stored(self, partition: int, key: str | bytes) -> bytes | None:
        return self._db_for_partition(partition).get(key.encode() if isinstance(key, str) else key)


class Event:
    """What a batched store reads of Faust's current event: its message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = Event.Message(partition)

    class Message:
        def __init__(self, partition: int) -> None:
            self.partition = partition


def acting_in(partition: int):  # type: ignore[no-untyped-def]
    """A context in which the worker processes `partition` (a new one per use)."""
    from adapters.faust.app import acting_as

    event = Event(partition)
    return lambda: acting_as(event)  # keeps the event alive: Faust holds it by a weak reference


def test_the_workers_table_store_holds_a_take_in_memory_and_writes_committed_state_with_its_offset(
        warm: Run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = RocksTable(tmp_path)
    store = FaustTableStateStore(table, warm.engine.schema, batched=True)  # type: ignore[arg-type]
    acme = warm.states.load(["ACME"])
    context = acting_in(2)
    with context():
        store.save(["ACME"], acme)
        assert store.load(["ACME"]).tobytes() == acme.tobytes()  # read back within the take
    store.changelog_written(2, 41)
    assert table.stored(2, "ACME") is None  # the local store is not written per take
    assert store.drain_serialized() == {b"ACME": warm.engine.schema.encode(acme)[0]}  # the changelog is

    store.take_committed({2})
    assert store.unstored_partitions() == [2]
    assert store.store_partition(2, "app-symbol-state-changelog") == 1
    assert table.stored(2, "ACME") == warm.engine.schema.encode(acme)[0]
    assert table.stored(2, table.offset_key) == b"41"  # recovery resumes after the state it holds
    assert store.unstored_partitions() == []


def test_a_take_that_does_not_commit_a_partition_leaves_nothing_of_it(warm: Run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = RocksTable(tmp_path)
    store = FaustTableStateStore(table, warm.engine.schema, batched=True)  # type: ignore[arg-type]
    before, after = warm.states.load(["ACME"]), warm.engine.schema.initial(1)
    table._db_for_partition(1)[b"ACME"] = warm.engine.schema.encode(before)[0]  # committed, in the local store
    context = acting_in(1)
    with context():
        store.save(["ACME"], after)
    store.changelog_written(1, 7)
    store.take_committed(set())  # partition 1 was revoked before the take committed
    assert store.unstored_partitions() == []
    with context():
        assert store.load(["ACME"]).tobytes() == before.tobytes()

    with context():  # committed, then revoked before its local store was written: recovery has it
        store.save(["ACME"], after)
    store.take_committed({1})
    store.forget([1])
    assert store.unstored_partitions() == []
    with context():
        assert store.load(["ACME"]).tobytes() == before.tobytes()
