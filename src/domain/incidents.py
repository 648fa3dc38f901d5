"""Incidents: a symbol's anomalies close in time (whichever detectors raised them) as one event.

Three alerts within 150 ms about one print (a block trade that is also a burst and a jointly unusual
trade) are one thing to look at. An incident is the chain of a symbol's anomalies each within
`gap_ns` of the next; it carries its members, its peak score and the peak member's reason as its
headline, and its id is derived from its earliest member, so the same anomalies always give the
same incidents, however the stream was cut.

Anomalies of one symbol can be reported out of time order: a rate episode is reported at the
first print of its symbol once its peak is known, which is at most `lateness_ns` after the print
it is anchored at, or later if the symbol does not trade meanwhile. So an incident is only closed
once its symbol's own clock (the event time of its last trade seen) is past the incident's end by
`gap_ns + lateness_ns`: every episode anchored early enough to join it has been reported by then.
Until then it stays open (a symbol that stops trading keeps its last incident open until it trades
again, or `flush`), and a late anomaly can join two open chains into one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.model import Anomaly, severity_for

MAX_MEMBERS = 100  # member ids an incident lists (`size` counts them all)


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    symbol: str
    start_ns: int
    end_ns: int
    size: int  # anomalies in it
    members: tuple[str, ...]  # their ids, in time order (the first MAX_MEMBERS)
    detectors: tuple[str, ...]
    score: float  # the peak member's
    severity: str
    headline: str  # "<detector>: <reason>" of the peak member
    session: str = ""  # of its start
    ts_local: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "symbol": self.symbol, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "size": self.size, "members": list(self.members), "detectors": list(self.detectors),
                "score": self.score, "severity": self.severity, "headline": self.headline,
                "session": self.session, "ts_local": self.ts_local}


def incident_id(symbol: str, first_member: str) -> str:
    return hashlib.blake2b(f"incident|{symbol}|{first_member}".encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class _Chain:
    start: int
    end: int
    members: list[Anomaly] = field(default_factory=list)


class IncidentGrouper:
    """Groups anomalies into incidents per symbol; `advance(clocks)` returns the incidents closed by
    then, `flush()` the rest (the end of a replay)."""

    def __init__(self, gap_ns: int = 120_000_000_000, lateness_ns: int = 60_000_000_000) -> None:
        self.gap_ns = gap_ns
        self.lateness_ns = lateness_ns
        self._open: dict[str, list[_Chain]] = {}

    def add(self, anomalies: list[Anomaly]) -> None:
        for a in anomalies:
            chains = self._open.setdefault(a.symbol, [])
            near = [c for c in chains if c.start - self.gap_ns <= a.ts_event <= c.end + self.gap_ns]
            joined = _Chain(a.ts_event, a.ts_event, [a])
            for c in near:  # one anomaly can bridge two chains
                chains.remove(c)
                joined = _Chain(min(joined.start, c.start), max(joined.end, c.end), joined.members + c.members)
            chains.append(joined)

    def advance(self, clocks: Mapping[str, int]) -> list[Incident]:
        """`clocks`: symbol -> event time of its last trade seen (symbols that did not trade can be
        left out)."""
        closed: list[Incident] = []
        for symbol in [s for s in self._open if s in clocks]:
            chains = self._open[symbol]
            done = [c for c in chains if clocks[symbol] > c.end + self.gap_ns + self.lateness_ns]
            for c in done:
                chains.remove(c)
                closed.append(_incident(symbol, c))
            if not chains:
                del self._open[symbol]
        return sorted(closed, key=lambda i: (i.start_ns, i.symbol))

    def flush(self) -> list[Incident]:
        closed = [_incident(symbol, c) for symbol, chains in self._open.items() for c in chains]
        self._open.clear()
        return sorted(closed, key=lambda i: (i.start_ns, i.symbol))

    def open_anomalies(self) -> int:
        return sum(len(c.members) for chains in self._open.values() for c in chains)


def _incident(symbol: str, chain: _Chain) -> Incident:
    members = sorted({a.id: a for a in chain.members}.values(), key=lambda a: (a.ts_event, a.detector, a.id))
    peak = max(members, key=lambda a: (a.score, -a.ts_event, a.id))
    first = members[0]
    return Incident(id=incident_id(symbol, first.id), symbol=symbol, start_ns=first.ts_event,
                    end_ns=members[-1].ts_event, size=len(members),
                    members=tuple(a.id for a in members[:MAX_MEMBERS]),
                    detectors=tuple(sorted({a.detector for a in members})), score=peak.score,
                    severity=severity_for(peak.score), headline=f"{peak.detector}: {peak.reason}",
                    session=first.session, ts_local=first.ts_local)
