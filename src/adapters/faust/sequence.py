"""Which delivered messages a take may hold: each partition's records one after another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from faust.types.enums import ProcessingGuarantee

from adapters.kafka.read_spans import ReadSpan

log = structlog.get_logger()

RESUME_CHECK_SECONDS = 1.0  # how often partitions left behind by a recovery are looked for
# A partition sought back this long ago and still waiting for its record is sought again: whatever
# race left the record dropped (see `InSequence`), nothing else would bring it back.
REWIND_PATIENCE_SECONDS = 5.0
# How long a check of an offset jump waits for an unreachable broker before it gives up (and the
# worker stops, for its supervisor to restart it), and how often it says it is waiting.
BROKER_PATIENCE_SECONDS = 600.0
WAIT_WARNING_SECONDS = 10.0
RECONNECT_SECONDS = 1.0  # between attempts to start the log reader's consumer while the broker is away
# How long the log reader's fetch waits on the broker for a partition with nothing new: a read waits
# for the fetch already out (one that went out just before its partition was paused) before its own.
READ_MAX_WAIT_MS = 20

# (partition, first offset, before) -> the offset of the first record the log holds in [first,
# before) for this consumer (committed records under read_committed), or None when there is none
NextRecord = Callable[[Any, int, int], Awaitable[int | None]]
# (partition, offset) -> moves the consumer's read position there; returns the highest offset of the
# partition it had handed over before the move (None when it cannot say)
Seek = Callable[[Any, int], Awaitable[int | None]]


@dataclass
class Rewind:
    """A partition sought back to a record it is waiting for: the highest offset handed over before
    the last seek, when that seek ran, and since when, how many seeks and how many messages dropped
    (told once the record comes)."""

    since: float
    last_seek: float
    handed: int | None = None
    seeks: int = 1
    dropped: int = 0


class InSequence:
    """Decides which delivered messages to judge: each partition's records one after another, from
    where it resumes (`start_of(tp)`, its committed offset, when known).

    The consumer was measured, right after a restart's recovery, to hand over a partition with a
    hole in it (offsets never delivered) and later to repeat an offset already taken; messages
    fetched before recovery's seek back to the committed offsets can also still be queued. Offsets
    also jump where nothing was skipped: a transaction's commit marker, an aborted transaction's
    records (read committed), a compacted topic. So a jump is checked against the log
    (`next_record`): nothing there, the message is next; a record there was skipped, and the
    consumer `seek`s back to it, dropping everything else of that partition until it comes. A
    repeat is dropped. Messages delivered while `ready()` is false (tables recovering) are dropped
    too, and usually come again (recovery ends with a seek to the committed offsets); but messages
    already fetched when that seek ran arrive after it and move the read position past them, and a
    partition with nothing newer to deliver then never shows the hole. So `resume()` (called
    periodically) seeks every partition that had messages dropped and none judged since back to
    where it resumes. Dropped messages are never acknowledged, so never committed.

    A seek is repeated only for a message handed over *after* the last seek (above the offset that
    seek reports as handed over already): only such a message moves the consumer's read position
    past the record awaited. The rest of a full buffer, queued before the seek, is dropped as it
    comes (measured on restarted workers: 6-10 seeks where seeking for every such message made
    1,353, each a round trip to the consumer's thread that restarts the partition's fetch). A
    partition still waiting `REWIND_PATIENCE_SECONDS` after its last seek is sought again by
    `resume()`: should a race leave its record dropped by the consumer after all, nothing else
    would bring it back.
    """

    def __init__(self, seek: Seek, ready: Callable[[], bool] | None = None,
                 start_of: Callable[[Any], int | None] | None = None, next_record: NextRecord | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seek, self.ready, self.start_of, self.next_record = seek, ready, start_of, next_record
        self.clock = clock
        self.positions: dict[Any, int] = {}  # partition -> next offset expected
        self.rewinding: dict[Any, Rewind] = {}
        self.dropped: set[Any] = set()  # partitions with messages dropped while not ready

    def forget(self, partitions: Iterable[Any]) -> None:
        """Revoked: whoever gets them next, maybe this worker again, starts from the committed offset."""
        for tp in partitions:
            self.positions.pop(tp, None)
            self.rewinding.pop(tp, None)
            self.dropped.discard(tp)

    async def resume(self, owned: Iterable[Any]) -> list[Any]:
        """Once ready: seek each of the `owned` partitions that had messages dropped while not ready,
        and none judged since, back to where it resumes; and each sought back more than
        `REWIND_PATIENCE_SECONDS` ago and still waiting, back to its record again. Returns the
        partitions sought."""
        if self.ready is not None and not self.ready():
            return []
        owned = list(owned)
        sought = []
        now = self.clock()
        for tp in [tp for tp in owned if tp in self.rewinding and tp in self.positions]:
            rewind = self.rewinding[tp]
            if now - rewind.last_seek < REWIND_PATIENCE_SECONDS:
                continue
            log.warning("consumer_rewind_stalled", tp=f"{tp.topic}[{tp.partition}]", offset=self.positions[tp],
                        waited_s=round(now - rewind.last_seek, 1), action="seeking back again")
            rewind.last_seek, rewind.seeks = now, rewind.seeks + 1
            rewind.handed = await self.seek(tp, self.positions[tp])  # raises mid-rebalance: tried again next time
            sought.append(tp)
        for tp in [tp for tp in owned if tp in self.dropped]:
            start = self.start_of(tp) if self.start_of is not None else None
            if tp in self.positions or start is None:
                # Judged since (in sequence from where it resumed), or where it resumes is not
                # known (a consumer that resets to the log's end): its own reset is all there is.
                self.dropped.discard(tp)
                continue
            handed = await self.seek(tp, start)  # raises mid-rebalance: left in `dropped`, tried again next time
            log.info("consumer_resumed_dropped", tp=f"{tp.topic}[{tp.partition}]", offset=start)
            self.dropped.discard(tp)
            if tp not in self.positions:  # a message judged while seeking keeps its place: repeats drop
                self.positions[tp] = start
                self.rewinding[tp] = Rewind(since=now, last_seek=now, handed=handed)
            sought.append(tp)
        return sought

    async def admit(self, m: Any) -> bool:
        if self.ready is not None and not self.ready():
            self.positions.clear()
            self.rewinding.clear()
            self.dropped.add(m.tp)
            return False
        expected = self.positions.get(m.tp)
        if expected is None and self.start_of is not None:
            expected = self.start_of(m.tp)
        if expected is not None and m.offset > expected and m.tp not in self.rewinding:
            skipped = await self._skipped(m.tp, expected, m.offset)
            if skipped is None:
                expected = m.offset  # nothing deliverable in between
            else:
                log.warning("consumer_skipped_offsets", tp=f"{m.topic}[{m.partition}]", first=skipped,
                            last=m.offset - 1, action="seeking back")
                self.positions[m.tp] = skipped
                now = self.clock()
                rewind = self.rewinding[m.tp] = Rewind(since=now, last_seek=now)
                rewind.handed = await self.seek(m.tp, skipped)
                return False
        if expected is None or m.offset == expected:
            rewound = self.rewinding.pop(m.tp, None)
            if rewound is not None:
                log.info("consumer_rewound", tp=f"{m.topic}[{m.partition}]", offset=m.offset, seeks=rewound.seeks,
                         dropped=rewound.dropped, took_s=round(self.clock() - rewound.since, 3))
            self.positions[m.tp] = m.offset + 1
            return True
        waiting = self.rewinding.get(m.tp)
        if waiting is not None and m.offset > expected:
            waiting.dropped += 1
            if waiting.handed is None or m.offset > waiting.handed:
                # Fetched before the seek but handed over after it: Faust moved its read offset
                # past it and would drop the messages the seek brings back. Seek again.
                waiting.last_seek, waiting.seeks = self.clock(), waiting.seeks + 1
                waiting.handed = await self.seek(m.tp, expected)
            # else queued before the last seek, which still holds: dropped
        else:
            log.info("consumer_repeated_offset", tp=f"{m.topic}[{m.partition}]", offset=m.offset, expected=expected)
        return False

    async def _skipped(self, tp: Any, first: int, before: int) -> int | None:
        if self.next_record is None:
            return first  # nothing to ask: every jump is a hole
        return await self.next_record(tp, first, before)


class LogReader:
    """Answers `NextRecord` from the broker with a consumer of its own (no group, the app's isolation
    level), started on first use: only jumps in the offsets cost a read, and most not even that.

    What it read of a partition is remembered (`ReadSpan`) and read on from there, without a seek:
    one fetch returns all the partition holds up to its end (or a megabyte), so it answers every
    jump up to there at once. Checked a fetch a jump, a backlog of small transactions (a commit
    marker every few records) was indexed at 180-300 anomalies a second, and a busy market's 540 a
    second kept up with only when the host had room (docs/benchmarks.md). Only "no record there" is
    taken from memory: a record remembered in a jump is read again before it is said skipped
    (retention may have removed it since; nothing adds one). Partitions stay assigned but paused
    between reads: a fetch left waiting on a partition at its end (a long poll) held up the next
    read of any other for up to half a second, and paused, an idle reader asks the broker nothing.

    A broker that is down or restarting is waited for, up to `patience` seconds (nothing of the
    app moves without it anyway): a message fetched just before the broker went away must not stop
    the worker over a check the broker will answer once it is back. A killed broker takes 15-20 s
    to come back here: a patience of seconds would stop the app in the middle of an outage it
    would outlive.
    """

    def __init__(self, bootstrap: str, read_committed: bool, patience: float = BROKER_PATIENCE_SECONDS,
                 poll: float = 0.2) -> None:
        self.bootstrap, self.read_committed = bootstrap, read_committed
        self.patience, self.poll = patience, poll
        self.consumer: AIOKafkaConsumer | None = None
        self.spans: dict[TopicPartition, ReadSpan] = {}  # per partition assigned, what was read of it

    def new_consumer(self) -> AIOKafkaConsumer:
        # earliest: a check from offset 0 of a log whose start retention moved on reads from there
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=READ_MAX_WAIT_MS,
                                isolation_level="read_committed" if self.read_committed else "read_uncommitted")

    async def _started(self, tp: Any, started: float) -> AIOKafkaConsumer:
        """The reader's consumer, started on first use; a broker away at that moment is waited for
        within the same patience (raising at once would stop the worker or the indexer in the middle of
        a broker restart it would outlive)."""
        loop = asyncio.get_running_loop()
        warned = None
        while self.consumer is None:
            consumer = self.new_consumer()
            try:
                await consumer.start()
            except KafkaConnectionError as exc:
                await consumer.stop()
                if loop.time() - started >= self.patience:
                    raise TimeoutError(f"could not reach the broker to read {tp.topic}[{tp.partition}] within "
                                       f"{self.patience:.0f} s: {exc}") from None
                if warned is None or loop.time() - warned >= WAIT_WARNING_SECONDS:
                    warned = loop.time()
                    log.warning("log_check_waiting", tp=f"{tp.topic}[{tp.partition}]", error=str(exc),
                                waited_s=round(warned - started, 1), gives_up_after_s=self.patience)
                await asyncio.sleep(max(self.poll, RECONNECT_SECONDS))
                continue
            self.consumer = consumer
            self.spans.clear()
        return self.consumer

    def _read_from(self, consumer: AIOKafkaConsumer, partition: TopicPartition, first: int) -> ReadSpan:
        """A new span of `partition` from `first` (sought there), the partition assigned beside those read before."""
        if partition not in self.spans:
            consumer.assign([*self.spans, partition])
            for other, span in self.spans.items():  # an assignment starts every partition afresh
                consumer.seek(other, span.position)
            consumer.pause(*self.spans)
        span = self.spans[partition] = ReadSpan(first, first)
        consumer.seek(partition, first)
        return span

    async def next_record(self, tp: Any, first: int, before: int) -> int | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        consumer = await self._started(tp, started)
        partition = TopicPartition(tp.topic, tp.partition)
        span = self.spans.get(partition)
        if span is not None and span.reaches(first):
            span.drop_below(first)
            if span.first_before(before) is not None:
                span = None  # a record remembered there: read it again before saying it was skipped
        if span is None or not span.reaches(first):
            span = self._read_from(consumer, partition, first)
        if not span.answers(before):
            consumer.resume(partition)
            try:
                await self._read_on(consumer, partition, span, first, before, started)
            finally:
                consumer.pause(partition)
        return self.spans[partition].first_before(before)

    async def _read_on(self, consumer: AIOKafkaConsumer, partition: TopicPartition, span: ReadSpan, first: int,
                       before: int, started: float) -> None:
        """Reads `partition` on until `span` tells what lies below `before`, within the reader's patience."""
        loop = asyncio.get_running_loop()
        warned = started
        # Bounded: the records up to `before` are all there (it was delivered); only an unreachable
        # broker keeps the read from getting there.
        while not span.answers(before):
            if loop.time() - started >= self.patience:
                raise TimeoutError(f"could not read {partition.topic}[{partition.partition}] from {first} to "
                                   f"{before} within {self.patience:.0f} s")
            batch = (await consumer.getmany(partition, timeout_ms=int(self.poll * 1000))).get(partition, [])
            # Past the records, and past the markers and aborted records that followed them.
            position = await consumer.position(partition)
            if position < span.position:  # moved back by something other than this reader: start again
                span = self._read_from(consumer, partition, first)
                continue
            span.extend((record.offset for record in batch), position)
            if loop.time() - warned >= WAIT_WARNING_SECONDS:
                warned = loop.time()
                log.warning("log_check_waiting", tp=f"{partition.topic}[{partition.partition}]", first=first,
                            before=before, waited_s=round(warned - started, 1), gives_up_after_s=self.patience)

    async def end_offsets(self, tps: Sequence[Any]) -> dict[Any, int]:
        """Each partition's end for this reader (under read_committed its last stable offset: a
        transaction still open is not yet there), asked of the broker: a consumer's own idea of it
        stops moving while the records it fetched wait to be taken."""
        if not tps:
            return {}
        consumer = await self._started(tps[0], asyncio.get_running_loop().time())
        try:  # bounded too: with the broker away the client's own timeout (40 s) outlasted every refresh
            ends = await asyncio.wait_for(
                consumer.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps]), self.patience)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the broker did not give the ends of {', '.join(sorted({tp.topic for tp in tps}))} "
                               f"within {self.patience:g} s") from None
        return {tp: ends[TopicPartition(tp.topic, tp.partition)] for tp in tps}

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
            self.spans.clear()


def in_sequence(app: faust.App, bootstrap: str) -> InSequence:
    """`InSequence` for `app`: ready once its tables are recovered and no rebalance is on, each
    partition resuming at the offset Faust sought to (its committed offset) or, never committed, at
    the start of its log, jumps checked with the broker, revoked partitions forgotten."""
    from_the_start = app.conf.consumer_auto_offset_reset == "earliest"

    def resume_offset(tp: Any) -> int | None:
        offset = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        if offset is not None and offset > 0:
            return int(offset)
        # Never committed (Faust keeps a committed 0 as None too): the consumer's reset reads from
        # the log's start, offset 0 or the first one retention left (a seek to 0 resets there). The
        # seek to committed offsets at the end of recovery leaves such a partition where the fetcher
        # was, and what it had fetched before (dropped while recovering) was never judged: on a new
        # group's first rebalance that lost each partition's first messages (the compose test's two
        # workers: 27 messages of two partitions, and one anomaly with them).
        return 0 if from_the_start else None

    def recovered() -> bool:
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # TableManager has it; its type does not say
        return bool(recovery.completed.is_set() and not recovery.in_recovery and not app.rebalancing)

    async def seek(tp: Any, offset: int) -> int | None:
        # In the consumer's own thread: Faust's `consumer.seek` changes the aiokafka consumer from
        # this one, racing its fetcher (measured: KeyError in `fetched_records`, the worker crashed).
        consumer = app.consumer
        thread = consumer._thread  # type: ignore[attr-defined]
        await thread.call_thread(thread.seek, tp, offset)
        # Faust's read offset: the last message its fetch loop handed over (it drops any below it).
        # Read after the seek, in the same step as it is reset: a message handed over from here on
        # is above it.
        handed = consumer._read_offset.get(tp)  # type: ignore[attr-defined]
        consumer._read_offset[tp] = offset  # type: ignore[attr-defined]  # what Faust's seek also sets
        return None if handed is None else int(handed)

    # Not `app.in_transaction`: Faust caches that property the first time it is read, and read here,
    # at start-up before the worker sets `in_worker`, it would stay False: the whole worker would then
    # run without transactions (outputs, state and offsets committed apart). That happened.
    exactly_once = app.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
    reader = LogReader(bootstrap, read_committed=exactly_once)
    sequence = InSequence(seek, ready=recovered, start_of=resume_offset, next_record=reader.next_record)

    @app.on_partitions_revoked.connect
    async def forget(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        sequence.forget(args[0] if args else kwargs.get("revoked", ()))

    @app.timer(interval=RESUME_CHECK_SECONDS)
    async def resume_dropped() -> None:
        if not sequence.dropped and not sequence.rewinding:
            return
        try:
            await sequence.resume(app.consumer.assignment())
        except Exception as exc:  # noqa: BLE001 - mid-rebalance the consumer refuses; the next tick retries
            log.warning("consumer_resume_failed", error=f"{type(exc).__name__}: {exc}")

    @app.on_before_shutdown.connect
    async def close_reader(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await reader.close()

    return sequence
