"""Use case: one anomaly or incident with the tape around it, from wherever the records are stored."""

from __future__ import annotations

from dataclasses import dataclass, field

from application.record_ids import NotFound, resolve_record_id
from domain.incidents import Incident
from domain.model import Anomaly, Print
from domain.ports import RecordLookup

@dataclass(frozen=True, slots=True)
class Shown:
    """What `show` prints: the anomaly asked for (or the incident's peak member), its incident, the
    incident's members, and the tape around `anomaly`: the trades before it, then after it.
    `absent`: the ids of the incident's members the store does not hold (a replay's --since or
    --symbols leaves a member out of --out while its incident, grouped from the full run, keeps it)."""

    kind: str  # what the id named: "anomaly" or "incident"
    anomaly: Anomaly | None
    incident: Incident | None
    members: list[Anomaly] = field(default_factory=list)  # the incident's, in time order
    before: tuple[Print, ...] = ()
    after: tuple[Print, ...] | None = None  # None: not known (its incident has not closed, or was not stored)
    absent: tuple[str, ...] = ()


class ShowRecord:
    def __init__(self, lookup: RecordLookup) -> None:
        self.lookup = lookup

    def __call__(self, record_id: str) -> Shown:
        """`record_id`: a whole id, or the start of one (at least 8 hex digits) that no other stored id has."""
        record_id = resolve_record_id(record_id, self.lookup)
        found = self.lookup.anomalies([record_id])
        if found:
            anomaly = found[0]
            incident = self.lookup.incident_of(anomaly.id)
            members = self._members(incident) if incident is not None else [anomaly]
            return Shown("anomaly", anomaly, incident, members, anomaly.context, self._after(incident, anomaly.id),
                         _absent(incident, members))
        incident = self.lookup.incident(record_id)
        if incident is None:
            raise NotFound(f"no anomaly or incident has id {record_id!r}")
        members = self._members(incident)
        # The tape of an incident: around its peak member when its context is known, else its first.
        peak = next((m for m in sorted(members, key=lambda m: (-m.score, m.ts_event)) if m.id in incident.after),
                    members[0] if members else None)
        before = peak.context if peak is not None else incident.before
        return Shown("incident", peak, incident, members, before, self._after(incident, peak.id if peak else ""),
                     _absent(incident, members))

    def _members(self, incident: Incident) -> list[Anomaly]:
        return sorted(self.lookup.anomalies(list(incident.members)), key=lambda a: (a.ts_event, a.detector))

    @staticmethod
    def _after(incident: Incident | None, anomaly_id: str) -> tuple[Print, ...] | None:
        if incident is None or anomaly_id not in incident.after:
            return None
        return incident.after[anomaly_id]


def _absent(incident: Incident | None, members: list[Anomaly]) -> tuple[str, ...]:
    found = {m.id for m in members}
    return tuple(m for m in incident.members if m not in found) if incident is not None else ()
