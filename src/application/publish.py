"""Use case: hand one detection outcome to the outputs the streaming worker awaits."""

from __future__ import annotations

from application.detect import BatchOutcome
from domain.ports import AsyncAnomalySink, AsyncDeadLetterSink


class PublishOutcome:
    """Anomalies to their sink, dead letters to theirs. The caller decides when they must be durable
    (the worker: before the trades' offsets commit)."""

    def __init__(self, anomalies: AsyncAnomalySink, dead_letters: AsyncDeadLetterSink) -> None:
        self.anomalies = anomalies
        self.dead_letters = dead_letters

    async def __call__(self, outcome: BatchOutcome) -> None:
        if outcome.anomalies:
            await self.anomalies.publish(outcome.anomalies)
        if outcome.dead_letters:
            await self.dead_letters.publish(outcome.dead_letters)
