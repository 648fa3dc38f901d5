"""KafkaIngestDeadLetters: which dead letters of a file ingest the dead-letter topic holds, by their mark."""

from __future__ import annotations

from adapters.kafka.marks import read_mark
from adapters.kafka.reading import read_records


class KafkaIngestDeadLetters:
    """The IngestDeadLetters port over the dead-letter topic, read whole (read_committed) each time:
    asked only of files without trades, whose letters nothing on the trades topic accounts for."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic

    async def origins(self, source: str) -> set[str]:
        found: set[str] = set()
        records = read_records(self.bootstrap, self.topic)
        try:
            async for record in records:
                try:
                    marked = read_mark(record.headers)
                except ValueError:
                    continue  # someone else's header of that name: not an ingest's letter
                if marked is not None and marked[0].source == source:
                    found.add(dict(record.headers).get("origin", b"").decode("utf-8", errors="replace"))
        finally:
            await records.aclose()
        return found
