"""Anomalies, incidents and dead letters collected in lists."""

from __future__ import annotations

from collections.abc import Sequence

from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter


class InMemoryAnomalySink:
    def __init__(self) -> None:
        self.anomalies: list[Anomaly] = []

    def publish(self, anomalies: Sequence[Anomaly]) -> None:
        self.anomalies.extend(anomalies)

    def close(self) -> None:
        pass


class InMemoryIncidentSink:
    def __init__(self) -> None:
        self.incidents: list[Incident] = []

    def publish(self, incidents: Sequence[Incident]) -> None:
        self.incidents.extend(incidents)

    def close(self) -> None:
        pass


class InMemoryDeadLetterSink:
    def __init__(self) -> None:
        self.dead_letters: list[DeadLetter] = []

    def publish(self, dead_letters: Sequence[DeadLetter]) -> None:
        self.dead_letters.extend(dead_letters)

    def close(self) -> None:
        pass
