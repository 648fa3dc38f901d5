"""Anomalies, incidents and dead letters written as JSON lines, one record per line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from adapters.files.naming import naming
from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter


class _JsonLinesFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("w", encoding="utf-8")
        self.written = 0

    def _write(self, records: Sequence[dict]) -> None:
        with naming(self.path):
            self._fh.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        self.written += len(records)

    def close(self) -> None:
        with naming(self.path):
            self._fh.close()


class JsonLinesAnomalySink(_JsonLinesFile):
    def publish(self, anomalies: Sequence[Anomaly]) -> None:
        self._write([a.to_dict() for a in anomalies])


class JsonLinesIncidentSink(_JsonLinesFile):
    def publish(self, incidents: Sequence[Incident]) -> None:
        self._write([i.to_dict() for i in incidents])


class JsonLinesDeadLetterSink(_JsonLinesFile):
    def publish(self, dead_letters: Sequence[DeadLetter]) -> None:
        self._write([d.to_dict() for d in dead_letters])


class FanOutSink:
    """Publish anomalies, incidents or dead letters to several sinks (memory for the summary, a file)."""

    def __init__(self, *sinks: object) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def publish(self, records: Sequence[Anomaly] | Sequence[DeadLetter]) -> None:
        for s in self.sinks:
            s.publish(records)  # type: ignore[attr-defined]

    def close(self) -> None:
        for s in self.sinks:
            s.close()  # type: ignore[attr-defined]
