"""A file ingest's dead letters go with the trades around their place in the file, and a resume sends each once.

The invariant, on the in-memory trade log (whose clock stamps messages and dead letters alike): a dead
letter standing before trade c of the source (its carrier; the last trade for one after them all) goes
right after the first message of the publish holding trade c. So every message of an earlier publish
is on the topic before it, no message of a later publish is, and of its own publish only the first:
the dead-letter topic is never ahead of the trades topic by more than that one publish.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from aiokafka.errors import LeaderNotAvailableError

from adapters.kafka.producer import KafkaTradePublisher
from adapters.memory import InMemoryTradeLog, Interrupted
from adapters.synthetic import generate_market
from application.ingest import PACE_TICK_SECONDS, IngestTrades, symbol_batches
from application.resume import plan_resume
from builders import calm_flow
from domain.model import DeadLetter
from domain.ports import IngestMark, SourceChunk

SOURCE = "0ddba11dead1e77e"
MARKET = generate_market(symbols=6, trades=6_000, seed=5).trades


class FakeClock:
    """Time moves only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


class LettersSource:
    """`trades` in chunks of `chunk_size`, with a dead letter before each trade position in `at` (the
    trades' count: `len(trades)` for one after them all). A letter between two chunks ends the first
    (as the merge gives a bad row after a chunk's last trade), or, `alone`, comes in a chunk of letters
    alone after it (as the readers give a file's last bad rows, or its unreadable rest)."""

    def __init__(self, trades: np.ndarray, at: list[int], chunk_size: int, alone: bool = False) -> None:
        self.trades, self.chunk_size, self.alone = trades, chunk_size, alone
        self.letters = [(p, DeadLetter("bad_row", "unparseable price '1l3.2'", f"day.csv, row {k} before {p}", b"x"))
                        for k, p in enumerate(sorted(at))]
        self.position = {letter.origin: p for p, letter in self.letters}

    def chunks(self) -> Iterator[SourceChunk]:
        n = len(self.trades)
        bounds = [*range(0, n, self.chunk_size), n] if n else [0, 0]
        for start, stop in zip(bounds, bounds[1:]):
            mine = [(p - start, d) for p, d in self.letters
                    if (start < p or p == start == 0) and (p < stop if self.alone else p <= stop)]
            yield SourceChunk(self.trades[start:stop], [d for _, d in mine], dead_letters_at=[k for k, _ in mine])
            between = [d for p, d in self.letters if p == stop and self.alone]
            if between:
                yield SourceChunk(self.trades[:0], between)


class StampedLog(InMemoryTradeLog):
    """The trade log, saying when (on `clock`) each dead letter was handed to it; with `letters_until`,
    interrupted once it holds that many (the crash of an ingest with no trades to send)."""

    def __init__(self, clock: FakeClock | None = None, letters_until: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.wall: list[float] = []
        self.wall_clock, self.letters_until = clock, letters_until

    async def publish_dead_letters(self, dead_letters: Sequence[DeadLetter], mark: IngestMark | None = None) -> None:
        for letter in dead_letters:
            if self.letters_until is not None and len(self.dead_letters) >= self.letters_until:
                raise Interrupted(f"interrupted after {len(self.dead_letters)} dead letters")
            await super().publish_dead_letters([letter], mark)
            self.wall.append(self.wall_clock.now() if self.wall_clock else 0.0)


def letters_at(trades: int, every: int, seed: int = 0) -> list[int]:
    """Dead letter positions: before the first trade, after the last, a run of three, and spread out."""
    rng = np.random.default_rng(seed)
    spread = rng.integers(0, trades + 1, max(1, trades // every)).tolist()
    return sorted([0, 0, trades // 2, trades // 2, trades // 2, trades, trades, *spread])


def assert_each_letter_after_the_publishes_before_its_carrier(log: InMemoryTradeLog, source: LettersSource) -> None:
    total = len(source.trades)
    messages = [(record.timestamp_ms, record.mark.first, record.mark.stop)
                for records in log.records for record in records if record.mark is not None]
    assert messages and len(log.dead_letters) == len(source.letters)
    for letter, stamp in zip(log.dead_letters, log.dead_letter_stamps):
        carrier = min(source.position[letter.origin], total - 1)
        earlier = [t for t, _, stop in messages if stop <= carrier]
        later = [t for t, first, _ in messages if first > carrier]
        own = sorted(t for t, first, stop in messages if first <= carrier < stop)
        assert all(t < stamp for t in earlier), letter.origin  # every trade of an earlier publish before it
        assert all(t > stamp for t in later), letter.origin  # no trade of a later publish
        assert [t for t in own if t < stamp] == own[:1], letter.origin  # of its own, the first message only


def rows(trades: np.ndarray) -> np.ndarray:
    """Each trade as one value holding every field, sorted: equal arrays hold the same trades as often."""
    return np.sort(np.ascontiguousarray(trades).view(np.dtype((np.void, trades.dtype.itemsize))))


def assert_each_once(log: InMemoryTradeLog, source: LettersSource) -> None:
    assert np.array_equal(rows(log.trades()), rows(source.trades))
    on_topic = Counter(d.origin for d in log.dead_letters)
    assert on_topic == Counter(d.origin for _, d in source.letters) and set(on_topic.values()) <= {1}


@pytest.mark.asyncio
@pytest.mark.parametrize("alone", [False, True], ids=["letters-in-their-chunk", "last-letters-alone"])
@pytest.mark.parametrize("chunk_size", [500, 6_000], ids=["chunks", "one-chunk"])
async def test_unpaced_a_dead_letter_goes_with_the_publish_of_the_trade_after_it(chunk_size: int, alone: bool) -> None:
    source = LettersSource(MARKET, letters_at(len(MARKET), 300), chunk_size, alone)
    log = StampedLog(partitions=4, message_trades=100)

    summary = await IngestTrades(log, batch_trades=100, source_id=SOURCE)(source)

    assert summary.dead_letters == len(source.letters)
    assert_each_once(log, source)
    assert_each_letter_after_the_publishes_before_its_carrier(log, source)


@pytest.mark.asyncio
@pytest.mark.parametrize("speed", [1.0, 60.0], ids=["realtime", "x60"])
async def test_paced_a_dead_letter_reaches_the_topic_when_the_trade_after_it_is_due_not_with_its_chunk(
        speed: float) -> None:
    """A thin day at real-time pace: one 3,000-trade chunk spans ten minutes; its letters went out at
    its start, up to ten minutes ahead of the trades around them."""
    trades = calm_flow(3_000, symbol="NVDA", rate=5.0)
    clock = FakeClock()
    source = LettersSource(trades, letters_at(len(trades), 200, seed=1), chunk_size=3_000, alone=True)
    log = StampedLog(clock, partitions=2, message_trades=100)

    await IngestTrades(log, batch_trades=100, pace=speed, clock=clock, source_id=SOURCE)(source)

    assert_each_once(log, source)
    assert_each_letter_after_the_publishes_before_its_carrier(log, source)
    due = 1_000.0 + (trades["ts_event"] - trades["ts_event"][0]) / 1e9 / speed
    late = 0.0
    for letter, wall in zip(log.dead_letters, log.wall):
        carrier = min(source.position[letter.origin], len(trades) - 1)
        # Sent with the tick's run its carrier is in: when the run's first trade was due.
        assert due[carrier] - PACE_TICK_SECONDS <= wall <= due[carrier], letter.origin
        late = max(late, wall - 1_000.0)
    assert late > 500 / speed  # the chunk's letters did not all go at its start


@pytest.mark.asyncio
@pytest.mark.parametrize("alone", [False, True], ids=["letters-in-their-chunk", "last-letters-alone"])
async def test_interrupted_at_every_message_a_resume_sends_each_dead_letter_once(alone: bool) -> None:
    trades = MARKET[:600]
    source = LettersSource(trades, letters_at(len(trades), 30, seed=2), chunk_size=110, alone=alone)
    whole = InMemoryTradeLog(partitions=3, message_trades=25)
    await IngestTrades(whole, batch_trades=25, source_id=SOURCE)(source)
    assert whole.sent.messages > 50
    for after in range(whole.sent.messages + 1):  # from before the first message to after the last
        log = StampedLog(partitions=3, message_trades=25, interrupt_after=after)
        try:
            await IngestTrades(log, batch_trades=25, source_id=SOURCE)(source)
        except Interrupted:
            pass
        log.interrupt_after = None
        plan = await plan_resume(log, source, SOURCE, "trades")  # type: ignore[arg-type]
        await IngestTrades(log, batch_trades=25, source_id=SOURCE, resume=plan)(source)
        assert_each_once(log, source)


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(8))
async def test_crashes_losing_messages_in_flight_and_resumed_again_and_again_send_each_dead_letter_once(
        seed: int) -> None:
    """Partitions end unevenly (what was in flight lost), resumes with other message sizes and pace."""
    rng = np.random.default_rng(seed)
    source = LettersSource(MARKET, letters_at(len(MARKET), 150, seed=seed), chunk_size=int(rng.choice([700, 2_500])),
                           alone=bool(seed % 2))
    log, plan = StampedLog(partitions=4, message_trades=int(rng.choice([40, 300]))), None
    for _ in range(4):
        log.interrupt_after = log.sent.messages + int(rng.integers(1, 60))
        clock = FakeClock()
        try:
            await IngestTrades(log, batch_trades=int(rng.choice([50, 500])), source_id=SOURCE, resume=plan,
                               pace=float(rng.choice([600.0, 6_000.0])) if rng.random() < 0.5 else None,
                               clock=clock)(source)
        except Interrupted:
            pass
        log.interrupt_after = None
        for p in range(4):
            if rng.random() < 0.3:
                log.lose_last(p, 1)  # (the dead letters handed are on their topic: a resume must not repeat them)
        plan = await plan_resume(log, source, SOURCE, "trades")  # type: ignore[arg-type]
    await IngestTrades(log, batch_trades=2_000, source_id=SOURCE, resume=plan)(source)
    assert_each_once(log, source)


@pytest.mark.asyncio
async def test_a_complete_ingest_resumed_sends_no_dead_letter_again_not_even_those_after_the_last_trade() -> None:
    source = LettersSource(MARKET, letters_at(len(MARKET), 500), chunk_size=1_000, alone=True)
    log = StampedLog(partitions=4, message_trades=100)
    await IngestTrades(log, batch_trades=100, source_id=SOURCE)(source)

    plan = await plan_resume(log, source, SOURCE, "trades")  # type: ignore[arg-type]
    summary = await IngestTrades(log, batch_trades=100, source_id=SOURCE, resume=plan)(source)

    assert (summary.trades, summary.dead_letters, summary.skipped) == (0, 0, len(MARKET))
    assert_each_once(log, source)


@pytest.mark.asyncio
@pytest.mark.parametrize("alone", [False, True], ids=["letters-in-a-chunk", "letters-alone"])
async def test_a_source_of_dead_letters_alone_sends_them_once_read_and_a_resume_those_not_on_their_topic(
        alone: bool) -> None:
    """No trade: nothing on the trades topic says which went, so a resume asks the dead-letter topic,
    where each letter of a file ingest is marked with its source."""
    source = LettersSource(MARKET[:0], [0] * 5, chunk_size=100, alone=alone)
    for until in range(6):
        log = StampedLog(partitions=4, letters_until=until)
        try:
            summary = await IngestTrades(log, source_id=SOURCE)(source)
        except Interrupted:
            assert len(log.dead_letters) == until < 5
        else:
            assert until == 5 and summary.dead_letters == 5
        log.letters_until = None
        plan = await plan_resume(log, source, SOURCE, "trades", log)  # type: ignore[arg-type]

        summary = await IngestTrades(log, source_id=SOURCE, resume=plan)(source)

        assert summary.dead_letters == 5 - until
        assert_each_once(log, source)
        assert [d.origin for d in log.dead_letters] == [d.origin for _, d in source.letters]  # in file order
        assert {m.source for m in log.dead_letter_marks if m is not None} == {SOURCE}


def test_the_letters_source_puts_its_letters_where_it_says() -> None:
    trades = calm_flow(10, symbol="NVDA")
    for alone in (False, True):
        source = LettersSource(trades, [0, 4, 5, 10], chunk_size=5, alone=alone)
        found, read = [], 0
        for chunk in source.chunks():
            found += [(read + k, d.origin) for k, d in zip(chunk.letters_at(), chunk.dead_letters)]
            read += len(chunk.trades)
        assert [p for p, _ in found] == [0, 4, 5, 10]
        assert [source.position[o] for _, o in found] == [0, 4, 5, 10]



class StallingProducer:
    """aiokafka's producer as KafkaTradePublisher uses it: `send` queues a record and returns its
    delivery future; the `stall_at`-th send waits, as one does on a full batch, until `go` is set."""

    def __init__(self, stall_at: int) -> None:
        self.records: list[tuple[str, int | None]] = []
        self.stall_at, self.stalled, self.go = stall_at, asyncio.Event(), asyncio.Event()

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: object = None,
                   partition: int | None = None) -> asyncio.Future[None]:
        if len(self.records) + 1 == self.stall_at:
            self.stalled.set()
            await self.go.wait()
        self.records.append((topic, partition))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self) -> None:
        pass


@pytest.mark.asyncio
async def test_a_publish_cancelled_while_its_letters_are_queued_still_queues_them_all_with_its_first_message() -> None:
    """Ctrl-C lands on an await: between a publish's first message and its dead letters, the topic
    would hold the message, a resume would take the letters for sent, and they would be lost."""
    publisher = KafkaTradePublisher("unused:9092", "trades", "trades.dlq", partitions=4, message_trades=50)
    producer = StallingProducer(stall_at=3)  # the first message, a letter, then the next letter waits
    publisher._producer = producer  # type: ignore[assignment]
    letters = [DeadLetter("bad_row", "", f"day.csv, line {k}") for k in range(4)]
    publish = asyncio.ensure_future(publisher.publish(symbol_batches(MARKET[:600], 50), None, letters))
    await asyncio.wait_for(producer.stalled.wait(), timeout=5)

    publish.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publish
    producer.go.set()
    await publisher.flush()

    assert [topic for topic, _ in producer.records] == ["trades"] + ["trades.dlq"] * 4  # no more of the publish
    assert publisher.sent.dead_letters == 4 and publisher.sent.messages == 1


class FailingProducer:
    """aiokafka's producer with the broker gone past its patience: every delivery future fails."""

    def __init__(self) -> None:
        self.stopped = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: object = None,
                   partition: int | None = None) -> asyncio.Future[None]:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(LeaderNotAvailableError())
        return failed

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


@pytest.mark.asyncio
async def test_kafka_failing_every_delivery_stops_the_publisher_with_one_error_and_no_unread_failures() -> None:
    """The first failed delivery stops the ingest; the window's other failed deliveries are read too,
    or each is one more "Future exception was never retrieved" on stderr (508 of them in a run whose
    broker was cut for 75 s)."""
    loop = asyncio.get_running_loop()
    unread: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unread.append(context))
    publisher = KafkaTradePublisher("unused:9092", "trades", "trades.dlq", partitions=4, message_trades=50, window=8)
    producer = FailingProducer()
    publisher._producer = producer  # type: ignore[assignment]
    try:
        with pytest.raises(LeaderNotAvailableError):
            await publisher.publish(symbol_batches(MARKET[:2_000], 50), None, [])
        with pytest.raises(LeaderNotAvailableError):
            await publisher.stop()
        assert producer.stopped and publisher._producer is None
        del publisher  # the deliveries it held, forgotten: an unread failure is said as it is collected
        gc.collect()
    finally:
        loop.set_exception_handler(None)

    assert [context["message"] for context in unread] == []
