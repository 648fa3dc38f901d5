"""The worker's Faust app: trades in, per-symbol state in RocksDB tables, anomalies, incidents, dead letters out."""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import os
import shutil
import time
import weakref
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import IO, Any

import faust
import numpy as np
import structlog
from aiokafka.errors import ProducerFenced
from faust.streams import _current_event
from faust.types import TP

from adapters.faust.membership import FencedInstanceIdError, heartbeat_as_instance, on_fenced
from adapters.faust.outputs import (KafkaDeadLetterSink, KafkaJsonSink, PartitionProducer, traced_to_messages,
                                    write_changelog)
from adapters.faust.recovery import (end_recovery_sooner, fetch_without_long_polls, restore_tables_from_broker_offsets,
                                     retry_concurrent_transactions_soon)
from adapters.faust.sequence import InSequence, in_sequence
from adapters.faust.settings import StreamingSettings
from adapters.faust.shutdown import (StopGrace, TakeGivenUp, give_up_sends, stop_consumer_thread_without_broker,
                                     when_stopped_without_broker)
from adapters.faust.state import FaustTableBlobStore, FaustTableStateStore
from adapters.faust.transactions import stop_producers_of_partitions_not_held
from adapters.kafka.codec import decode_many
from adapters.kafka.keys import WRONG_PARTITION, misrouted, partition_of
from adapters.kafka.lag import ConsumerLag, RefreshFailures
from adapters.metrics.beat import LOOP_BEAT_SECONDS
from application.detect import DetectTrades
from application.incidents import GroupIncidents
from application.publish import PublishOutcome
from domain.errors import ConfigError
from domain.model import DeadLetter
from domain.sessions import SessionCalendar
from domain.state import StateFormatError
from domain.ports import Metrics

log = structlog.get_logger()

GAUGE_REFRESH_SECONDS = 5.0  # how often consumer lag and held state are re-read for the gauges
# How long a refresh waits for the broker: well within its period, or Faust warns of an overlapping timer
# at every tick of an outage.
GAUGE_REFRESH_PATIENCE = 2.0
PROGRESS_SECONDS = 60.0  # how often an INFO `progress` line sums up the takes committed since the last
NEVER = 10 * 365 * 86_400.0  # seconds: a Faust timer that must not fire
# How long each producer's stop may take once a take is given up: it closes its connections after
# that, whatever it still had in flight (adapters.faust.shutdown.give_up_sends).
GIVE_UP_PATIENCE = 0.5
# How long the consumer's stop (its LeaveGroup, as a rule) may wait on the broker: what is left of the
# stop's grace, and at least this once it is over. A hung broker answers nothing: past it, the stop is
# abandoned (adapters.faust.shutdown.stop_consumer).
LEAVE_PATIENCE = 1.0


CLEAN_STOP = "clean-stop"  # marker file in the table directory: the local state is committed state
HOLDER = "worker.lock"  # in the app's directory, beside (not in) the table directory
_held: list[IO[str]] = []  # the worker's hold on its state directory, kept until the process exits


def hold_state_directory(appdir: Path, data_dir: str) -> IO[str] | None:
    """Hold the worker's state directory for this process (an exclusive flock, released when it
    exits, killed or not): a second worker started on one host with the same data directory would
    find no clean-stop marker (the first is running) and delete the running worker's RocksDB tables.
    ConfigError when another process holds it; None when the directory cannot be made (the start-up
    check says so in its own line)."""
    try:
        appdir.mkdir(parents=True, exist_ok=True)
        handle = open(appdir / HOLDER, "a+")  # noqa: SIM115 - open for the process's lifetime
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"data directory {data_dir!r} is in use by another worker on this host (pid {holder}): "
                          "give each worker on a host its own STOCKANOMALY_DATA_DIR") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def discard_state_after_unclean_stop(tabledir: Path) -> bool:
    """Remove the local table store unless the last run stopped cleanly; True when removed.

    A table written key by key (Faust's own `table[k] = v`) reaches RocksDB as it is set, not when
    its transaction commits. A worker killed mid-take would leave RocksDB holding state of trades
    whose transaction was aborted, and recovery from the changelog only overwrites keys that have
    committed records after the stored offset: the rest would stay ahead of the committed offsets
    and judge the replayed trades a second time. The worker's batched stores write only committed
    state, with the offset it reaches (FaustTableStateStore); this guard stays for anything else
    that writes a table. Without the marker of a clean stop, the store is rebuilt from the changelog
    (read committed, so exactly the committed state).
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


# (symbol-state, pool-state, tape-state tables) -> the detect use case, without sinks (see PublishOutcome)
DetectFactory = Callable[[MutableMapping[str, bytes], MutableMapping[str, bytes], MutableMapping[str, bytes]],
                         DetectTrades]
# (open-incidents store) -> the incident grouping use case
IncidentsFactory = Callable[[FaustTableBlobStore], GroupIncidents]


def by_partition(events: Sequence[Any]) -> list[tuple[int, list[Any]]]:
    """Events grouped by their partition, each group in offset order."""
    groups: dict[int, list[Any]] = {}
    for e in events:
        groups.setdefault(e.message.partition, []).append(e)
    return sorted(groups.items())


async def committed_takes(app: faust.App, stream: Any, max_messages: int, within: float,
                          sequence: InSequence | None = None,
                          on_committed: Callable[[set[int], dict[str, float | None]], None] | None = None,
                          commit: Callable[[faust.App, Mapping[Any, int]], Awaitable[set[int]]] | None = None,
                          bounded_by: Callable[[Awaitable[Any], str], Awaitable[Any]] | None = None,
                          ) -> AsyncIterator[list[Any]]:
    """Takes of up to `max_messages` messages (waiting up to `within` seconds for more), each
    acknowledged and committed only when the caller asks for the next one, i.e. once it has
    finished with it. A caller that raises leaves its take unacknowledged: nothing of it commits.

    Faust's own `take_events` acknowledges a take even when the agent raises (in a `finally`), and
    both it and `noack_take` pair each value with the stream's "current event" after awaiting: we
    measured takes that skipped messages (never acknowledged, so the commit stalled there and
    their trades were never judged) and repeated others. Here the events come straight from the
    stream, one `__anext__` at a time (admitted by `sequence`), and a fetch still waiting when a
    take closes is kept for the next take rather than cancelled (cancelling would end the stream).
    `bounded_by(work, stage)` bounds the flush and the commit (`StopGrace.within`: a stop's grace).
    """
    commit = commit or commit_offsets
    bounded = bounded_by or _unbounded
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
                # Not acknowledged (Faust's own final commit must never count it), but no longer
                # awaited either: a stop would otherwise wait for it.
                unacked = getattr(app.consumer, "_unacked_messages", None)
                if unacked is not None:
                    unacked.discard(event.message)
                continue
            take.append(event)
            if deadline is None:
                deadline = opened = loop.time()
                deadline += within
        handed = loop.time()
        # How old the take's oldest message was when the take was handed over (its producer's
        # timestamp, on this host's clock when produced here): the wait before detection starts.
        stamps = [t for t in (getattr(e.message, "timestamp", None) for e in take) if t]
        oldest_ms = round((time.time() - min(stamps)) * 1e3, 1) if stamps else None
        yield take
        started = loop.time()
        # Table writes are buffered (`send_soon`): send them now, into this take's transactions, or
        # the commit below would carry the take's offsets while its state went into the next one.
        await bounded(app.producer.flush(), "delivering")
        # Every output and state record of the take acknowledged: its commit starts. With the broker
        # gone from here on, a stop finds the take committing, not delivering (`take_given_up`).
        log.debug("take_delivered", messages=len(take))
        offsets = next_offsets(take)
        committed = await bounded(commit(app, offsets), "committing")
        if on_committed is not None:
            # Where a take's time goes: gathering messages (from its first), the caller's work on
            # them (outputs delivered), the commit.
            on_committed(committed, {"oldest_ms": oldest_ms, "gather_ms": round((handed - opened) * 1e3, 1),
                                     "work_ms": round((started - handed) * 1e3, 1),
                                     "commit_ms": round((loop.time() - started) * 1e3, 1)})
        for event in take:
            # After the commit, so Faust's own offset bookkeeping (which we do not use) stays empty.
            await manual.ack(event)


async def _unbounded(work: Awaitable[Any], stage: str) -> Any:
    return await work


def next_offsets(take: Sequence[Any]) -> dict[Any, int]:
    """Per partition, the offset after the last message of `take`: what a commit of it records."""
    offsets: dict[Any, int] = {}
    for event in take:
        m = event.message
        offsets[m.tp] = max(offsets.get(m.tp, 0), m.offset + 1)
    return offsets


async def commit_offsets(app: faust.App, offsets: Mapping[Any, int]) -> set[int]:
    """Commit exactly `offsets` (partition -> next offset to read) for the partitions still owned.

    Faust's `consumer.commit()` derives offsets from its list of acknowledged offsets, which after a
    restart was measured to go wrong (its committed offset reset to an older one by the rebalance,
    offsets acknowledged twice, and the commit stuck a few messages past the restart point). The
    take knows what it finished; this commits that, in the partitions' transactions under
    exactly-once (with the take's outputs and state), or as a plain offset commit otherwise.
    A partition revoked meanwhile is not committed: its next owner takes it again from the last commit.
    Returns the partitions committed.
    """
    consumer = app.consumer
    owned = consumer.assignment()
    mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if len(mine) < len(offsets):
        log.info("commit_skipped_revoked", partitions=sorted(str(tp) for tp in offsets.keys() - mine.keys()))
    if not mine:
        return set()
    if consumer.in_transaction:
        # One transaction per partition: committed side by side, not one round trip after another.
        await asyncio.gather(*(consumer.transactions.commit({tp: offset}, start_new_transaction=True)
                               for tp, offset in mine.items()))
    else:
        await consumer._commit(mine)  # type: ignore[attr-defined]
    app.tables.on_commit(mine)
    consumer._committed_offset.update(mine)  # type: ignore[attr-defined]
    # Faust notes every jump in a partition's offsets as a gap (an interval tree per partition), and
    # only its own commit, not used here, ever drops them: read committed, each transaction's commit
    # marker is one, so the indexer kept one per worker take that wrote anomalies, for as long as it
    # ran (a soak: ~380 intervals, ~100 KB, in 5 minutes of 40 anomalies a minute). Below the
    # committed offset they can only be dropped.
    gaps = getattr(consumer, "_gap", {})
    for tp, offset in mine.items():
        if tp in gaps:
            gaps[tp].chop(0, offset)
    return {tp.partition for tp in mine}


def static_membership(instance_id: str) -> dict[str, Any]:
    """Faust settings for a static member of the consumer group (KIP-345; none for an empty id).

    A static member sends no LeaveGroup when it stops: back within the session timeout, the broker
    gives it the assignment it had, without a rebalance. Faust's assignor names each member in that
    assignment by its `canonical_url` (by default the host name and web port) and refuses one made
    for another URL (an AssertionError that ends the consumer's group coordination, leaving the
    worker up but idle): measured with a second process that joined as the same instance on another
    port, and a container recreated under a new host name would meet it too. The URL names nothing
    else here (the web server binds to loopback and serves no table routes), so a static member's is
    its instance id."""
    if not instance_id:
        return {}
    return {"consumer_group_instance_id": instance_id, "canonical_url": f"http://{instance_id}"}


def stop_when_fenced(app: faust.App, instance_id: str) -> None:
    """Stop the worker, with one `group_instance_fenced` line, when the broker says another process
    joined its consumer group as `instance_id`: the newcomer has its partitions (and fenced its
    producers, the same transactional ids); staying would only take them back and forth."""
    fenced = False

    def stop() -> None:  # on the consumer's thread
        nonlocal fenced
        if fenced:
            return
        fenced = True
        log.error("group_instance_fenced", instance_id=instance_id, group=app.conf.id,
                  reason="another process joined the group as this instance and took its partitions",
                  action="stopping; give each worker its own STOCKANOMALY_GROUP_INSTANCE_ID")
        app.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(app.crash(FencedInstanceIdError())))

    on_fenced(app.conf.id, instance_id, stop)


def transactional_id(app: faust.App, source_topic: str, partition: int) -> str | None:
    """The transaction Faust keeps for `partition` of a topic the app consumes (the partition's state
    changelog writes and its offsets commit in it); None when the app is not exactly-once."""
    if not app.in_transaction:
        return None
    return f"{app.conf.id}-{app.assignor.group_for_topic(source_topic)}-{partition}"


@contextmanager
def acting_as(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event, so table writes go to its partition's changelog and store.

    Faust finds the partition of a table write through this context variable; a take holding
    several partitions' events would otherwise leave whichever event was fetched last in charge.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


# Every take writes each symbol it touched to the changelogs (~2 KB of state a symbol), and a worker
# that takes over a partition, or restarts after a crash, reads its changelogs back from their start.
# Compaction keeps a key's last record, but only in closed segments: at Kafka's default segment size
# (1 GiB, about half a million states a partition and table) hours of a busy market stay uncompacted.
# Measured (benchmarks/failover.py, 5,000 symbols at 17,000 trades/s, the worker SIGKILLed after a
# minute): its restart read the changelogs for 140 s; with 16 MiB segments, compacted as they close,
# for 16-19 s.
CHANGELOG_CONFIGS = {"segment.bytes": str(16 * 1024 * 1024)}

# Faust opens one RocksDB per table and partition (4 tables: 16 of them on 4 partitions) and by
# default gives each up to 3 write buffers of 64 MiB (3 GiB in all), for ~1.25 MB of state a table
# partition holds (500 symbols of ~2.5 KB). Measured at 2,000 symbols, one worker on 4 partitions, a
# generated day at x100: RSS 499 -> 779 MB, the write-ahead logs (what the buffers hold) 214 MiB; with
# two 4 MiB buffers each (128 MiB in all): 493 -> 633 MB and 32 MiB, takes no slower.
# Each database also gets its own block cache, by default of 2 GiB (32 GiB in all). The worker reads
# the tables only for a symbol's first state and for `len(table)` (the state-symbols gauge, every
# 5 s, which reads every key of symbol-state): each flushed or compacted file's blocks were cached
# and stayed after compaction deleted the file, so RSS grew all session long (2,000 symbols, a
# generated day at x10: 645 -> 927 -> 1,060 -> 1,325 MiB after 10, 20 and 40 minutes, symbol-state's
# caches 210, 338 and 586 MiB of it). 4 MiB each: the same day 449 -> 544 -> 547 -> 557 MiB.
ROCKSDB_OPTIONS = {"write_buffer_size": 4 * 1024 * 1024, "max_write_buffer_number": 2,
                   "block_cache_size": 4 * 1024 * 1024}


class TakeProgress:
    """What the takes committed since the last `progress` line did, summed."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def committed(self, totals: Mapping[str, int]) -> None:
        self.counts.update(totals)
        self.counts["takes"] += 1

    def line(self) -> dict[str, int] | None:
        """The sums since the last call (takes first), and a fresh start; None when no take committed."""
        if not self.counts:
            return None
        line = {"takes": self.counts.pop("takes"), **self.counts}
        self.counts = Counter()
        return line


def create_app(settings: StreamingSettings, make_detect: DetectFactory, metrics: Metrics | None = None,
               on_batch: Callable[[int, int], Awaitable[None]] | None = None,
               make_incidents: IncidentsFactory | None = None) -> faust.App:
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
    heartbeat_as_instance()
    stop_producers_of_partitions_not_held()
    end_recovery_sooner()
    fetch_without_long_polls()
    retry_concurrent_transactions_soon()
    stop_consumer_thread_without_broker()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store=settings.store,
        datadir=settings.data_dir,
        # Changelog writes, output records and consumed offsets commit in one transaction: a
        # worker killed mid-stream resumes from state that matches its committed offsets.
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
        table_standby_replicas=settings.standby_replicas,
        broker_commit_interval=NEVER,
        broker_commit_every=2**62,
        # How soon the group notices a process gone (a killed one's partitions wait that long).
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        **static_membership(settings.group_instance_id),
        # A take's state changes go out as one record batch per partition (under the broker's
        # 1 MiB message.max.bytes).
        producer_max_batch_size=1_000_000,
        # Every topic here carries bytes the codec (trades) or JSON (anomalies) owns, and table
        # values are encoded state records (domain.state): Faust passes them through untouched.
        key_serializer="raw",
        value_serializer="raw",
    )
    if settings.group_instance_id:
        stop_when_fenced(app, settings.group_instance_id)
    local_store = settings.store.startswith("rocksdb")
    if local_store:
        held = hold_state_directory(Path(app.conf.appdir), settings.data_dir)  # before anything is discarded
        _held.extend([held] if held else [])
    if local_store and discard_state_after_unclean_stop(Path(app.conf.tabledir)):
        log.warning("state_store_discarded", reason="the last run did not stop cleanly",
                    tabledir=str(app.conf.tabledir), action="restoring every table from its changelog")
    # A take is in hand (from its first message until its commit; a failed one never ends): its
    # state writes may be ahead of the last commit.
    taking = False
    # Once the worker is told to stop, how long the take in hand may still take (its sends and commit).
    grace = StopGrace(settings.stop_grace, lambda: app.wait_until_stopped())
    given_up: str | None = None  # the stage a take was given up at
    sequence = in_sequence(app, settings.bootstrap)
    trades = app.topic(settings.trades_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions)

    def state_table(name: str) -> Any:
        """value_type=bytes: Faust stores the encoded state as is (raw codec)."""
        return app.Table(name, default=None, partitions=settings.partitions, key_type=str, value_type=bytes,
                         options={"driver": "rocksdict", **ROCKSDB_OPTIONS},
                         extra_topic_configs=CHANGELOG_CONFIGS)

    # Per-symbol state, and the Isolation Forest's pooled samples keyed by pool (= partition, see
    # adapters.kafka.keys): both written while acting as an event of the partition, so each lands in
    # that changelog.
    table, pools = state_table("symbol-state"), state_table("pool-state")
    # Each symbol's last trades: the context of its next anomaly (domain.context).
    tapes = state_table("tape-state")
    detect = make_detect(table, pools, tapes)
    # Each symbol's open incidents (application.incidents), kept like its state: closed incidents go
    # to the incidents topic in the take's transaction, with the open ones' changes.
    open_incidents = state_table("incident-state")
    incident_store = FaustTableBlobStore(open_incidents, batched=True)
    incidents = make_incidents(incident_store) if make_incidents is not None else None

    @app.agent(trades)
    async def detect_trades(stream: Any) -> None:
        # Several messages per detect call: the per-call cost of the engine is paid once per
        # take, not once per message. Grouped by partition so each symbol's state is written to
        # the changelog partition its trades came from.
        nonlocal taking
        events: list[Any] = []
        try:
            async for events in committed_takes(app, stream, settings.take_max, settings.take_within, sequence,
                                                on_committed=finished, bounded_by=grace.within):
                taking = True
                await grace.within(work(events), "delivering")
        except StopWorker:
            return
        except TakeGivenUp as exc:
            await give_up(events, exc.stage)
            return
        except Exception as exc:  # noqa: BLE001 - whatever it was (detecting, sending, committing): stop here
            # Faust would restart a crashed agent past this take; stopping the worker makes its
            # successor start again from the last commit instead.
            hint = {}
            if settings.group_instance_id and isinstance(exc, ProducerFenced):
                # A process that joined as this instance takes its partitions and their transactional
                # ids at once; the broker's FENCED_INSTANCE_ID answer (group_instance_fenced) may come
                # a heartbeat later.
                hint = {"hint": "another process took this worker's partitions: if no rebalance moved them, "
                                f"one running with this worker's instance id {settings.group_instance_id!r}"}
            log.error("take_failed", messages=len(events), error=f"{type(exc).__name__}: {exc}", **hint)
            await app.crash(exc)

    async def work(events: list[Any]) -> None:
        # Every group's outputs and state are sent first, then all awaited at once: one round trip
        # to the broker per take, not one per partition.
        deliveries: list[Awaitable[Any]] = []
        try:
            for partition, group in by_partition(events):
                await process(partition, group, deliveries)
        except asyncio.CancelledError:
            for delivery in deliveries:  # given up before they were awaited: they never will be
                if inspect.iscoroutine(delivery):
                    delivery.close()
                elif isinstance(delivery, asyncio.Future):
                    delivery.cancel()
            raise
        await asyncio.gather(*deliveries)  # before the take commits; a failed send fails the take

    async def give_up(events: list[Any], stage: str) -> None:
        """The stop's grace ran out with `events` in hand: leave them uncommitted and let the stop go on."""
        nonlocal given_up
        given_up = stage
        # Nothing more is processed here: Faust's stop no longer waits for these messages, nor for
        # those fetched behind them (its final commit only counts acknowledged ones: none of them).
        unacked = getattr(app.consumer, "_unacked_messages", None)
        if unacked is not None:
            unacked.clear()
        if stage == "committing":
            reason = "its commits were not all confirmed within the stop's grace"
            committed = ("each partition's transaction commits whole (outputs, state and offsets) or is aborted "
                         "by the broker")
            successor = "processes again whatever of it was not committed, from the last committed offsets"
        else:
            reason = "its outputs and state were not all delivered within the stop's grace"
            committed = ("nothing of it: its open transactions are aborted by the broker (when the successor "
                         "starts, or after 60 s)" if app.in_transaction else
                         "not its offsets (at_least_once: outputs already delivered may be written again)")
            successor = "processes it again from the last committed offsets"
        ranges = [f"{g[0].message.topic}[{p}]@{g[0].message.offset}-{g[-1].message.offset}"
                  for p, g in by_partition(events)]
        log.warning("take_given_up", stage=stage, messages=len(events), offsets=ranges,
                    grace_s=settings.stop_grace, reason=reason, committed=committed, successor=successor)
        producer = app.producer
        await give_up_sends([p for p in (getattr(producer, "_producer", None),
                                         *getattr(producer, "_transaction_producers", {}).values())
                             if p is not None], GIVE_UP_PATIENCE)

    # What the take in hand did per partition, logged once committed (a partition revoked before
    # its commit is left out: its next owner judges it again). A worker killed between the commit
    # and this line leaves it out too, so exact counts come from the `batch` lines (the tests').
    # Both are DEBUG lines (a take is tens of milliseconds: at INFO they were 2,500 lines a minute);
    # INFO has one `progress` line a minute that worked, with what its committed takes did.
    done_in_take: dict[int, dict[str, int]] = {}
    progress_made = TakeProgress()

    @app.timer(interval=PROGRESS_SECONDS)
    async def log_progress() -> None:
        line = progress_made.line()
        if line is not None:
            log.info("progress", seconds=PROGRESS_SECONDS, **line)

    def finished(committed: set[int], timing: dict[str, float | None]) -> None:
        nonlocal taking
        for _, store in batched:
            store.take_committed(committed)
        store_some()
        taking = False
        totals: dict[str, int] = {}
        for partition in committed & done_in_take.keys():
            for key, n in done_in_take[partition].items():
                totals[key] = totals.get(key, 0) + n
        log.debug("take_committed", partitions=sorted(committed), **totals, **timing)
        progress_made.committed(totals)
        done_in_take.clear()

    def stopped_without_broker(abandoned_after: float | None) -> None:
        # What a stop could not do with the broker away, in one line (adapters.faust.shutdown).
        if given_up is not None:
            offsets = "the take in hand was given up (take_given_up): its successor processes it again"
        elif taking:
            offsets = "the take in hand did not finish: its successor processes again whatever of it was not committed"
        else:
            offsets = "every take processed was committed before the stop"
        group = ("the group keeps its partitions for this static member until its session timeout" if
                 settings.group_instance_id else
                 "the group was not told this worker left: once the broker is back, its partitions wait out "
                 "the session timeout before another worker gets them")
        # A hung broker (or one cut off without a reset) refused nothing: the consumer's stop waited.
        broker = ({"broker": "did not answer the consumer's stop (leaving the group): abandoned, its connections "
                             "closed", "abandoned_after_s": round(abandoned_after, 1)}
                  if abandoned_after is not None else {})
        log.warning("stopped_without_broker", offsets=offsets, group=group,
                    session_timeout_s=settings.session_timeout, **broker,
                    successor="resumes from the last committed offsets")

    when_stopped_without_broker(app, stopped_without_broker, lambda: max(grace.remaining(), LEAVE_PATIENCE))

    if local_store:
        @app.on_before_shutdown.connect
        async def mark_clean_stop(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            # Sent after the consumer stopped and committed; only then does the store match it.
            if not taking:
                Path(app.conf.tabledir).mkdir(parents=True, exist_ok=True)
                (Path(app.conf.tabledir) / CLEAN_STOP).touch()

    processed: dict[int, int] = {}  # trades partition -> last offset processed here

    async def process(partition: int, group: list[Any], deliveries: list[Awaitable[Any]]) -> None:
        first, last = group[0].message, group[-1].message
        origin = f"{first.topic}[{partition}]@{first.offset}-{last.offset}"
        # Every log line of this batch (the use case's, the sinks' retries) says where it came from.
        with structlog.contextvars.bound_contextvars(partition=partition, offsets=origin):
            await process_group(partition, group, deliveries)
        processed[partition] = last.offset

    # State saved by the use case is held in memory and, per take and partition, sent to the tables'
    # changelogs as record batches (FaustTableStateStore, batched); their local stores follow.
    batched: list[tuple[Any, FaustTableStateStore]] = [
        (t, store) for t, store in ((table, getattr(detect, "states", None)),
                                    (pools, getattr(detect, "pool_states", None)),
                                    (tapes, getattr(detect, "tapes", None)),
                                    (open_incidents, incident_store if incidents is not None else None))
        if isinstance(store, FaustTableStateStore) and store.unsent is not None]

    # The tables' local stores are written a partition at a time, one table and partition per take
    # in turn (a write of ~125 symbols' records costs ~0.5 ms; every take writing each of them cost
    # more than detection): at a take every ~50 ms and 16 of them, each is at most ~1 s behind, and
    # that is what a restart recovers from the changelog. A worker killed meanwhile rebuilds its
    # stores from the changelogs anyway (`discard_state_after_unclean_stop`).
    turn = 0

    def store_some() -> None:
        nonlocal turn
        due = [(t, store, p) for t, store in batched for p in store.unstored_partitions()]
        if due:
            t, store, p = due[turn % len(due)]
            turn += 1
            store.store_partition(p, t.changelog_topic.get_topic_name())

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust has closed their local stores; whoever gets them next recovers from the changelog.
        revoked = args[0] if args else kwargs.get("revoked", ())
        gone = {tp.partition for tp in revoked if tp.topic == settings.trades_topic}
        for _, store in batched:
            store.forget(gone)

    async def save_changelogs(partition: int, tid: str | None, deliveries: list[Awaitable[Any]]) -> None:
        producer = app.producer._transaction_producers[tid] if tid else app.producer._producer  # type: ignore[attr-defined]
        for t, store in batched:
            encoded = store.drain_serialized()
            if not encoded:
                continue
            topic = t.changelog_topic.get_topic_name()
            for delivery, count in await write_changelog(producer, topic, partition, encoded,
                                                         int(time.time() * 1000)):
                delivery.add_done_callback(persist_offset(store, partition, count))
                deliveries.append(delivery)

    def persist_offset(store: FaustTableStateStore, partition: int, count: int) -> Callable[[Any], None]:
        """Once the batch is delivered: where recovery may start next time (its last record), written
        to the local store with the state it reaches once the take committed (`store_some`)."""
        def delivered(delivery: Any) -> None:
            if not delivery.cancelled() and delivery.exception() is None:
                store.changelog_written(partition, delivery.result().offset + count - 1)
        return delivered

    def wrong_partition(batch: np.ndarray, row: int, partition: int) -> DeadLetter:
        symbol = str(batch["symbol"][row])
        home = partition_of(symbol, settings.partitions)
        return DeadLetter(WRONG_PARTITION, f"{symbol} belongs on partition {home} of {settings.trades_topic} "
                                           f"({settings.partitions} partitions, keyed by symbol), not {partition}: "
                                           f"its state and model are kept there", row=row)

    async def process_group(partition: int, group: list[Any], deliveries: list[Awaitable[Any]]) -> None:
        started = time.perf_counter()
        messages = [e.message for e in group]
        batch, undecodable, placement = decode_many([(m.key, m.value, f"{m.topic}[{partition}]@{m.offset}")
                                                     for m in messages])
        wrong = misrouted(batch, partition, settings.partitions)
        judged = np.delete(np.arange(len(batch)), wrong) if len(wrong) else None
        # Refused before judging, with the messages' undecodable records, so the use case publishes
        # and counts them with the rest (stockanomaly_dead_letters_total{reason="wrong_partition"}):
        # traced to their message now, while their rows are still rows of `batch`.
        strays = [replace(d, row=-1) for d in traced_to_messages(
            [wrong_partition(batch, r, partition) for r in wrong.tolist()], batch, messages, placement)]
        with acting_as(group[-1]):
            try:
                outcome = detect(batch if judged is None else batch[judged], undecodable + strays)
                closed = incidents(outcome.anomalies, outcome.clocks, outcome.tape) if incidents is not None else []
            except StateFormatError as exc:
                # Stored state this release cannot read (another format, or the first release's
                # pickles): going on would judge these trades against nothing and commit them. Stop
                # the worker with one line that says which state and which format.
                log.error("state_unreadable", error=str(exc))
                await app.crash(exc)
                raise StopWorker from exc
        if judged is not None:  # rows of the engine's letters are rows of what it judged
            outcome.dead_letters = [replace(d, row=int(judged[d.row])) if d.row >= 0 else d
                                    for d in outcome.dead_letters]
        outcome.dead_letters = traced_to_messages(outcome.dead_letters, batch, messages, placement)
        tid = transactional_id(app, settings.trades_topic, partition)
        out = PartitionProducer(app.producer, tid)
        await PublishOutcome(KafkaJsonSink(out, settings.anomalies_topic),
                             KafkaDeadLetterSink(out, settings.dlq_topic))(outcome)
        if closed:
            await KafkaJsonSink(out, settings.incidents_topic).publish(closed)
        await save_changelogs(partition, tid, deliveries)
        deliveries.append(out.delivered())
        for a in outcome.anomalies:
            log.info("anomaly", symbol=a.symbol, detector=a.detector, score=a.score, id=a.id, reason=a.reason)
        if outcome.dead_letters:
            # One line per batch, not per letter (a file sent twice is a dead letter per trade: 300,000
            # lines); each letter is on the dead-letter topic with its reason, detail and origin.
            first = outcome.dead_letters[0]
            log.warning("dead_letters", count=len(outcome.dead_letters),
                        reasons=dict(Counter(d.reason for d in outcome.dead_letters)), topic=settings.dlq_topic,
                        first_reason=first.reason, first_detail=first.detail[:300], first_origin=first.origin)
        log.debug("batch", messages=len(group), trades=len(batch), accepted=outcome.accepted,
                  anomalies=len(outcome.anomalies), incidents=len(closed), dead_letters=len(outcome.dead_letters),
                  **({"suppressed": outcome.suppressed} if outcome.suppressed else {}),
                  seconds=round(time.perf_counter() - started, 4))
        for key, n in (("messages", len(group)), ("accepted", outcome.accepted), ("anomalies", len(outcome.anomalies)),
                       ("incidents", len(closed)), ("dead_letters", len(outcome.dead_letters)),
                       ("suppressed", sum(outcome.suppressed.values()))):
            counts = done_in_take.setdefault(partition, {})
            counts[key] = counts.get(key, 0) + n
        if on_batch is not None:
            await on_batch(len(batch), len(outcome.anomalies))

    if metrics is not None:
        gauges = metrics
        calendar = SessionCalendar()
        consumer_lag, failures = ConsumerLag(
            lambda *tps: app.consumer.highwaters(*tps), lambda tp: app.consumer.position(tp), GAUGE_REFRESH_PATIENCE), \
            RefreshFailures()

        @app.timer(interval=LOOP_BEAT_SECONDS)
        async def beat() -> None:
            gauges.event_loop_beat()  # what /metrics (its own thread) measures a blocked loop from

        @app.timer(interval=GAUGE_REFRESH_SECONDS)
        async def refresh_gauges() -> None:
            # The clock's, not the tape's: whether trades should be arriving now (StockanomalyTradesStopped).
            gauges.market_open(calendar.regular_session_open(time.time_ns()))
            try:
                owned = [tp for tp in app.consumer.assignment() if tp.topic == settings.trades_topic]
                for gone in processed.keys() - {tp.partition for tp in owned}:
                    del processed[gone]  # revoked: a later reassignment starts from its commit
                # The ends are the broker's: the lag grows while a take is stuck, and a broker away
                # fails the refresh instead of repeating the last lag fetched.
                lags, stalled = await consumer_lag.measure(owned, processed)
                gauges.consumer_lag(lags)
                gauges.partition_stalled(stalled)
                gauges.state_symbols(len(table))
            except Exception as exc:  # noqa: BLE001 - a gauge refresh must never stop the worker
                # Before the consumer starts, mid-rebalance or with the broker away the consumer and
                # table refuse; the next tick retries, and the failure is visible here rather than
                # swallowed. The lag is then unknown, not as it was: no series (PartitionsUnowned).
                gauges.consumer_lag({})
                gauges.partition_stalled({})
                failures.failed(exc)
            else:
                failures.succeeded()

    app.detect_trades = detect_trades  # type: ignore[attr-defined]
    app.symbol_state = table  # type: ignore[attr-defined]
    return app
