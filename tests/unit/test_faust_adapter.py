"""The Faust adapter's pure parts: table-backed state and partition grouping."""

from __future__ import annotations

from types import SimpleNamespace

from builders import calm_flow

from adapters.faust.app import by_partition
from adapters.faust.state import FaustTableStateStore
from domain.detectors import default_detectors
from domain.engine import DetectionEngine


class WriteTrackingDict(dict):
    """Counts assignments: Faust only changelogs values that are assigned again."""

    writes = 0

    def __setitem__(self, key, value):  # type: ignore[no-untyped-def]
        type(self).writes += 1
        super().__setitem__(key, value)


def test_state_round_trips_through_the_table_and_every_put_is_an_assignment() -> None:
    engine = DetectionEngine(default_detectors())
    result = engine.detect(calm_flow(3_000), {})
    table = WriteTrackingDict()
    store = FaustTableStateStore(table)
    store.put_many(result.states)
    assert WriteTrackingDict.writes == 1 and isinstance(table["ACME"], bytes)
    loaded = store.get_many(["ACME", "NOPE"])
    assert set(loaded) == {"ACME"}
    again = engine.detect(calm_flow(3_000, start=int(calm_flow(3_000)["ts_event"][-1]) + 1, seed=2), loaded)
    assert again.states["ACME"].trades == 6_000


def test_events_are_grouped_by_partition_in_offset_order() -> None:
    events = [SimpleNamespace(message=SimpleNamespace(partition=p, offset=o))
              for p, o in [(1, 10), (0, 5), (1, 11), (0, 6), (2, 1)]]
    groups = by_partition(events)
    assert [(p, [e.message.offset for e in g]) for p, g in groups] == [(0, [5, 6]), (1, [10, 11]), (2, [1])]
