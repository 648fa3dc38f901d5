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

While it is open, an incident also collects the trades after each of its first MAX_CONTEXTS members
(domain.context): an incident closes at least `gap_ns` after its last member, later than any of
their after-contexts can still grow, so it leaves with every member's tape complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.context import CONTEXT_TRADES, BatchTape
from domain.model import Anomaly, Print, prints_from, severity_for
from domain.state import StateFormatError

# A symbol's anomalies each within 5 minutes of the next are one incident: on the real NVDA days the
# bursts of one sweep, and the surges of a busy pre-market, come minutes apart.
GAP_NS = 300_000_000_000
MAX_MEMBERS = 100  # member ids an incident lists (`size` counts them all)
MAX_CONTEXTS = 20  # members (the earliest) whose after-context an incident collects


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
    before: tuple[Print, ...] = ()  # the trades before its first member (that anomaly's context)
    after: dict[str, tuple[Print, ...]] = field(default_factory=dict)  # member id -> the trades after it

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "symbol": self.symbol, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "size": self.size, "members": list(self.members), "detectors": list(self.detectors),
                "score": self.score, "severity": self.severity, "headline": self.headline,
                "session": self.session, "ts_local": self.ts_local, "before": [p.to_dict() for p in self.before],
                "after": {m: [p.to_dict() for p in ps] for m, ps in self.after.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Incident:
        """The inverse of `to_dict` (KeyError, TypeError or ValueError on anything else)."""
        if not isinstance(d, dict):
            raise TypeError(f"an incident is a JSON object, not {type(d).__name__}")
        return cls(id=str(d["id"]), symbol=str(d["symbol"]), start_ns=int(d["start_ns"]), end_ns=int(d["end_ns"]),
                   size=int(d["size"]), members=tuple(str(m) for m in d["members"]),
                   detectors=tuple(str(x) for x in d["detectors"]), score=float(d["score"]),
                   severity=str(d["severity"]), headline=str(d["headline"]), session=str(d.get("session", "")),
                   ts_local=str(d.get("ts_local", "")), before=prints_from(d.get("before")),
                   after={str(m): prints_from(ps) for m, ps in dict(d.get("after") or {}).items()})


def incident_id(symbol: str, first_member: str) -> str:
    return hashlib.blake2b(f"incident|{symbol}|{first_member}".encode(), digest_size=16).hexdigest()


def _first_key(a: Anomaly) -> tuple[int, str, str]:
    return a.ts_event, a.detector, a.id


def _peak_key(a: Anomaly) -> tuple[float, int, str]:
    return a.score, -a.ts_event, a.id


@dataclass(slots=True)
class _Chain:
    """An open incident, bounded: its extent, count, first and peak members and the keys of its
    MAX_MEMBERS earliest members (merging two chains gives the same result in any order)."""

    start: int
    end: int
    size: int
    first: Anomaly
    peak: Anomaly
    keys: list[tuple[int, str, str]] = field(default_factory=list)  # (ts, detector, id), sorted, capped
    detectors: set[str] = field(default_factory=set)
    # member id -> (event time of the print it was found at, the trades after it so far), for the
    # members among the first MAX_CONTEXTS keys whose context is known
    after: dict[str, tuple[int, list[Print]]] = field(default_factory=dict)

    @classmethod
    def of(cls, a: Anomaly, tape: BatchTape) -> _Chain:
        after = {}
        if a.found >= 0 and tape.market is not None:
            at = tape.found_ts(a.found)
            after[a.id] = (at, tape.after(a.symbol, at, 0, a.found))
        return cls(a.ts_event, a.ts_event, 1, a, a, [_first_key(a)], {a.detector}, after)

    def merged(self, other: _Chain) -> _Chain:
        keys = sorted(set(self.keys) | set(other.keys))[:MAX_MEMBERS]
        contexts = {i for _, _, i in keys[:MAX_CONTEXTS]}
        after = {i: v for i, v in (self.after | other.after).items() if i in contexts}
        return _Chain(min(self.start, other.start), max(self.end, other.end), self.size + other.size,
                      min(self.first, other.first, key=_first_key), max(self.peak, other.peak, key=_peak_key),
                      keys, self.detectors | other.detectors, after)

    def extend(self, symbol: str, tape: BatchTape) -> None:
        """Add this batch's trades to the after-contexts still short of CONTEXT_TRADES."""
        for member, (at, prints) in self.after.items():
            if len(prints) < CONTEXT_TRADES:
                prints += tape.after(symbol, at, len(prints))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "size": self.size, "first": self.first.to_dict(),
                "peak": self.peak.to_dict(), "keys": [list(k) for k in self.keys], "detectors": sorted(self.detectors),
                "after": {i: [at, [p.to_dict() for p in ps]] for i, (at, ps) in self.after.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Chain:
        return cls(int(d["start"]), int(d["end"]), int(d["size"]), Anomaly.from_dict(d["first"]),
                   Anomaly.from_dict(d["peak"]), [(int(t), str(det), str(i)) for t, det, i in d["keys"]],
                   set(d["detectors"]),
                   {str(i): (int(at), list(prints_from(ps))) for i, (at, ps) in dict(d.get("after") or {}).items()})


OPEN_FORMAT = 1  # version of the encoded open incidents of a symbol (`IncidentGrouper.encoded`)


class IncidentGrouper:
    """Groups anomalies into incidents per symbol; `advance(clocks)` returns the incidents closed by
    then, `flush()` the rest (the end of a replay). A symbol's open incidents can be saved
    (`encoded`) and given back (`restore`), so a worker keeps them across batches and restarts."""

    def __init__(self, gap_ns: int = GAP_NS, lateness_ns: int = 60_000_000_000) -> None:
        self.gap_ns = gap_ns
        self.lateness_ns = lateness_ns
        self._open: dict[str, list[_Chain]] = {}

    def add(self, anomalies: list[Anomaly], tape: BatchTape | None = None) -> None:
        """`tape`: the batch the anomalies were found in (their after-contexts are read from it, and
        those of the open incidents' members extended)."""
        tape = tape or BatchTape()
        if tape.market is not None:
            for symbol in [s for s in self._open if s in tape.runs]:
                for c in self._open[symbol]:
                    c.extend(symbol, tape)
        for a in anomalies:
            chains = self._open.setdefault(a.symbol, [])
            joined = _Chain.of(a, tape)
            for c in [c for c in chains if c.start - self.gap_ns <= a.ts_event <= c.end + self.gap_ns]:
                chains.remove(c)  # one anomaly can bridge two chains
                joined = joined.merged(c)
            chains.append(joined)

    def advance(self, clocks: Mapping[str, int]) -> list[Incident]:
        """`clocks`: symbol -> event time of its last trade seen (symbols that did not trade can be
        left out)."""
        closed: list[Incident] = []
        for symbol in [s for s in self._open if s in clocks]:
            chains = self._open[symbol]
            for c in [c for c in chains if clocks[symbol] > c.end + self.gap_ns + self.lateness_ns]:
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
        return sum(c.size for chains in self._open.values() for c in chains)

    def outlook(self, symbol: str) -> tuple[int, bool]:
        """What can change `symbol`'s open incidents other than a new anomaly of it: the clock after
        which the first of them closes (`advance`), and whether an after-context is still short of
        CONTEXT_TRADES (the symbol's next trades extend it, in `add`). (-1, False) when none is open."""
        chains = self._open.get(symbol, [])
        closes_after = min((c.end + self.gap_ns + self.lateness_ns for c in chains), default=-1)
        return closes_after, any(len(ps) < CONTEXT_TRADES for c in chains for _, ps in c.after.values())

    def encoded(self, symbol: str) -> bytes:
        """`symbol`'s open incidents as bytes (b"" when none)."""
        chains = self._open.get(symbol)
        if not chains:
            return b""
        return json.dumps({"format": OPEN_FORMAT, "chains": [c.to_dict() for c in chains]},
                          separators=(",", ":")).encode()

    def restore(self, symbol: str, value: bytes) -> None:
        """Give back what `encoded` returned (replacing what is open for `symbol`)."""
        if not value:
            self._open.pop(symbol, None)
            return
        try:
            data = json.loads(value)
            if data.get("format") != OPEN_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            self._open[symbol] = [_Chain.from_dict(c) for c in data["chains"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFormatError(f"open incidents of {symbol} are not in this release's format "
                                   f"{OPEN_FORMAT}: {exc}") from None


def _incident(symbol: str, chain: _Chain) -> Incident:
    peak, first = chain.peak, chain.first
    return Incident(id=incident_id(symbol, first.id), symbol=symbol, start_ns=chain.start, end_ns=chain.end,
                    size=chain.size, members=tuple(i for _, _, i in chain.keys),
                    detectors=tuple(sorted(chain.detectors)), score=peak.score,
                    severity=severity_for(peak.score), headline=f"{peak.detector}: {peak.reason}",
                    session=first.session, ts_local=first.ts_local, before=first.context,
                    after={i: tuple(ps) for i, (_, ps) in sorted(chain.after.items())})
