"""In-memory adapters: real, small implementations of every port, for tests and embedded runs."""

from adapters.memory.metrics import InMemoryMetrics
from adapters.memory.sinks import InMemoryAnomalySink, InMemoryDeadLetterSink, InMemoryIncidentSink
from adapters.memory.source import InMemoryTradeSource
from adapters.memory.state import InMemoryBlobStore, InMemoryStateStore
from adapters.memory.trade_log import InMemoryTradeLog, Interrupted

__all__ = ["InMemoryAnomalySink", "InMemoryBlobStore", "InMemoryDeadLetterSink", "InMemoryIncidentSink", "InMemoryMetrics",
           "InMemoryStateStore", "InMemoryTradeLog", "InMemoryTradeSource", "Interrupted"]
