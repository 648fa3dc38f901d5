"""Use case: index again the documents Elasticsearch refused, once what it refused them for is fixed.

The indexer sends a document Elasticsearch refuses for good (a mapping that cannot take it, a
record it cannot parse) to the dead-letter topic, reason `index_rejected`, holding the record as
the indexer read it. Here those records are written again, each under its id, as the indexer
writes them: one already indexed is replaced, not duplicated, so running this twice is harmless.
Nothing goes back through Kafka, so no other consumer of the anomalies (the notifier) sees them
again. What Elasticsearch refuses this time is reported, not retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class RefusedDocument(Protocol):
    @property
    def anomaly(self) -> Any: ...  # the anomaly or incident refused

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...


class DocumentSink(Protocol):
    """An Elasticsearch sink of one kind of document (anomalies or incidents)."""

    async def publish(self, items: Sequence[Any]) -> None: ...

    async def flush(self) -> None: ...

    def drain_failed(self) -> Sequence[RefusedDocument]: ...

    async def close(self, flush: bool = True) -> None: ...


@dataclass
class ReindexOutcome:
    indexed: dict[str, int] = field(default_factory=dict)  # kind -> documents Elasticsearch took
    refused: list[tuple[str, str]] = field(default_factory=list)  # (id, why) refused again


async def reindex(documents: Mapping[str, Sequence[Any]], sinks: Mapping[str, DocumentSink]) -> ReindexOutcome:
    """Write each kind's documents (`documents`: kind -> anomalies or incidents, one per id) with that
    kind's sink; every sink is closed, whatever happens."""
    outcome = ReindexOutcome()
    try:
        for kind, items in documents.items():
            if not items:
                continue
            sink = sinks[kind]
            await sink.publish(items)
            await sink.flush()
            refused = sink.drain_failed()
            outcome.refused += [(f.anomaly.id, f"HTTP {f.status}: {f.reason}") for f in refused]
            outcome.indexed[kind] = len(items) - len(refused)
    finally:
        for sink in sinks.values():
            await sink.close(flush=False)
    return outcome
