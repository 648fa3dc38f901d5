"""The Faust app: trades topic in, per-symbol state in a RocksDB table, anomalies and dead letters out."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import weakref
from contextlib import contextmanager
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import faust
import numpy as np
import structlog
from faust.streams import _current_event
from faust.types import TP

from adapters.faust.recovery import restore_tables_from_broker_offsets
from adapters.faust.settings import StreamingSettings
from adapters.kafka.codec import decode
from adapters.memory import InMemoryAnomalySink, InMemoryDeadLetterSink
from application.detect import DetectTrades
from domain.model import DeadLetter
from domain.state import StateFormatError
from domain.ports import Metrics

log = structlog.get_logger()

GAUGE_REFRESH_SECONDS = 5.0  # how often consumer lag and held state are re-read for the gauges
NEVER = 10 * 365 * 86_400.0  # seconds: a Faust timer that must not fire


CLEAN_STOP = "clean-stop"  # marker file in the table directory: the local state matches the last commit


def discard_state_after_unclean_stop(tabledir: Path) -> bool:
    """Remove the local table store unless the last run stopped cleanly; True when removed.

    Faust writes table values to RocksDB as they are set, not when their transaction commits. A
    worker killed mid-take leaves RocksDB holding state of trades whose transaction was aborted,
    and recovery from the changelog only overwrites keys that have committed records after the
    stored offset: the rest would stay ahead of the committed offsets and judge the replayed
    trades a second time. Without the marker of a clean stop, the store is rebuilt from the
    changelog (read committed, so exactly the committed state).
    """
    marker = tabledir / CLEAN_STOP
    if marker.exists():
        marker.unlink()  # a crash from here on must not find it
        return False
    if tabledir.exists():
        shutil.rmtree(tabledir)
        return True
    return False


class StopWorker(Exception):
    """The worker has been told to stop (app.crash): the take in hand is left unacknowledged."""


def partition_lags(highwater: Callable[[TP], int | None], owned: Iterable[TP],
                   processed: Mapping[int, int]) -> dict[int, int]:
    """Messages after the last offset processed, per owned partition (`processed`: partition ->
    last processed offset); partitions missing from `processed` are left out."""
    lags: dict[int, int] = {}
    for tp in owned:
        end = highwater(tp)
        if end is None or tp.partition not in processed:  # unknown, not zero
            continue
        lags[tp.partition] = max(0, end - (processed[tp.partition] + 1))
    return lags


# (symbol-state table, pool-state table, anomaly buffer, dead-letter buffer) -> the detect use case
DetectFactory = Callable[[MutableMapping[str, bytes], MutableMapping[str, bytes], InMemoryAnomalySink,
                          InMemoryDeadLetterSink], DetectTrades]


def dead_letter_headers(d: DeadLetter) -> list[tuple[str, bytes]]:
    return [("reason", d.reason.encode()), ("detail", d.detail.encode()[:4096]), ("origin", d.origin.encode())]


def by_partition(events: Sequence[Any]) -> list[tuple[int, list[Any]]]:
    """Events grouped by their partition, each group in offset order."""
    groups: dict[int, list[Any]] = {}
    for e in events:
        groups.setdefault(e.message.partition, []).append(e)
    return sorted(groups.items())


class InSequence:
    """Decides which delivered messages to judge: each partition's offsets one after another, from
    where it resumes (`start_of(tp)`, its committed offset, when known).

    The consumer was measured, right after a restart's recovery, to hand over a partition with a
    hole in it (offsets never delivered) and later to repeat an offset already taken; messages
    fetched before recovery's seek back to the committed offsets can also still be queued. A
    repeat is dropped; a hole makes the consumer `seek` back to it, and everything else of that
    partition is dropped until it comes. Messages delivered while `ready()` is false (tables
    recovering) are dropped too: recovery ends with that seek, so they come again. Dropped
    messages are never acknowledged, so never committed.
    """

    def __init__(self, seek: Callable[[Any, int], Awaitable[None]], ready: Callable[[], bool] | None = None,
                 start_of: Callable[[Any], int | None] | None = None) -> None:
        self.seek, self.ready, self.start_of = seek, ready, start_of
        self.positions: dict[Any, int] = {}  # partition -> next offset expected
        self.rewinding: set[Any] = set()

    def forget(self, partitions: Iterable[Any]) -> None:
        """Revoked: whoever gets them next, maybe this worker again, starts from the committed offset."""
        for tp in partitions:
            self.positions.pop(tp, None)
            self.rewinding.discard(tp)

    async def admit(self, m: Any) -> bool:
        if self.ready is not None and not self.ready():
            self.positions.clear()
            self.rewinding.clear()
            return False
        expected = self.positions.get(m.tp)
        if expected is None and self.start_of is not None:
            expected = self.start_of(m.tp)
        if expected is None or m.offset == expected:
            self.rewinding.discard(m.tp)
            self.positions[m.tp] = m.offset + 1
            return True
        where = f"{m.topic}[{m.partition}]"
        if m.tp in self.rewinding:
            # Fetched before the seek: Faust moved its read offset past it and would drop the
            # messages the seek brings back. Seek again, after it.
            await self.seek(m.tp, expected)
        elif m.offset > expected:
            log.warning("consumer_skipped_offsets", tp=where, first=expected, last=m.offset - 1,
                        action="seeking back")
            self.rewinding.add(m.tp)
            await self.seek(m.tp, expected)
        else:
            log.info("consumer_repeated_offset", tp=where, offset=m.offset, expected=expected)
        return False


def in_sequence(app: faust.App) -> InSequence:
    """`InSequence` for `app`: ready once its tables are recovered and no rebalance is on, each
    partition resuming at the offset Faust sought to (its committed offset), revoked ones forgotten."""

    def committed_offset(tp: Any) -> int | None:
        offset = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        return int(offset) if offset is not None and offset >= 0 else None

    def recovered() -> bool:
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # TableManager has it; its type does not say
        return bool(recovery.completed.is_set() and not recovery.in_recovery and not app.rebalancing)

    sequence = InSequence(lambda tp, offset: app.consumer.seek(tp, offset), ready=recovered,
                          start_of=committed_offset)

    @app.on_partitions_revoked.connect
    async def forget(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        sequence.forget(args[0] if args else kwargs.get("revoked", ()))

    return sequence


async def committed_takes(app: faust.App, stream: Any, max_messages: int, within: float,
                          sequence: InSequence | None = None,
                          on_committed: Callable[[], None] | None = None) -> AsyncIterator[list[Any]]:
    """Takes of up to `max_messages` messages (waiting up to `within` seconds for more), each
    acknowledged and committed only when the caller asks for the next one, i.e. once it has
    finished with it. A caller that raises leaves its take unacknowledged: nothing of it commits.

    Faust's own `take_events` acknowledges a take even when the agent raises (in a `finally`), and
    both it and `noack_take` pair each value with the stream's "current event" after awaiting: we
    measured takes that skipped messages (never acknowledged, so the commit stalled there and
    their trades were never judged) and repeated others. Here the events come straight from the
    stream, one `__anext__` at a time (admitted by `sequence`), and a fetch still waiting when a
    take closes is kept for the next take rather than cancelled (cancelling would end the stream).
    """
    manual = stream.noack()
    events = manual.events().__aiter__()
    pending: asyncio.Future[Any] | None = None
    loop = asyncio.get_running_loop()
    while True:
        take: list[Any] = []
        deadline: float | None = None
        while len(take) < max_messages:
            if pending is None:
                pending = asyncio.ensure_future(events.__anext__())
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:
                break  # `within` passed since the take's first message: hand over what there is
            fetched, pending = pending, None
            try:
                event = fetched.result()
            except StopAsyncIteration:
                if take:
                    break
                return
            if sequence is not None and not await sequence.admit(event.message):
                continue
            take.append(event)
            if deadline is None:
                deadline = loop.time() + within
        yield take
        # Table writes are buffered (`send_soon`): send them now, into this take's transactions, or
        # the commit below would carry the take's offsets while its state went into the next one.
        await app.producer.flush()
        for event in take:
            await manual.ack(event)
        await app.consumer.commit()
        if on_committed is not None:
            on_committed()


@contextmanager
def acting_as(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event, so table writes go to its partition's changelog and store.

    Faust finds the partition of a table write through this context variable; a batch taken
    with `take_events` would otherwise leave whichever event came last in charge.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def create_app(settings: StreamingSettings, make_detect: DetectFactory, metrics: Metrics | None = None,
               on_batch: Callable[[int, int], Awaitable[None]] | None = None) -> faust.App:
    """Build the worker app. The agent only decodes, calls the detect use case and publishes.

    The commit boundary is the take: a take's messages are acknowledged only after every output of
    theirs (anomalies, dead letters, state changelog) has been handed to the partition's transaction,
    and then committed at once with their offsets. Faust's own commit triggers (a timer, and every N
    messages fetched) are turned off: either could commit a transaction halfway through a take,
    with some of its outputs and none of its offsets, and a restart would then write those outputs
    again. A take that fails is never acknowledged: the worker stops, and its successor starts over
    from the last commit (the open transaction is aborted when the successor fences it).
    """
    restore_tables_from_broker_offsets()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store=settings.store,
        datadir=settings.data_dir,
        # Changelog writes, output records and consumed offsets commit in one transaction: a
        # worker killed mid-stream resumes from state that matches its committed offsets.
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
        table_standby_replicas=0,
        broker_commit_interval=NEVER,
        broker_commit_every=2**62,
        # Every topic here carries bytes the codec (trades) or JSON (anomalies) owns, and table
        # values are encoded state records (domain.state): Faust passes them through untouched.
        key_serializer="raw",
        value_serializer="raw",
    )
    local_store = settings.store.startswith("rocksdb")
    if local_store and discard_state_after_unclean_stop(Path(app.conf.tabledir)):
        log.warning("state_store_discarded", reason="the last run did not stop cleanly",
                    tabledir=str(app.conf.tabledir), action="restoring every table from its changelog")
    # A take is in hand (from its first message until its commit; a failed one never ends): its
    # state writes may be ahead of the last commit.
    taking = False
    sequence = in_sequence(app)
    trades = app.topic(settings.trades_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions)
    anomalies = app.topic(settings.anomalies_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw", partitions=settings.partitions)
    # value_type=bytes makes Faust store the encoded state as is (raw codec). Per-symbol state, and
    # the Isolation Forest's pooled samples keyed by pool (= partition, see adapters.kafka.keys):
    # both written while acting as an event of the partition, so each lands in that changelog.
    table = app.Table("symbol-state", default=None, partitions=settings.partitions, key_type=str,
                      value_type=bytes, options={"driver": "rocksdict"})
    pools = app.Table("pool-state", default=None, partitions=settings.partitions, key_type=str,
                      value_type=bytes, options={"driver": "rocksdict"})
    found = InMemoryAnomalySink()
    rejected = InMemoryDeadLetterSink()
    detect = make_detect(table, pools, found, rejected)

    @app.agent(trades)
    async def detect_trades(stream: Any) -> None:
        # Several messages per detect call: the per-call cost of the engine is paid once per
        # take, not once per message. Grouped by partition so each symbol's state is written to
        # the changelog partition its trades came from.
        nonlocal taking
        async for events in committed_takes(app, stream, settings.take_max, settings.take_within, sequence,
                                            on_committed=finished):
            taking = True
            try:
                for partition, group in by_partition(events):
                    await process(partition, group)
            except StopWorker:
                return
            except Exception as exc:  # noqa: BLE001 - whatever it was, this take must not be committed
                log.error("take_failed", messages=len(events), error=f"{type(exc).__name__}: {exc}")
                await app.crash(exc)
                return

    def finished() -> None:
        nonlocal taking
        taking = False

    if local_store:
        @app.on_before_shutdown.connect
        async def mark_clean_stop(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            # Sent after the consumer stopped and committed; only then does the store match it.
            if not taking:
                Path(app.conf.tabledir).mkdir(parents=True, exist_ok=True)
                (Path(app.conf.tabledir) / CLEAN_STOP).touch()

    processed: dict[int, int] = {}  # trades partition -> last offset processed here

    async def process(partition: int, group: list[Any]) -> None:
        first, last = group[0].message, group[-1].message
        origin = f"{first.topic}[{partition}]@{first.offset}-{last.offset}"
        # Every log line of this batch (the use case's, the sinks' retries) says where it came from.
        with structlog.contextvars.bound_contextvars(partition=partition, offsets=origin):
            await process_group(partition, group, origin)
        processed[partition] = last.offset

    async def process_group(partition: int, group: list[Any], origin: str) -> None:
        started = time.perf_counter()
        first, last = group[0].message, group[-1].message
        decoded = [decode(e.message.key, e.message.value, f"{first.topic}[{partition}]@{e.message.offset}")
                   for e in group]
        batch = np.concatenate([b for b, _ in decoded])  # a take is never empty
        undecodable = [d for _, letters in decoded for d in letters]
        with acting_as(group[-1]):
            try:
                detect(batch, undecodable)
            except StateFormatError as exc:
                # Stored state this release cannot read (another format, or the first release's
                # pickles): going on would judge these trades against nothing and commit them. Stop
                # the worker with one line that says which state and which format.
                log.error("state_unreadable", error=str(exc))
                await app.crash(exc)
                raise StopWorker from exc
        out, found.anomalies = found.anomalies, []
        dead, rejected.dead_letters = rejected.dead_letters, []
        for a in out:
            await anomalies.send(key=a.symbol.encode(), value=json.dumps(a.to_dict()).encode())
            log.info("anomaly", symbol=a.symbol, detector=a.detector, score=a.score, id=a.id, reason=a.reason)
        for d in dead:
            d = d if d.origin else replace(d, origin=origin)
            await dlq.send(key=last.key, value=d.raw or d.detail.encode(), headers=dead_letter_headers(d))
        log.info("batch", messages=len(group), trades=len(batch), anomalies=len(out), dead_letters=len(dead),
                 seconds=round(time.perf_counter() - started, 4))
        if on_batch is not None:
            await on_batch(len(batch), len(out))

    if metrics is not None:
        gauges = metrics

        @app.timer(interval=GAUGE_REFRESH_SECONDS)
        async def refresh_gauges() -> None:
            try:
                owned = [tp for tp in app.consumer.assignment() if tp.topic == settings.trades_topic]
                for gone in processed.keys() - {tp.partition for tp in owned}:
                    del processed[gone]  # revoked: a later reassignment starts from its commit
                done = dict(processed)
                for tp in owned:
                    if tp.partition not in done:  # nothing processed here yet: count from the fetch position
                        position = await app.consumer.position(tp)
                        if position is not None:
                            done[tp.partition] = position - 1
                gauges.consumer_lag(partition_lags(app.consumer.highwater, owned, done))
                gauges.state_symbols(len(table))
            except Exception as exc:  # noqa: BLE001 - a gauge refresh must never stop the worker
                # Before the consumer starts or mid-rebalance the consumer and table refuse; the
                # next tick retries, and the failure is visible here rather than swallowed.
                log.warning("metrics_refresh_failed", error=f"{type(exc).__name__}: {exc}")

    app.detect_trades = detect_trades  # type: ignore[attr-defined]
    app.symbol_state = table  # type: ignore[attr-defined]
    return app
