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
        # symbol -> (its stored open incidents, their `outlook`): a symbol whose stored value is the
        # one remembered here, with no anomaly in the batch, a clock short of closing anything and
        # no after-context to extend, is left as stored without being decoded: decoding and
        # re-encoding every open incident per batch would cost a seventh of a streaming worker's batch.
        self._outlooks: dict[str, tuple[bytes, int, bool]] = {}

    def __call__(self, anomalies: list[Anomaly], clocks: Mapping[str, int],
                 tape: BatchTape | None = None) -> list[Incident]:
        """The incidents that `anomalies` and the symbols' new clocks close (oldest first); `tape`:
        the batch's trades, which extend the open incidents' after-contexts."""
        anomalous = {a.symbol for a in anomalies}
        symbols = sorted(set(clocks) | anomalous)
        traded = tape.runs if tape is not None and tape.market is not None else {}
        grouper = IncidentGrouper(self.gap_ns, self.lateness_ns)
        had: dict[str, bytes] = {}
        for symbol, value in zip(symbols, self.store.load(symbols)):
            if not value:
                self._outlooks.pop(symbol, None)
                continue
            if symbol not in anomalous and self._unchanged(symbol, value, clocks.get(symbol, -1), symbol in traded):
                continue
            grouper.restore(symbol, value)
            had[symbol] = value
        if not had and not anomalies:
            return []
        grouper.add(anomalies, tape)
        closed = grouper.advance(clocks)
        # Only what changed is written back (and so to the changelog): an open incident whose
        # after-context is complete and that nothing extended or closed stays as it was stored.
        encoded = {s: grouper.encoded(s) for s in sorted(had.keys() | anomalous)}
        changed = [s for s, value in encoded.items() if value != had.get(s, b"")]
        if changed:
            self.store.save(changed, [encoded[s] for s in changed])
        for symbol, value in encoded.items():
            if value:
                self._outlooks[symbol] = (value, *grouper.outlook(symbol))
            else:
                self._outlooks.pop(symbol, None)
        return closed

    def _unchanged(self, symbol: str, value: bytes, clock: int, traded: bool) -> bool:
        """Whether this batch leaves `symbol`'s stored open incidents (`value`) as they are."""
        known = self._outlooks.get(symbol)
        if known is None or known[0] != value:  # not seen yet, or written since by another run
            grouper = IncidentGrouper(self.gap_ns, self.lateness_ns)
            grouper.restore(symbol, value)
            known = self._outlooks[symbol] = (value, *grouper.outlook(symbol))
        _, closes_after, short = known
        return clock <= closes_after and not (short and traded)

    def flush(self, symbols: list[str]) -> list[Incident]:
        """Close whatever is open for `symbols` (the end of a replay)."""
        grouper = IncidentGrouper(self.gap_ns, self.lateness_ns)
        for symbol, value in zip(symbols, self.store.load(symbols)):
            if value:
                grouper.restore(symbol, value)
        self.store.save(symbols, [b""] * len(symbols))
        return grouper.flush()
