"""Ports: the roles the domain and use cases need from the outside world."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter
from domain.notifications import Notification
from domain.symbols import SymbolRuns


@dataclass(slots=True)
class SourceChunk:
    """Trades read from a source (TRADE_DTYPE, event-time ordered) and the records it rejected."""

    trades: np.ndarray
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Per trade, where it stands in the source as a number `describe` names ("x.csv, line 7"): the
    # origin of a dead letter the engine writes for it (a duplicate). None: the source does not say.
    places: np.ndarray | None = None
    describe: Callable[[int], str] | None = None
    # Per dead letter, how many of the chunk's trades go before it (0 to len(trades)), so ingest can
    # send it with the trades around its place in the source. None: all of them go before the trades.
    dead_letters_at: list[int] | None = None

    def letters_at(self) -> list[int]:
        return [0] * len(self.dead_letters) if self.dead_letters_at is None else self.dead_letters_at

    def origin(self, row: int) -> str:
        """Where trade `row` comes from, as a dead letter's origin ("" when the source does not say)."""
        if self.places is None or self.describe is None or row < 0:
            return ""
        place = int(self.places[row])
        return self.describe(place) if place >= 0 else ""


class TradeSource(Protocol):
    """Yields trades in event-time order, in chunks."""

    def chunks(self) -> Iterator[SourceChunk]: ...


class AnomalySink(Protocol):
    def publish(self, anomalies: Sequence[Anomaly]) -> None: ...

    def close(self) -> None: ...


class DeadLetterSink(Protocol):
    def publish(self, dead_letters: Sequence[DeadLetter]) -> None: ...

    def close(self) -> None: ...


class AsyncAnomalySink(Protocol):
    """An output the streaming worker awaits; when what it was handed is durable is the adapter's to say."""

    async def publish(self, anomalies: Sequence[Anomaly]) -> None: ...


class AsyncDeadLetterSink(Protocol):
    async def publish(self, dead_letters: Sequence[DeadLetter]) -> None: ...


class StateStore(Protocol):
    """Fixed-size state records by key (a symbol, or a model pool's id).

    `load` returns one row per key, in order, with the initial state for keys never saved, as a new
    array the caller owns (changing it changes nothing stored); `save` stores rows for keys. Rows are
    numpy records of one layout (`domain.state.StateSchema`).
    """

    def load(self, keys: Sequence[str]) -> np.ndarray: ...

    def save(self, keys: Sequence[str], rows: np.ndarray) -> None: ...


class BlobStore(Protocol):
    """Opaque values by key (a symbol's open incidents): `load` gives one per key, None for keys
    never saved; `save` stores them (b"" means nothing)."""

    def load(self, keys: Sequence[str]) -> Sequence[bytes | None]: ...

    def save(self, keys: Sequence[str], values: Sequence[bytes]) -> None: ...


class Metrics(Protocol):
    def trades_processed(self, count: int) -> None: ...

    def anomalies_found(self, detector: str, symbol: str, count: int) -> None: ...

    def dead_letters(self, reason: str, count: int) -> None: ...

    def batch_processed(self, size: int, seconds: float) -> None: ...

    def model_refitted(self, detector: str) -> None: ...

    def state_symbols(self, count: int) -> None:
        """How many symbols' state this process holds now."""
        ...

    def elasticsearch_bulk(self, written: int, retries: int, failed: int, kind: str = "anomalies") -> None:
        """Increments since the last call: documents written, bulk retries, documents rejected."""
        ...

    def consumer_lag(self, lags: Mapping[int, int]) -> None:
        """Messages behind the end, per input partition this process owns now (others are dropped)."""
        ...

    def market_open(self, is_open: bool) -> None:
        """Whether the exchange's regular session is on now: when trades are expected to flow."""
        ...

    def partition_stalled(self, seconds: Mapping[int, float]) -> None:
        """Per input partition this process owns now: how long it has had messages waiting while
        none was processed (0: caught up or moving on)."""
        ...

    def indexer_lag(self, topic: str, lags: Mapping[int, int], stalled: Mapping[int, float]) -> None:
        """Per partition of `topic` the indexer owns now (others are dropped): messages after the last
        one written to the search store, and how long messages have waited with none written (0:
        caught up or moving on)."""
        ...

    def notifier_lag(self, topic: str, lags: Mapping[int, int], stalled: Mapping[int, float]) -> None:
        """Per partition of `topic` the notifier owns now (others are dropped): messages after the last
        one handled (sent or skipped), and how long messages have waited with none handled."""
        ...

    def event_loop_beat(self) -> None:
        """The process's event loop runs (called every second by a timer on it)."""
        ...

    def notifications(self, result: str, count: int, retries: int = 0) -> None:
        """The notifier's records by result (sent, held_back, below_severity, refused), and webhook
        attempts retried, since the last call."""
        ...

    def indices_deleted(self, count: int) -> None:
        """Search indices deleted for having outlived the retention."""
        ...


class AnomalyQuery(Protocol):
    """Finds stored anomalies. Filters combine with AND; an empty sequence means any. The time
    range is [since_ns, until_ns) in event-time ns; order is "time" (newest first) or "score"."""

    def search(self, *, symbols: Sequence[str] = (), detectors: Sequence[str] = (),
               since_ns: int | None = None, until_ns: int | None = None, min_score: float | None = None,
               limit: int = 50, order: str = "time") -> list[Anomaly]: ...

    def count(self, *, symbols: Sequence[str] = (), detectors: Sequence[str] = (),
              since_ns: int | None = None, until_ns: int | None = None, min_score: float | None = None) -> int:
        """How many match the same filters as `search` (all of them, not only a page)."""
        ...


class IncidentSink(Protocol):
    def publish(self, incidents: Sequence[Incident]) -> None: ...


class RecordLookup(Protocol):
    """Finds stored anomalies and incidents by id (a replay's output files, or Elasticsearch)."""

    def anomalies(self, ids: Sequence[str]) -> list[Anomaly]:
        """Those of `ids` that are stored (any order)."""
        ...

    def incident(self, incident_id: str) -> Incident | None: ...

    def incident_of(self, anomaly_id: str) -> Incident | None:
        """The incident that has the anomaly as a member, if stored."""
        ...

    def ids_starting(self, prefix: str, most: int) -> tuple[int, list[str]]:
        """How many stored anomaly and incident ids start with `prefix` (lower-case hex), and up to
        `most` of them, in order."""
        ...


@dataclass(slots=True)
class Sent:
    """What a publisher has handed to its client so far, counted message by message: everything in
    it is delivered by the next successful flush, also what a publish cut short had handed over."""

    trades: int = 0
    messages: int = 0
    bytes: int = 0
    dead_letters: int = 0


@dataclass(frozen=True, slots=True)
class IngestMark:
    """Where the trades of a published message come from: one `publish` of the source's trades
    [first, stop) (counted from 0 in the order the source gives them), cut into runs by
    `application.ingest.symbol_batches`. `source` names the source (a fingerprint of its files).
    Every message says it, so an interrupted ingest can be resumed from the log's last messages."""

    source: str
    first: int
    stop: int


class TradePublisher(Protocol):
    """Publishes trades to the trade log (Kafka): runs of one symbol's event-time-ordered trades
    that are due together.

    `publish` may return before the runs are acknowledged; `flush` returns once everything
    published so far is acknowledged, and raises if any of it was not. `sent` counts as it goes.
    """

    sent: Sent

    async def publish(self, runs: SymbolRuns, mark: IngestMark | None = None,
                      dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Queue `runs` (each one symbol's trades in event-time order), counting them in `sent`;
        each message (and dead letter) carries `mark` when given. `dead_letters` are queued right after
        the first message, nothing in between, even when the call is cancelled there: the trade log
        holds a message of this publish if and only if they went (application.resume relies on it)."""
        ...

    async def publish_dead_letters(self, dead_letters: Sequence[DeadLetter], mark: IngestMark | None = None) -> None:
        """Queue `dead_letters`, each carrying `mark` when given (those of a source without trades)."""
        ...

    async def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LogTail:
    """One partition of the trade log as its last committed message leaves it."""

    partition: int
    offset: int  # of that message; -1: the partition holds none
    timestamp_ms: int  # when it was written (the producer's clock)
    trades: np.ndarray  # TRADE_DTYPE, in the message's order; empty when it holds none we can read
    mark: IngestMark | None  # what its publisher said it holds (None: not an ingest of files)
    partitions: int | None  # the partition count it was written for, when marked


class IngestDeadLetters(Protocol):
    """The dead-letter topic, as far as a file ingest's own letters go."""

    async def origins(self, source: str) -> set[str]:
        """The origins of the dead letters it holds that an ingest of `source` sent (marked as such)."""
        ...


class TradeLogTails(Protocol):
    """The trade log's last message of each partition, read without reading the rest, and where a
    symbol's trades go in it."""

    partitions: int

    def partition_of(self, symbol: str) -> int: ...

    async def tails(self) -> list[LogTail]:
        """One per partition, in partition order."""
        ...


class NotificationRefused(Exception):
    """A receiver refused a notification for good (HTTP 4xx other than 408/429): retrying would not help."""


class NotificationChannel(Protocol):
    """Where notifications go (a webhook). `send` returns once the receiver acknowledged, retrying
    transient failures for as long as they last; raises NotificationRefused for a refusal for good."""

    name: str

    async def send(self, notification: Notification) -> None: ...


class IndexCatalog(Protocol):
    """The search store's dated indices (one per event day), for the retention sweep."""

    async def dated_indices(self) -> dict[str, int]:
        """Every index this project writes by event day, with its creation time (ms since the epoch)."""
        ...

    async def delete(self, names: Sequence[str]) -> None: ...

    async def close(self) -> None: ...
