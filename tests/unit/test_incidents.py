"""Incidents: a symbol's anomalies chained within the gap are one incident, the same however the
anomalies were batched or (within the lateness bound) ordered."""

from __future__ import annotations

import numpy as np
import pytest
from builders import S, T0

from domain.incidents import IncidentGrouper, incident_id
from domain.model import Anomaly

GAP, LATE = 120 * S, 60 * S


def anomaly(symbol: str, at_s: float, detector: str = "high_volume", score: float = 1.5) -> Anomaly:
    ts = T0 + int(at_s * S)
    return Anomaly.of_print(detector, symbol, ts, 100.0, 100, 1, 1, ts, score, f"{detector} at {at_s}s")


def test_anomalies_within_the_gap_of_each_other_are_one_incident_headed_by_the_peak() -> None:
    grouper = IncidentGrouper(GAP, LATE)
    members = [anomaly("ACME", 0.0), anomaly("ACME", 0.15, "trade_burst", 4.2), anomaly("ACME", 100.0, "volume_surge")]
    grouper.add(members + [anomaly("ACME", 500.0), anomaly("OTHER", 50.0)])
    incidents = grouper.flush()
    assert [(i.symbol, i.size) for i in incidents] == [("ACME", 3), ("OTHER", 1), ("ACME", 1)]
    first = incidents[0]
    assert first.members == tuple(a.id for a in members)
    assert first.id == incident_id("ACME", members[0].id)
    assert (first.start_ns, first.end_ns) == (members[0].ts_event, members[2].ts_event)
    assert first.score == 4.2 and first.severity == "high"
    assert first.headline == "trade_burst: trade_burst at 0.15s"
    assert first.detectors == ("high_volume", "trade_burst", "volume_surge")


def test_an_incident_closes_only_once_no_late_report_can_still_join_it() -> None:
    grouper = IncidentGrouper(GAP, LATE)
    grouper.add([anomaly("ACME", 0.0)])
    assert grouper.advance({"ACME": T0 + GAP + LATE}) == []  # a report anchored up to GAP later may still come
    assert grouper.advance({"OTHER": T0 + 3_600 * S}) == []  # another symbol's clock says nothing of ACME's
    late = anomaly("ACME", 110.0)  # anchored 110 s in, reported at 170 s (within the lateness bound)
    grouper.add([late])
    assert grouper.advance({"ACME": T0 + 170 * S}) == []
    closed = grouper.advance({"ACME": T0 + 110 * S + GAP + LATE + 1})
    assert [i.size for i in closed] == [2]
    assert grouper.open_anomalies() == 0


def test_incidents_are_the_same_however_reports_were_batched_and_ordered() -> None:
    """Anomalies reported up to LATE after their time, in random batches, with the clock advanced
    after each: the same incidents (ids, members) as all of them grouped at once. A late report
    that bridges two chains merges them."""
    rng = np.random.default_rng(5)
    times = np.sort(rng.uniform(0, 3_600, 300))
    everything = [anomaly(str(rng.choice(["ACME", "BOLT", "CRUX"])), float(t), str(rng.choice(["a", "b", "c"])))
                  for t in times]
    reported_at = np.array([a.ts_event for a in everything]) + rng.integers(0, LATE, len(everything))
    at_once = IncidentGrouper(GAP, LATE)
    at_once.add(everything)
    expected = {(i.id, i.members) for i in at_once.flush()}
    for seed in range(5):
        cuts = np.sort(np.random.default_rng(seed).integers(reported_at.min(), reported_at.max(), 12))
        order = np.argsort(reported_at, kind="stable")
        grouper, found, start = IncidentGrouper(GAP, LATE), [], 0
        for clock in list(cuts) + [reported_at.max()]:
            stop = int(np.searchsorted(reported_at[order], clock, side="right"))
            grouper.add([everything[j] for j in order[start:stop]][::-1])  # any order within a batch
            found += grouper.advance({s: int(clock) for s in ("ACME", "BOLT", "CRUX")})
            start = stop
        found += grouper.flush()
        assert {(i.id, i.members) for i in found} == expected
    assert len(expected) < len(everything)  # it did group


def test_a_report_that_bridges_two_chains_merges_them() -> None:
    grouper = IncidentGrouper(GAP, LATE)
    early, later = anomaly("ACME", 0.0), anomaly("ACME", 200.0)
    grouper.add([early, later])
    bridge = anomaly("ACME", 100.0, "volume_surge")
    grouper.add([bridge])
    (incident,) = grouper.flush()
    assert incident.members == (early.id, bridge.id, later.id)
    assert incident.id == incident_id("ACME", early.id)


def test_open_incidents_survive_being_saved_and_restored_between_batches() -> None:
    """What a worker does per batch (GroupIncidents over a store) gives the incidents of one grouper
    that saw everything; stored state of another format fails with one clear error."""
    from adapters.memory import InMemoryBlobStore
    from application.incidents import GroupIncidents
    from domain.state import StateFormatError

    rng = np.random.default_rng(9)
    everything = [anomaly(str(rng.choice(["ACME", "BOLT"])), float(t)) for t in np.sort(rng.uniform(0, 1_800, 120))]
    at_once = IncidentGrouper(GAP, LATE)
    at_once.add(everything)
    expected = at_once.flush()
    store = InMemoryBlobStore()
    use_case = GroupIncidents(store, LATE, GAP)
    found = []
    for start in range(0, len(everything), 7):
        batch = everything[start:start + 7]
        found += use_case(batch, {a.symbol: a.ts_event for a in batch})
    found += use_case.flush(["ACME", "BOLT"])
    assert sorted(found, key=lambda i: i.id) == sorted(expected, key=lambda i: i.id)
    assert store.keys() == []
    store.save(["ACME"], [b'{"format": 0, "chains": []}'])
    with pytest.raises(StateFormatError, match="open incidents of ACME are not in this release's format 1"):
        use_case([], {"ACME": T0})


def test_an_open_incident_nothing_changed_is_not_written_again() -> None:
    """Per batch, only the open incidents that changed go back to the store (and a worker's changelog)."""
    from adapters.memory import InMemoryBlobStore
    from application.incidents import GroupIncidents

    class CountingStore(InMemoryBlobStore):
        def __init__(self) -> None:
            super().__init__()
            self.saved: list[list[str]] = []

        def save(self, keys, values):  # type: ignore[no-untyped-def]
            self.saved.append(list(keys))
            super().save(keys, values)

    store = CountingStore()
    use_case = GroupIncidents(store, LATE, GAP)
    assert use_case([anomaly("ACME", 0.0)], {"ACME": T0}) == []
    assert store.saved == [["ACME"]]
    stored = store.values["ACME"]
    # A later clock that closes nothing, another symbol's trades: ACME's incident is as it was.
    assert use_case([], {"ACME": T0 + 10 * S, "BOLT": T0 + 10 * S}) == []
    assert store.saved == [["ACME"]] and store.values["ACME"] == stored
    # A second anomaly joins it: written again; the gap and lateness passed: closed and removed.
    use_case([anomaly("ACME", 30.0)], {"ACME": T0 + 30 * S})
    assert store.saved[-1] == ["ACME"] and store.values["ACME"] != stored
    [closed] = use_case([], {"ACME": T0 + 400 * S})
    assert closed.size == 2 and store.saved[-1] == ["ACME"] and store.keys() == []


def test_open_incidents_a_batch_cannot_change_are_not_decoded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A symbol's stored open incidents are decoded only when the batch can change them (an anomaly
    of it, a clock that closes one, trades for a short after-context) or when the stored value is
    not the one last seen here (written by another worker before a rebalance, say)."""
    from adapters.memory import InMemoryBlobStore
    from application.incidents import GroupIncidents

    restored: list[str] = []
    restore = IncidentGrouper.restore

    def counting(self, symbol, value):  # type: ignore[no-untyped-def]
        restored.append(symbol)
        restore(self, symbol, value)

    monkeypatch.setattr(IncidentGrouper, "restore", counting)
    store = InMemoryBlobStore()
    use_case = GroupIncidents(store, LATE, GAP)
    use_case([anomaly("ACME", 0.0)], {"ACME": T0})
    assert use_case([], {"ACME": T0 + 10 * S, "BOLT": T0 + 10 * S}) == [] and restored == []

    elsewhere = IncidentGrouper(GAP, LATE)
    elsewhere.add([anomaly("ACME", 0.0), anomaly("ACME", 20.0)])
    store.save(["ACME"], [elsewhere.encoded("ACME")])
    assert use_case([], {"ACME": T0 + 30 * S}) == [] and restored == ["ACME"]  # read once, left as stored
    assert use_case([], {"ACME": T0 + 40 * S}) == [] and restored == ["ACME"]

    [closed] = use_case([], {"ACME": T0 + 400 * S})  # its gap and lateness passed: closed
    assert closed.size == 2 and restored == ["ACME", "ACME"] and store.keys() == []
