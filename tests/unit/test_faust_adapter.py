"""The Faust adapter's pure parts: partition grouping (the table store is in test_state)."""

from __future__ import annotations

from types import SimpleNamespace

from adapters.faust.app import by_partition


def test_events_are_grouped_by_partition_in_offset_order() -> None:
    events = [SimpleNamespace(message=SimpleNamespace(partition=p, offset=o))
              for p, o in [(1, 10), (0, 5), (1, 11), (0, 6), (2, 1)]]
    groups = by_partition(events)
    assert [(p, [e.message.offset for e in g]) for p, g in groups] == [(0, [5, 6]), (1, [10, 11]), (2, [1])]
