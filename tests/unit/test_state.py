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
