"""In-memory adapters: real, small implementations of every port, for tests and embedded runs."""

from adapters.memory.metrics import InMemoryMetrics
from adapters.memory.sinks import InMemoryAnomalySink, InMemoryDeadLetterSink, InMemoryIncidentSink
from adapters.memory.source import InMemoryTradeSource
from adapters.memory.state import InMemoryBlobStore, InMemoryStateStore

__all__ = ["InMemoryAnomalySink", "InMemoryBlobStore", "InMemoryDeadLetterSink", "InMemoryIncidentSink", "InMemoryMetrics",
           "InMemoryStateStore", "InMemoryTradeSource"]
