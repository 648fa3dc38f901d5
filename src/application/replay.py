"""Use case: replay a trade source through detection, and summarise what was found."""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from application.detect import BatchOutcome, DetectTrades
from application.incidents import INCIDENT_GAP_NS, GroupIncidents
from domain.incidents import Incident
from domain.model import Anomaly
from domain.sessions import SESSIONS, SessionCalendar
from domain.ports import BlobStore, IncidentSink, SourceChunk, TradeSource


@dataclass(slots=True)
class ReplaySummary:
    trades: int = 0
    accepted: int = 0
    anomalies: int = 0
    by_detector: Counter[str] = field(default_factory=Counter)
    by_symbol: Counter[str] = field(default_factory=Counter)
    by_session: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)  # rule id -> anomalies held back
    seconds: float = 0.0
    top: list[tuple[float, str, Anomaly]] = field(default_factory=list)  # min-heap by score
    incidents: int = 0
    top_incidents: list[tuple[float, str, Incident]] = field(default_factory=list)  # min-heap by score

    @property
    def trades_per_second(self) -> float:
        return self.trades / self.seconds if self.seconds > 0 else 0.0

    def top_anomalies(self) -> list[Anomaly]:
        return [a for _, _, a in sorted(self.top, key=lambda t: (-t[0], t[1]))]

    def ranked_incidents(self) -> list[Incident]:
        return [i for _, _, i in sorted(self.top_incidents, key=lambda t: (-t[0], t[1]))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trades": self.trades,
            "accepted": self.accepted,
            "anomalies": self.anomalies,
            "by_detector": dict(sorted(self.by_detector.items())),
            "by_symbol": dict(self.by_symbol.most_common()),
            "by_session": {name: self.by_session[name] for name in SESSIONS if self.by_session[name]},
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "suppressed": dict(sorted(self.suppressed.items())),
            "seconds": round(self.seconds, 4),
            "trades_per_second": round(self.trades_per_second, 1),
            "top": [a.to_dict() for a in self.top_anomalies()],
            "incidents": self.incidents,
            "top_incidents": [i.to_dict() for i in self.ranked_incidents()],
        }


SELECTION_LISTED = 10  # symbols a selection's note names; the rest are counted


def selection_note(selection: Mapping[str, Any]) -> str:
    """A narrowed replay's selection (`--symbols`, `--since`, `--until`, as the summary's `selection`
    holds them) in words: its counts and tables are of that selection, and without saying so a
    report of one quiet symbol of a busy day read as a quiet day."""
    symbols = list(selection.get("symbols") or [])
    parts = []
    if symbols:
        more = f" and {len(symbols) - SELECTION_LISTED:,} more" if len(symbols) > SELECTION_LISTED else ""
        parts.append(f"symbol{'' if len(symbols) == 1 else 's'} {', '.join(symbols[:SELECTION_LISTED])}{more}")
    if selection.get("since"):
        parts.append(f"from {on_both_clocks(selection['since'])}")
    said = []
    if parts:
        said.append(f"reported only: {', '.join(parts)}; the anomaly and incident figures are of these, not of "
                    "every trade read")
    if selection.get("until"):
        said.append(f"read only up to {on_both_clocks(selection['until'])} (--until)")
    return "; ".join(said)


def on_both_clocks(utc: str) -> str:
    """A selection's bound (ISO 8601 UTC, as `selection` holds it) with the exchange's time beside it,
    and its date when that differs: every table shows New York time, and a --since typed without an
    offset is UTC (the 09:50 of a table selected 05:50 New York, said only as '09:50:00Z')."""
    moment = datetime.fromisoformat(utc[:19]).replace(tzinfo=timezone.utc)
    local = moment.astimezone(SessionCalendar().tz)
    shown = f"{local:%H:%M:%S}" if local.date() == moment.date() else f"{local:%Y-%m-%d %H:%M:%S}"
    return f"{utc} ({shown} New York)"


class Replay:
    """Feed a source's trades to the detect use case in batches; keep counts and the top anomalies.

    Source chunks are joined until a batch holds about `per_symbol` trades for each symbol the last
    batch held (at most `max_batch`): a tape of few symbols then flows chunk by chunk, overlapping
    with decoding, a tape of thousands in batches that amortise each symbol's state load. Batch
    sizes never change what is found, only how fast.
    """

    def __init__(self, detect: DetectTrades, incidents: BlobStore, top_n: int = 10, per_symbol: int = 64,
                 max_batch: int = 262_144, incident_sink: IncidentSink | None = None,
                 reports_incident: Callable[[Incident], bool] | None = None) -> None:
        """`incidents`: where open incidents are kept between batches; `incident_sink`: where closed
        ones are published; `reports_incident`: which are (default: all). Incidents are grouped from
        every anomaly not suppressed, reported or not: a narrowed report holds a full run's incidents."""
        self.detect = detect
        self.reports_incident = reports_incident
        self.incident_store = incidents
        self.incident_sink = incident_sink
        self.top_n = top_n
        self.per_symbol = per_symbol
        self.max_batch = max_batch

    def __call__(self, source: TradeSource,
                 on_chunk: Callable[[np.ndarray, list[Anomaly]], None] | None = None) -> ReplaySummary:
        summary = ReplaySummary()
        incidents = GroupIncidents(self.incident_store, self.detect.engine.report_lateness_ns, INCIDENT_GAP_NS)
        symbols: set[str] = set()  # with anomalies (whose incidents may be open)
        traded: set[str] = set()
        started = time.perf_counter()
        for chunk in self._batches(source):
            outcome = self.detect(chunk.trades, chunk.dead_letters, chunk.origin)
            traded.update(outcome.clocks)
            summary.trades += len(chunk.trades) + sum(d.records for d in chunk.dead_letters)
            self._count_outcome(summary, outcome, incidents, symbols)
            if on_chunk is not None:
                on_chunk(chunk.trades, outcome.anomalies)
        # The input has ended: what was still being measured (a trade burst within its second) is
        # reported with what is known, and then the incidents still open are closed.
        self._count_outcome(summary, self.detect.finish(sorted(traded)), incidents, symbols)
        self._count_incidents(summary, incidents.flush(sorted(symbols)))
        summary.seconds = time.perf_counter() - started
        return summary

    def _count_outcome(self, summary: ReplaySummary, outcome: BatchOutcome, incidents: GroupIncidents,
                       symbols: set[str]) -> None:
        symbols.update(a.symbol for a in outcome.grouped)
        self._count_incidents(summary, incidents(outcome.grouped, outcome.clocks, outcome.tape))
        summary.accepted += outcome.accepted
        summary.anomalies += len(outcome.anomalies)
        summary.suppressed.update(outcome.suppressed)
        summary.dead_letters.update(d.reason for d in outcome.dead_letters)
        for a in outcome.anomalies:
            summary.by_detector[a.detector] += 1
            summary.by_symbol[a.symbol] += 1
            summary.by_session[a.session] += 1
            _keep_top(summary.top, (a.score, a.id, a), self.top_n)

    def _count_incidents(self, summary: ReplaySummary, closed: list[Incident]) -> None:
        if self.reports_incident is not None:
            closed = [i for i in closed if self.reports_incident(i)]
        if closed and self.incident_sink is not None:
            self.incident_sink.publish(closed)
        summary.incidents += len(closed)
        for incident in closed:
            _keep_top(summary.top_incidents, (incident.score, incident.id, incident), self.top_n)

    def _batches(self, source: TradeSource) -> Iterator[SourceChunk]:
        pending: list[SourceChunk] = []
        size, target = 0, 0  # the first chunk goes alone: it tells how many symbols there are
        for chunk in source.chunks():
            pending.append(chunk)
            size += len(chunk.trades)
            if size >= target:
                yield _joined(pending)
                target = min(self.max_batch, self.per_symbol * self.detect.last_symbols)
                pending, size = [], 0
        if pending:
            yield _joined(pending)


def _keep_top(heap: list[Any], item: tuple[float, str, Any], n: int) -> None:
    """Keep the `n` items with the highest (score, id) in a min-heap."""
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif heap and item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def _joined(chunks: list[SourceChunk]) -> SourceChunk:
    if len(chunks) == 1:
        return chunks[0]
    places = None if any(c.places is None for c in chunks) else np.concatenate([c.places for c in chunks])
    return SourceChunk(np.concatenate([c.trades for c in chunks]), [d for c in chunks for d in c.dead_letters],
                       places, chunks[0].describe)
