"""Use case: fold each batch's anomalies into incidents, the open ones kept in a store by symbol.

Replay (a store in memory) and the worker (a changelogged table, written in the take's
transaction) both call this, so both close the same incidents, with the same ids."""

from __future__ import annotations

from collections.abc import Mapping

from domain.context import BatchTape
from domain.incidents import GAP_NS as INCIDENT_GAP_NS, Incident, IncidentGrouper
from domain.model import Anomaly
from domain.ports import BlobStore


class GroupIncidents:
    def __init__(self, store: BlobStore, lateness_ns: int, gap_ns: int = INCIDENT_GAP_NS) -> None:
        self.store = store
        self.gap_ns = gap_ns
        self.lateness_ns = lateness_ns

    def __call__(self, anomalies: list[Anomaly], clocks: Mapping[str, int],
                 tape: BatchTape | None = None) -> list[Incident]:
        """The incidents that `anomalies` and the symbols' new clocks close (oldest first); `tape`:
        the batch's trades, which extend the open incidents' after-contexts."""
        symbols = sorted(set(clocks) | {a.symbol for a in anomalies})
        grouper = IncidentGrouper(self.gap_ns, self.lateness_ns)
        had: dict[str, bytes] = {}
        for symbol, value in zip(symbols, self.store.load(symbols)):
            if value:
                grouper.restore(symbol, value)
                had[symbol] = value
        if not had and not anomalies:
            return []
        grouper.add(anomalies, tape)
        closed = grouper.advance(clocks)
        # Only what changed is written back (and so to the changelog): an open incident whose
        # after-context is complete and that nothing extended or closed stays as it was stored.
        encoded = {s: grouper.encoded(s) for s in sorted(had.keys() | {a.symbol for a in anomalies})}
        changed = [s for s, value in encoded.items() if value != had.get(s, b"")]
        if changed:
            self.store.save(changed, [encoded[s] for s in changed])
        return closed

    def flush(self, symbols: list[str]) -> list[Incident]:
        """Close whatever is open for `symbols` (the end of a replay)."""
        grouper = IncidentGrouper(self.gap_ns, self.lateness_ns)
        for symbol, value in zip(symbols, self.store.load(symbols)):
            if value:
                grouper.restore(symbol, value)
        self.store.save(symbols, [b""] * len(symbols))
        return grouper.flush()
