"""The Faust adapter without a broker: partition grouping, and the agent meeting unreadable state
(the table store itself is in test_state)."""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from builders import calm_flow, until

from adapters.faust.app import TakeProgress, by_partition, create_app
from adapters.faust.indexer import create_indexer_app
from adapters.kafka.keys import partition_of
from adapters.faust.sequence import InSequence
from adapters.kafka.codec import encode_batch
from domain.state import StateFormatError
from entrypoints.container import build_container
from entrypoints.settings import load_settings


def worker_app(settings: Any) -> Any:
    """The worker's Faust app as the container wires it, over `settings`."""
    container = build_container()
    return create_app(settings, lambda symbols, pools, tapes: container.streaming_detect(
        states=container.table_state_store(table=symbols), pool_states=container.table_pool_state_store(table=pools),
        tapes=container.table_tape_store(table=tapes)))


def test_events_are_grouped_by_partition_in_offset_order() -> None:
    events = [SimpleNamespace(message=SimpleNamespace(partition=p, offset=o))
              for p, o in [(1, 10), (0, 5), (1, 11), (0, 6), (2, 1)]]
    groups = by_partition(events)
    assert [(p, [e.message.offset for e in g]) for p, g in groups] == [(0, [5, 6]), (1, [10, 11]), (2, [1])]


def test_building_the_worker_app_leaves_it_transactional_once_it_runs_as_a_worker() -> None:
    """Faust caches `app.in_transaction` the first time anything reads it: read while the app is
    built (before the worker sets `in_worker`), it stays False and the worker runs without
    transactions, its outputs, state and offsets committed apart. Nothing may read it that early."""
    app = worker_app(load_settings(store="memory://", app_id="unit-transactional").streaming())
    assert "in_transaction" not in vars(app)  # not computed (and cached) yet
    app.in_worker = True  # what faust.Worker.on_start does
    assert app.in_transaction


@pytest.mark.parametrize(("given", "replicas"), [(None, 0), ("1", 1)])
def test_the_workers_tables_keep_the_standby_replicas_the_settings_give(monkeypatch, given: str | None,  # type: ignore[no-untyped-def]
                                                                        replicas: int) -> None:
    if given is not None:
        monkeypatch.setenv("STOCKANOMALY_TABLE_STANDBY_REPLICAS", given)
    app = worker_app(load_settings(store="memory://", app_id="unit-standby").streaming())
    assert app.conf.table_standby_replicas == replicas  # what Faust's partition assignor reads


@pytest.mark.asyncio
@pytest.mark.parametrize(("timeout", "heartbeat"), [(None, 3.0), ("6", 2.0), ("45", 3.0)])
async def test_a_killed_process_leaves_the_group_after_the_session_timeout_the_settings_give(
        monkeypatch, timeout: str | None, heartbeat: float) -> None:  # type: ignore[no-untyped-def]
    """Faust's own 60 s kept a killed worker's partitions from the others (and from its restarted
    self) for a minute; the consumers Faust builds take the setting, with heartbeats to match."""
    if timeout is not None:
        monkeypatch.setenv("STOCKANOMALY_KAFKA_SESSION_TIMEOUT", timeout)
    settings = load_settings(store="memory://", app_id="unit-session").streaming()
    expected = float(timeout or 10)
    for app in (worker_app(settings), create_indexer_app(settings, sink=None)):  # type: ignore[arg-type]
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.stop()  # never started: only its client's resources to let go
        assert (consumer._session_timeout_ms, consumer._heartbeat_interval_ms) == (expected * 1000, heartbeat * 1000)


@pytest.mark.asyncio
async def test_a_state_value_the_worker_cannot_read_stops_it_naming_the_format() -> None:
    """The first release kept pickles in the state table: the agent must neither run them nor judge
    the symbol from scratch and move on. It asks the app to stop, with the error that says why."""
    settings = load_settings(store="memory://", app_id="unit-unreadable-state").streaming()
    app = worker_app(settings)
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app.crash = crash  # type: ignore[method-assign]
    app.tables.recovery.completed.set()  # as a started worker's tables are once recovered
    async with app.detect_trades.test_context() as agent:  # type: ignore[attr-defined]
        app.symbol_state.data["ACME"] = pickle.dumps({"guard": None, "trades": 1})  # type: ignore[attr-defined]
        key, value = encode_batch("ACME", calm_flow(50))
        await agent.put(value, key=key, partition=partition_of("ACME", settings.partitions))  # ACME's own
        await until(lambda: crashes)
    assert len(crashes) == 1 and isinstance(crashes[0], StateFormatError)
    assert "state of 'ACME' was written as state format 1 (a pickled object" in str(crashes[0])


class _Fetched:
    """A message Faust's consumer tracks (weakly) until it is acknowledged."""


class _AwayProducer:
    """What the agent sends through with the broker away: nothing it sends is ever acknowledged."""

    def __init__(self) -> None:
        self.never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent = 0

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        self.sent += 1
        return self.never

    def create_batch(self) -> Any:
        return SimpleNamespace(append=lambda **record: True)

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        self.sent += 1
        return self.never


@pytest.mark.asyncio
async def test_a_worker_stopped_with_a_take_stuck_in_delivery_gives_it_up_after_the_grace_in_one_line(
        monkeypatch, logs_of) -> None:  # type: ignore[no-untyped-def]
    import adapters.faust.app as faust_app

    monkeypatch.setenv("STOCKANOMALY_STOP_GRACE", "0")
    settings = load_settings(store="memory://", app_id="unit-give-up").streaming()
    given_up: list[list[Any]] = []

    async def give_up_sends(producers: Any, patience: float) -> None:
        given_up.append(list(producers))

    monkeypatch.setattr(faust_app, "give_up_sends", give_up_sends)
    app = worker_app(settings)
    stopping = asyncio.Event()

    async def wait_until_stopped() -> None:
        await stopping.wait()

    app.wait_until_stopped = wait_until_stopped  # type: ignore[method-assign]
    away = _AwayProducer()
    monkeypatch.setattr(app.producer, "send", away.send)
    app.producer._producer = away  # type: ignore[attr-defined]  # the changelogs' (not transactional here)
    logs = logs_of(faust_app)
    app.tables.recovery.completed.set()
    async with app.detect_trades.test_context() as agent:  # type: ignore[attr-defined]
        partition = partition_of("ACME", settings.partitions)
        await agent.put(b"not a trade", key=b"ACME", partition=partition)  # a dead letter to deliver
        await until(lambda: away.sent and any(line["event"] == "batch" for line in logs))  # in delivery
        unacked = app.consumer._unacked_messages
        fetched_behind = _Fetched()  # a message fetched behind the take: never processed now
        unacked.add(fetched_behind)
        await asyncio.sleep(0.05)
        assert not any(line["event"] == "take_given_up" for line in logs)  # not before the stop
        stopping.set()
        await until(lambda: given_up)
    [said] = [line for line in logs if line["event"] == "take_given_up"]
    assert said["log_level"] == "warning" and said["stage"] == "delivering" and said["messages"] == 1
    assert said["offsets"] == [f"{settings.trades_topic}[{partition}]@0-0"]
    assert said["successor"] == "processes it again from the last committed offsets"
    assert given_up == [[away]] and len(unacked) == 0  # Faust's stop no longer waits for any message
    assert not any(line["event"] == "take_committed" for line in logs)
    getattr(app, "_say_stopped_without_broker")(None)  # what the consumer's stop then says of the group
    getattr(app, "_say_stopped_without_broker")(1.25)  # and of a broker that did not answer it
    refused, hung = [line for line in logs if line["event"] == "stopped_without_broker"]
    assert refused["offsets"] == "the take in hand was given up (take_given_up): its successor processes it again"
    assert "broker" not in refused and "abandoned_after_s" not in refused
    assert hung["log_level"] == "warning" and hung["abandoned_after_s"] == 1.2  # one decimal
    assert hung["broker"] == ("did not answer the consumer's stop (leaving the group): abandoned, its connections "
                              "closed")
    # The consumer's stop may wait on the broker for what is left of the grace: all of it once the
    # take was given up, so a floor.
    assert getattr(app, "_consumer_stop_patience")() == faust_app.LEAVE_PATIENCE


@pytest.mark.asyncio
async def test_table_recovery_asks_the_broker_for_changelog_end_offsets_under_exactly_once() -> None:
    # A transactional consumer knows a partition's last stable offset only after fetching from it;
    # before that it says None, and Faust's recovery would restore nothing (adapters.faust.recovery).
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    from adapters.faust.recovery import restore_tables_from_broker_offsets

    changelog = TP("app-state-changelog", 0)

    class NotYetFetched:
        def last_stable_offset(self, tp: TP) -> None:
            return None

        async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
            return {tp: 4 for tp in tps}

    thread = SimpleNamespace(consumer=SimpleNamespace(in_transaction=True),
                             _ensure_consumer=NotYetFetched)
    restore_tables_from_broker_offsets()
    assert await AIOKafkaConsumerThread._highwaters(thread, [changelog]) == {changelog: 4}


@pytest.mark.asyncio
async def test_table_recovery_counts_a_second_without_changelog_records_as_idle(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Under exactly-once recovery ends only after two idle waits for the next changelog record (the
    # commit markers at the changelogs' ends are never delivered); Faust waits 5 s each time.
    import inspect
    import re

    import faust.tables.recovery as faust_recovery

    from adapters.faust.recovery import RECOVERY_IDLE_SECONDS, end_recovery_sooner

    loop = inspect.getsource(faust_recovery.Recovery)
    assert re.search(r"asyncio\.wait_for\(\s*changelog_queue\.get\(\),\s*timeout=5\.0", loop), "Faust's wait moved"
    end_recovery_sooner()
    end_recovery_sooner()
    waits: list[float] = []

    async def wait_for(awaitable: Any, timeout: float) -> None:
        waits.append(timeout)
        awaitable.close()
        raise asyncio.TimeoutError

    monkeypatch.setattr(asyncio, "wait_for", wait_for)
    with pytest.raises(asyncio.TimeoutError):
        await faust_recovery.asyncio.wait_for(asyncio.sleep(60), timeout=5.0)
    assert waits == [RECOVERY_IDLE_SECONDS] == [1.0]
    # Everything else it uses of asyncio is asyncio's.
    assert (faust_recovery.asyncio.sleep, faust_recovery.asyncio.TimeoutError) == (asyncio.sleep, asyncio.TimeoutError)


def test_a_transaction_request_refused_while_the_last_one_ends_is_retried_soon() -> None:
    # CONCURRENT_TRANSACTIONS: the broker is still writing the previous transaction's markers. aiokafka
    # would wait its 100 ms retry backoff; the worker retries after 5 ms. Other refusals keep 100 ms.
    from aiokafka.errors import ConcurrentTransactions, CoordinatorLoadInProgressError
    from aiokafka.producer.sender import AddOffsetsToTxnHandler, AddPartitionsToTxnHandler, EndTxnHandler

    from adapters.faust.recovery import CONCURRENT_TRANSACTIONS_BACKOFF, retry_concurrent_transactions_soon

    retry_concurrent_transactions_soon()
    retry_concurrent_transactions_soon()
    wrapped_inside = EndTxnHandler.handle_response.__defaults__[0]  # type: ignore[attr-defined]
    assert not getattr(wrapped_inside, "_retry_soon", False)  # applying it twice wraps aiokafka's once
    txn = SimpleNamespace(txn_partitions={"already-added"}, transactional_id="t")
    sender = SimpleNamespace(_retry_backoff=0.1, _txn_manager=txn)
    concurrent, loading = ConcurrentTransactions.errno, CoordinatorLoadInProgressError.errno

    assert AddOffsetsToTxnHandler(sender, "group").handle_response(
        SimpleNamespace(error_code=concurrent)) == CONCURRENT_TRANSACTIONS_BACKOFF
    assert EndTxnHandler(sender, True).handle_response(SimpleNamespace(error_code=concurrent)) \
        == CONCURRENT_TRANSACTIONS_BACKOFF
    assert AddPartitionsToTxnHandler(sender, []).handle_response(
        SimpleNamespace(errors=[("trades", [(0, concurrent)])])) == CONCURRENT_TRANSACTIONS_BACKOFF
    assert EndTxnHandler(sender, True).handle_response(SimpleNamespace(error_code=loading)) == 0.1
    assert AddOffsetsToTxnHandler(sender, "group").handle_response(SimpleNamespace(error_code=loading)) == 0.1


def _event(offset: int, partition: int = 0) -> SimpleNamespace:
    from faust.types import TP

    return SimpleNamespace(message=SimpleNamespace(tp=TP("trades", partition), topic="trades", partition=partition,
                                                   offset=offset))


class _Stream:
    """A stream of queued events that records acknowledgements, flushes, seeks and commits (also the app)."""

    def __init__(self, *offsets: int | None) -> None:
        self.queue: asyncio.Queue[SimpleNamespace | None] = asyncio.Queue()
        self.handed: int | None = None  # the highest offset queued so far: Faust's read offset
        self.put(*offsets)
        self.acked: list[int] = []
        self.flushed: list[int] = []
        self.seeks: list[int] = []
        self.commits: list[dict[object, int]] = []  # each take's committed offsets (partition -> next offset)
        self.committing = False
        self.consumer = self.producer = self.transactions = self.tables = self
        self.in_transaction = True
        self.owned = {("trades", 0), ("trades", 1)}
        self._committed_offset: dict[object, int] = {}

    def put(self, *offsets: int | None) -> None:
        for o in offsets:
            self.queue.put_nowait(None if o is None else _event(o))
            if o is not None:
                self.handed = o

    def noack(self) -> _Stream:
        return self

    async def events(self):  # type: ignore[no-untyped-def]
        while (event := await self.queue.get()) is not None:
            yield event

    async def ack(self, event: SimpleNamespace) -> None:
        self.acked.append(event.message.offset)

    async def flush(self) -> None:
        self.flushed.append(len(self.acked))  # buffered writes are sent before the take is acknowledged

    def assignment(self) -> set[object]:
        return self.owned

    async def commit(self, offsets: dict[object, int], start_new_transaction: bool) -> None:
        assert self.flushed and self.flushed[-1] == len(self.acked)  # the take's writes are sent first
        assert len(offsets) == 1  # one partition's transaction per call (they run side by side)
        if self.commits and self.committing:
            self.commits[-1].update(offsets)  # another partition of the same take
        else:
            self.commits.append(dict(offsets))
        self.committing = True

    def on_commit(self, offsets: dict[object, int]) -> None:  # the tables' hook
        assert self.commits[-1] == offsets  # the tables hear of exactly what was committed
        self.committing = False

    async def seek(self, tp: object, offset: int) -> int | None:
        self.seeks.append(offset)
        handed, self.handed = self.handed, offset
        return handed


def _offsets(take: list[SimpleNamespace]) -> list[int]:
    return [e.message.offset for e in take]


@pytest.mark.asyncio
async def test_takes_are_cut_by_size_and_time_and_committed_once_finished_with() -> None:
    from adapters.faust.app import committed_takes

    fake = _Stream(0, 1, 2)
    takes = committed_takes(fake, fake, 2, 0.05)  # type: ignore[arg-type]
    assert _offsets(await takes.__anext__()) == [0, 1]  # full
    assert fake.acked == [] and fake.commits == []  # nothing acknowledged while it is processed
    assert _offsets(await takes.__anext__()) == [2]  # nothing more within 0.05 s: what there is
    assert fake.acked == [0, 1] and fake.commits == [{("trades", 0): 2}] and fake.flushed == [0]
    fake.put(3)  # arrives after a quiet spell: the fetch left waiting gets it
    assert _offsets(await takes.__anext__()) == [3]
    fake.put(None)  # the stream ends
    assert [t async for t in takes] == []
    assert fake.acked == [0, 1, 2, 3] and fake.commits[1:] == [{("trades", 0): 3}, {("trades", 0): 4}]


@pytest.mark.asyncio
async def test_a_take_the_agent_fails_on_is_neither_acknowledged_nor_committed() -> None:
    from adapters.faust.app import committed_takes

    fake = _Stream(0, 1, 2, 3, None)
    with pytest.raises(RuntimeError):
        async for take in committed_takes(fake, fake, 2, 0.05):  # type: ignore[arg-type]
            if 2 in _offsets(take):
                raise RuntimeError("detector bug")
    assert fake.acked == [0, 1] and fake.commits == [{("trades", 0): 2}]


@pytest.mark.asyncio
@pytest.mark.parametrize("stage", ["delivering", "committing"])
async def test_a_take_given_up_at_the_stop_is_neither_acknowledged_nor_committed(stage: str) -> None:
    from adapters.faust.app import committed_takes
    from adapters.faust.shutdown import TakeGivenUp

    fake = _Stream(0, 1, 2, 3, None)
    bounded: list[str] = []

    async def grace_over_for_the_second_take(work: Any, at: str) -> Any:
        bounded.append(at)
        if len(bounded) > 2 and at == stage:  # the first take's flush and commit went through
            work.close()
            raise TakeGivenUp(at)
        return await work

    with pytest.raises(TakeGivenUp):
        async for _ in committed_takes(fake, fake, 2, 0.05, bounded_by=grace_over_for_the_second_take):  # type: ignore[arg-type]
            pass
    assert fake.acked == [0, 1] and fake.commits == [{("trades", 0): 2}]
    assert bounded[:2] == ["delivering", "committing"]  # the flush, then the commit, each bounded


@pytest.mark.asyncio
async def test_a_repeated_offset_is_dropped_and_a_hole_is_read_again() -> None:
    from adapters.faust.app import committed_takes

    # 2 and 3 never delivered at first, then 1 repeated; after the seek back, 2 onwards again.
    fake = _Stream(0, 1, 4, 5, 1, 2, 3, 4, 5, None)
    sequence = InSequence(fake.seek)
    taken = [_offsets(t) async for t in committed_takes(fake, fake, 100, 0.05, sequence)]  # type: ignore[arg-type]
    assert sum(taken, []) == [0, 1, 2, 3, 4, 5]
    assert fake.seeks == [2]  # 5 was queued before the seek, which still holds: no second one
    assert fake.acked == [0, 1, 2, 3, 4, 5] and fake.commits[-1] == {("trades", 0): 6}


@pytest.mark.asyncio
async def test_a_take_commits_what_it_finished_per_partition_and_nothing_of_a_revoked_one() -> None:
    from adapters.faust.app import committed_takes

    fake = _Stream()
    for offset, partition in ((4, 0), (7, 1), (5, 0), (3, 2)):
        fake.queue.put_nowait(_event(offset, partition))
    fake.put(None)
    fake._committed_offset[("trades", 0)] = 1  # Faust's idea (stale after a rebalance) is not consulted
    taken = [_offsets(t) async for t in committed_takes(fake, fake, 100, 0.05)]  # type: ignore[arg-type]
    assert taken == [[4, 7, 5, 3]]
    # partition 2 was revoked while the take was in hand: its new owner starts again from its commit
    assert fake.commits == [{("trades", 0): 6, ("trades", 1): 8}]
    assert fake._committed_offset == {("trades", 0): 6, ("trades", 1): 8}


@pytest.mark.asyncio
async def test_the_gaps_faust_notes_at_offset_jumps_are_dropped_once_committed_past() -> None:
    from collections import defaultdict

    from faust.transport.consumer import Consumer
    from intervaltree import IntervalTree

    from adapters.faust.app import committed_takes

    # Read committed, every transaction's commit marker is a jump in the offsets, and Faust's fetcher
    # notes each as a gap; only Faust's own commit (not used) ever dropped them: the indexer grew by
    # one interval per worker take with anomalies, for as long as it ran.
    fake = _Stream(0, 2, 4, 6, None)
    fake._gap = defaultdict(IntervalTree)  # type: ignore[attr-defined]
    fake._committed_offset = defaultdict(lambda: None)  # type: ignore[assignment]  # as Faust keeps it
    tp = ("trades", 0)
    for before, offset in ((0, 2), (2, 4), (4, 6)):
        await Consumer._add_gap(fake, tp, before + 1, offset)  # type: ignore[arg-type]  # as its fetcher does
    await Consumer._add_gap(fake, tp, 7, 9)  # type: ignore[arg-type]  # one beyond what the take holds
    assert len(fake._gap[tp]) == 4  # type: ignore[attr-defined]
    taken = [_offsets(t) async for t in committed_takes(fake, fake, 100, 0.05)]  # type: ignore[arg-type]
    assert taken == [[0, 2, 4, 6]] and fake.commits == [{tp: 7}]
    assert [(i.begin, i.end) for i in sorted(fake._gap[tp])] == [(7, 10)]  # type: ignore[attr-defined]  # past the commit: kept


def test_the_local_store_is_rebuilt_unless_the_last_run_stopped_cleanly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from adapters.faust.app import CLEAN_STOP, discard_state_after_unclean_stop

    tables = tmp_path / "tables"
    assert not discard_state_after_unclean_stop(tables)  # a first start: nothing to discard
    (tables / "symbol-state-0.db").mkdir(parents=True)
    (tables / CLEAN_STOP).touch()
    assert not discard_state_after_unclean_stop(tables)  # clean stop: kept, marker consumed
    assert (tables / "symbol-state-0.db").exists() and not (tables / CLEAN_STOP).exists()
    assert discard_state_after_unclean_stop(tables)  # no marker: killed, so rebuilt from the changelog
    assert not tables.exists()


def test_a_second_worker_on_one_data_directory_is_refused_and_leaves_the_running_ones_tables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The second found no clean-stop marker (the first was running, so had not stopped) and deleted
    the running worker's RocksDB tables, then stopped on its taken web port."""
    from pathlib import Path

    from domain.errors import ConfigError

    settings = load_settings(store="rocksdb://", data_dir=str(tmp_path / "data"), app_id="unit-held").streaming()
    running = worker_app(settings)
    tables = Path(running.conf.tabledir)
    (tables / "symbol-state-0.db").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"^data directory '.*data' is in use by another worker on this host "
                                          r"\(pid \d+\): give each worker on a host its own STOCKANOMALY_DATA_DIR$"):
        worker_app(settings)
    assert (tables / "symbol-state-0.db").exists()


@pytest.mark.asyncio
async def test_messages_delivered_before_the_tables_are_recovered_are_left_for_later() -> None:
    from adapters.faust.app import committed_takes

    fake = _Stream(5, 6, 7, 5, 6, 7, 8, None)  # 5-7 early; recovery then seeks back to 5
    state = {"ready": False}

    def ready() -> bool:
        done = state["ready"]
        state["ready"] = fake.queue.qsize() <= 5  # recovered once the early ones are out
        return done

    sequence = InSequence(fake.seek, ready=ready)
    taken = [_offsets(t) async for t in committed_takes(fake, fake, 100, 0.05, sequence)]  # type: ignore[arg-type]
    assert sum(taken, []) == [5, 6, 7, 8] and fake.acked == [5, 6, 7, 8] and fake.seeks == []


@pytest.mark.asyncio
async def test_a_partition_resumes_at_its_committed_offset_whatever_comes_first() -> None:
    from adapters.faust.app import committed_takes

    fake = _Stream(9, 10, 7, 8, 9, 10, None)  # 9 and 10 fetched before the seek back to 7
    sequence = InSequence(fake.seek, start_of=lambda tp: 7)
    taken = [_offsets(t) async for t in committed_takes(fake, fake, 100, 0.05, sequence)]  # type: ignore[arg-type]
    assert sum(taken, []) == [7, 8, 9, 10] and fake.seeks == [7]


@pytest.fixture
def sequence_logs(logs_of: Any) -> list[dict[str, Any]]:
    """What `adapters.faust.sequence` logs, every level (conftest's `logs_of`)."""
    import adapters.faust.sequence as module

    return logs_of(module)


@pytest.mark.asyncio
async def test_a_full_buffer_behind_a_hole_costs_a_seek_back_only_per_message_handed_over_after_one(
        sequence_logs: list[dict[str, Any]]) -> None:
    """A restarted worker met a hole with Faust's buffer full behind it: seeking again for each of
    the 4,096 queued messages held its first take back by seconds. Only a message the fetch loop
    hands over after a seek (above what that seek reports as handed over) moves the read offset
    past the record awaited; the rest need no seek."""
    seeks: list[int] = []
    read = {"offset": 4100}  # Faust's read offset: the last message its fetch loop handed over

    async def seek(tp: object, offset: int) -> int | None:
        seeks.append(offset)
        handed, read["offset"] = read["offset"], offset
        return handed

    sequence = InSequence(seek, start_of=lambda tp: 0)
    admitted = [await sequence.admit(_event(o).message) for o in (0, 1, 2, 3, 5)]  # 4 never delivered
    assert admitted == [True, True, True, True, False] and seeks == [4]
    assert not any([await sequence.admit(_event(o).message) for o in range(6, 4101)])  # queued before it
    assert seeks == [4]
    read["offset"] = 4102  # the fetch loop handed 4101 and 4102 over after the seek: 4 would be dropped
    assert not await sequence.admit(_event(4101).message) and seeks == [4, 4]
    assert not await sequence.admit(_event(4102).message) and seeks == [4, 4]  # before the second seek
    assert [await sequence.admit(_event(o).message) for o in (4, 5, 6)] == [True, True, True]
    assert seeks == [4, 4]
    rewound = [e for e in sequence_logs if e["event"] == "consumer_rewound"]  # what an operator reads
    assert [(e["offset"], e["seeks"], e["dropped"]) for e in rewound] == [(4, 2, 4097)]


@pytest.mark.asyncio
async def test_a_partition_still_waiting_for_its_record_a_while_after_a_seek_back_is_sought_again(
        sequence_logs: list[dict[str, Any]]) -> None:
    """Should the consumer drop the record a seek went back for (a race with its fetch loop), the
    messages after it are all at or below what was handed over, so none makes admit seek again:
    the periodic `resume` does, once the partition has waited `REWIND_PATIENCE_SECONDS`."""
    from faust.types import TP

    from adapters.faust.sequence import REWIND_PATIENCE_SECONDS

    seeks: list[int] = []
    now = {"t": 100.0}

    async def seek(tp: object, offset: int) -> int | None:
        seeks.append(offset)
        return 50  # everything up to 50 had been handed over

    sequence = InSequence(seek, start_of=lambda tp: 0, clock=lambda: now["t"])
    owned = [TP("trades", 0), TP("trades", 1)]
    assert [await sequence.admit(_event(o).message) for o in (0, 1, 3)] == [True, True, False] and seeks == [2]
    assert not await sequence.admit(_event(3).message)  # 2 lost again: 3 comes, at or below 50
    now["t"] += REWIND_PATIENCE_SECONDS - 0.1
    assert await sequence.resume(owned) == [] and seeks == [2]  # not yet
    now["t"] += 0.1
    told = len(sequence_logs)
    assert await sequence.resume(owned) == [TP("trades", 0)] and seeks == [2, 2]
    assert [e["event"] for e in sequence_logs[told:]] == ["consumer_rewind_stalled"]
    assert await sequence.resume(owned) == []  # just sought: waits its patience again
    assert [await sequence.admit(_event(o).message) for o in (2, 3)] == [True, True]
    now["t"] += REWIND_PATIENCE_SECONDS
    assert await sequence.resume(owned) == [] and seeks == [2, 2]  # caught up: nothing more to do


@pytest.mark.asyncio
async def test_a_revoked_partition_resumes_at_its_committed_offset_when_it_comes_back() -> None:
    fake = _Stream()
    sequence = InSequence(fake.seek, start_of=lambda tp: 3)
    assert [await sequence.admit(_event(o).message) for o in (3, 4, 5)] == [True, True, True]
    sequence.forget([("trades", 0)])  # revoked, then assigned again: Faust seeks back to the commit
    assert await sequence.admit(_event(3).message) and fake.seeks == []


@pytest.mark.asyncio
async def test_a_jump_over_transaction_markers_is_no_hole_but_a_skipped_record_is_read_again() -> None:
    """Read committed, a transactional topic's offsets jump over commit markers and aborted records:
    the log is asked what lies in a jump, and only a record there makes the consumer go back for it."""
    from adapters.faust.app import committed_takes

    log = {0, 2, 3, 7, 9}  # what a read-committed consumer can read (1, 4-6, 8: markers, aborted)
    asked: list[tuple[int, int]] = []

    async def next_record(tp: object, first: int, before: int) -> int | None:
        asked.append((first, before))
        return next((o for o in sorted(log) if first <= o < before), None)

    # 3 never delivered at first; after the seek back to it, 3 onwards again.
    fake = _Stream(0, 2, 7, 3, 7, 9, None)
    sequence = InSequence(fake.seek, next_record=next_record)
    taken = [_offsets(t) async for t in committed_takes(fake, fake, 100, 0.05, sequence)]  # type: ignore[arg-type]
    assert sum(taken, []) == [0, 2, 3, 7, 9]
    assert fake.seeks == [3] and asked == [(1, 2), (3, 7), (4, 7), (8, 9)]
    assert fake.commits[-1] == {("trades", 0): 10}


@pytest.mark.asyncio
async def test_a_partition_whose_messages_all_came_during_recovery_is_read_again_from_its_commit() -> None:
    """Seen on a takeover: every message of a partition was fetched while the tables were still
    recovering (so dropped), the recovery's seek ran before they arrived, and nothing newer came to
    show the hole: the partition stalled, its offsets never committed. `resume` seeks it back."""
    from faust.types import TP

    fake = _Stream()
    state = {"ready": False}
    sequence = InSequence(fake.seek, ready=lambda: state["ready"], start_of=lambda tp: 3)
    busy, quiet = TP("trades", 0), TP("trades", 1)
    assert not await sequence.admit(_event(3, 0).message) and not await sequence.admit(_event(8, 1).message)
    assert await sequence.resume([busy, quiet]) == [] and fake.seeks == []  # still recovering: nothing yet
    state["ready"] = True
    assert await sequence.admit(_event(3, 0).message)  # partition 0 came again by itself
    assert await sequence.resume([busy, quiet]) == [quiet] and fake.seeks == [3]
    assert not await sequence.admit(_event(9, 1).message)  # fetched before the seek: dropped, sought again
    assert await sequence.admit(_event(3, 1).message) and fake.seeks == [3, 3]
    assert await sequence.resume([busy, quiet]) == []  # done: nothing more to do, however often called
    sequence.dropped.add(quiet)
    sequence.forget([quiet])  # revoked meanwhile: its next owner starts from the commit anyway
    assert await sequence.resume([busy, quiet]) == []


@pytest.mark.asyncio
async def test_a_message_judged_while_resume_seeks_keeps_its_place() -> None:
    from faust.types import TP

    seeks: list[int] = []
    state = {"ready": False}

    async def seek(tp: object, offset: int) -> None:  # the partition's next message is judged meanwhile
        seeks.append(offset)
        assert await sequence.admit(_event(3, 1).message)

    sequence = InSequence(seek, ready=lambda: state["ready"], start_of=lambda tp: 3)
    assert not await sequence.admit(_event(5, 1).message)
    state["ready"] = True
    assert await sequence.resume([TP("trades", 1)]) == [TP("trades", 1)] and seeks == [3]
    assert not await sequence.admit(_event(3, 1).message)  # the seek's redelivery: a repeat, dropped
    assert await sequence.admit(_event(4, 1).message)


def test_the_worker_resumes_a_partition_never_committed_at_the_start_of_its_log() -> None:
    from faust.types import TP

    from adapters.faust.sequence import in_sequence

    app = worker_app(load_settings(store="memory://", app_id="unit-resume").streaming())
    sequence = in_sequence(app, "unused:9092")
    committed, fresh = TP("trades", 0), TP("trades", 1)
    app.consumer._committed_offset[committed] = 42  # what recovery's seek to committed offsets records
    assert sequence.start_of is not None
    assert (sequence.start_of(committed), sequence.start_of(fresh)) == (42, 0)


@pytest.mark.asyncio
async def test_a_new_groups_first_messages_fetched_during_recovery_are_read_again() -> None:
    """A new group's first rebalance: a worker fetched a partition's offsets 0-26 while recovering
    (dropped), and recovery's seek to committed offsets, there being none, left the fetcher at 27.
    The message at 27 is a jump from the log's start: the worker seeks back to 0 and judges 0 first."""
    fake = _Stream()
    state = {"ready": False}

    async def next_record(tp: object, first: int, before: int) -> int | None:
        return first  # every offset of this partition holds a trade

    sequence = InSequence(fake.seek, ready=lambda: state["ready"], start_of=lambda tp: 0, next_record=next_record)
    assert not any([await sequence.admit(_event(offset).message) for offset in range(27)])  # recovering
    state["ready"] = True
    assert not await sequence.admit(_event(27).message) and fake.seeks == [0]
    assert not await sequence.admit(_event(28).message)  # fetched before the seek went through
    assert [await sequence.admit(_event(offset).message) for offset in range(29)] == [True] * 29


class _SilentBroker:
    """A reader's consumer whose broker went away: asked for end offsets, it never answers (the
    client's own request timeout is 40 s)."""

    async def end_offsets(self, partitions: list[object]) -> dict[object, int]:
        await asyncio.Event().wait()
        return {}


@pytest.mark.asyncio
async def test_the_indexers_lag_read_of_the_log_ends_gives_up_within_its_patience() -> None:
    """The indexer refreshes its lag every 5 s with a reader of that patience: a refresh hung for
    the client's 40 s with the broker away (Faust's `refresh_lag is overlapping` warnings, and a
    `metrics_refresh_recovered` that undercounted the outage)."""
    from adapters.faust.sequence import LogReader

    reader = LogReader("unused:9092", read_committed=True, patience=0.05, poll=0.0)
    reader.consumer = _SilentBroker()  # type: ignore[assignment]
    with pytest.raises(TimeoutError, match="the broker did not give the ends of anomalies, incidents within 0.05 s"):
        await asyncio.wait_for(reader.end_offsets([SimpleNamespace(topic="anomalies", partition=0),
                                                   SimpleNamespace(topic="incidents", partition=1)]), 5.0)


def test_the_worker_creates_its_table_changelogs_as_faust_would_before_its_consumer_starts() -> None:
    """Every table's changelog, with the cleanup policy Faust gives it and segments small enough to
    be compacted within minutes (what a takeover reads back), is among the topics the worker makes
    sure of before it joins the group (entrypoints.topics.before_start)."""
    from entrypoints.topics import changelog_topics

    app = worker_app(load_settings(store="memory://", app_id="unit-changelogs").streaming())
    assert changelog_topics(app) == {
        f"unit-changelogs-{table}-changelog": {"cleanup.policy": "compact", "segment.bytes": "16777216"}
        for table in ("symbol-state", "pool-state", "tape-state", "incident-state")}
    transport = app.transport
    for table in app.tables.values():  # the configs Faust itself would create them with
        topic = table.changelog_topic
        want = {**transport._topic_config(compacting=topic.compacting, deleting=topic.deleting), **topic.config}
        assert changelog_topics(app)[topic.get_topic_name()] == want


def test_the_workers_start_check_creates_the_changelogs_with_the_other_topics(monkeypatch) -> None:
    import entrypoints.topics as topics

    settings = load_settings(store="memory://", app_id="unit-start-check").streaming()
    app = worker_app(settings)
    asked: list[tuple[list[str], dict]] = []

    async def ensure_topics(bootstrap: str, names: list[str], partitions: int, **kwargs: Any) -> list[str]:
        asked.append((list(names), dict(kwargs["configs"])))
        return []

    monkeypatch.setattr(topics, "ensure_topics", ensure_topics)
    monkeypatch.setattr(sys, "argv", ["faust", "-A", "entrypoints.worker", "worker", "-l", "info"])
    prepared: list[bool] = []
    topics.before_start(app, settings, "worker", lambda: prepared.append(True))
    app.on_worker_init.send()  # what `faust -A entrypoints.worker worker` does before its consumer starts
    [(names, configs)] = asked
    assert names == [settings.trades_topic, settings.anomalies_topic, settings.incidents_topic, settings.dlq_topic,
                     *topics.changelog_topics(app)]
    assert configs == topics.changelog_topics(app) and len(configs) == 4
    assert prepared == [True]  # then the data directory and the metrics endpoint


@pytest.mark.parametrize("argv", [
    ["faust", "-A", "entrypoints.worker", "worker", "--help"],
    ["faust", "-A", "entrypoints.worker", "--help"],
    ["faust", "-A", "entrypoints.worker", "-l", "info", "tables"],
    ["faust", "-A", "entrypoints.worker"],
], ids=["worker-help", "faust-help", "another-command", "no-command"])
def test_faust_help_or_another_command_creates_no_topic_and_binds_no_port(monkeypatch, argv: list[str]) -> None:
    """Faust prepares the app (on_worker_init) for any command line naming it: `worker --help` used to
    create the topics on the configured Kafka and bind the metrics and web ports."""
    import entrypoints.topics as topics

    settings = load_settings(store="memory://", app_id="unit-help").streaming()
    app = worker_app(settings)
    asked: list[list[str]] = []

    async def ensure_topics(bootstrap: str, names: list[str], partitions: int, **kwargs: Any) -> list[str]:
        asked.append(list(names))
        return []

    monkeypatch.setattr(topics, "ensure_topics", ensure_topics)
    monkeypatch.setattr(sys, "argv", argv)
    prepared: list[bool] = []
    topics.before_start(app, settings, "worker", lambda: prepared.append(True))
    app.on_worker_init.send()
    assert asked == [] and prepared == []


@pytest.mark.parametrize(("argv", "starts"), [
    (["faust", "-A", "entrypoints.worker", "worker", "-l", "info"], True),
    (["/venv/lib/faust/__main__.py", "-A", "entrypoints.indexer", "worker", "--without-web"], True),
    (["faust", "--app=entrypoints.worker", "-l", "info", "worker"], True),
    (["faust", "-A", "entrypoints.worker", "worker", "-h", "host.example"], True),  # -h: the worker's --web-host
    (["faust", "-A", "entrypoints.worker", "worker", "--help"], False),
    (["faust", "-A", "entrypoints.worker", "agents"], False),
])
def test_starts_worker_reads_faust_command_line(argv: list[str], starts: bool) -> None:
    from entrypoints.topics import starts_worker

    assert starts_worker(argv) is starts


def test_a_windowed_tables_changelog_keeps_its_retention() -> None:
    from datetime import timedelta

    from entrypoints.topics import changelog_topics

    def table(name: str, retention: object) -> SimpleNamespace:
        topic = SimpleNamespace(compacting=True, deleting=True, retention=retention, config=None,
                                get_topic_name=lambda: name)
        return SimpleNamespace(changelog_topic=topic)

    app = SimpleNamespace(tables={"a": table("a-changelog", timedelta(hours=1)), "b": table("b-changelog", 90.5)})
    assert changelog_topics(app) == {
        "a-changelog": {"cleanup.policy": "compact,delete", "retention.ms": "3600000"},
        "b-changelog": {"cleanup.policy": "compact,delete", "retention.ms": "90500"}}


def test_the_state_tables_rocksdb_write_buffers_stay_small_beside_their_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Faust's defaults (3 write buffers of 64 MiB per table and partition: 3 GiB over the 16
    databases of 4 partitions) for ~1.25 MB of state a table partition holds: a worker's RSS grew
    twice as much over a generated day at 2,000 symbols. The options each table's RocksDB is built
    from cap them."""
    from faust.stores.rocksdb import RocksDBOptions

    app = worker_app(load_settings(store="rocksdb://", data_dir=str(tmp_path), app_id="unit-rocksdb").streaming())
    tables = {name: table for name, table in app.tables.items()
              if name in ("symbol-state", "pool-state", "tape-state", "incident-state")}
    assert len(tables) == 4
    for table in tables.values():
        extra = {k: v for k, v in table.options.items() if k not in ("driver", "read_only")}
        options = RocksDBOptions(**extra)
        assert table.options["driver"] == "rocksdict"
        assert options.write_buffer_size * options.max_write_buffer_number <= 8 * 1024 * 1024


def test_the_state_tables_rocksdb_block_cache_stays_small_however_long_the_worker_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Faust gives each table's RocksDB a block cache of 2 GiB (32 GiB over the 16 databases of 4
    partitions), and the worker reads every key of its symbol-state table every 5 s (`len(table)`
    for stockanomaly_state_symbols), so each flushed or compacted file's blocks went into the cache
    and stayed there after compaction deleted the file: at 2,000 symbols and a generated day at x10
    one worker's RSS grew all session long (symbol-state's caches 210 MB after 10 minutes). Here a
    table's database, opened as the worker opens it, is written and read back as the worker does,
    round after round: its block cache stays within a few MiB."""
    import os

    from faust.stores.rocksdb import RocksDBOptions

    app = worker_app(load_settings(store="rocksdb://", data_dir=str(tmp_path), app_id="unit-block-cache").streaming())
    table = app.tables["symbol-state"]
    db = RocksDBOptions(**{k: v for k, v in table.options.items() if k not in ("driver", "read_only")}).open(
        tmp_path / "symbol-state-0.db")
    usage = []
    for _ in range(12):  # ~2,000 symbols' ~2 KB states a round: a flush, now and then a compaction
        for k in range(2000):
            db[f"SYM{k:05d}".encode()] = os.urandom(2048)
        assert sum(1 for _ in db.keys()) == 2000  # what len(table) reads
        usage.append(db.property_int_value("rocksdb.block-cache-usage"))
    db.close()
    assert max(usage) <= 8 * 1024 * 1024, [u // 1024 for u in usage]


def test_every_topic_the_streaming_processes_create_has_the_replication_factor_the_settings_give(
        monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every topic (changelogs and Faust's own included) was created with one copy whatever the
    cluster: on three brokers, losing one lost trades, anomalies and state."""
    from click.testing import CliRunner

    import adapters.kafka.producer as producer
    import entrypoints.topics as topics
    from entrypoints.cli import main

    monkeypatch.setenv("STOCKANOMALY_REPLICATION_FACTOR", "3")
    settings = load_settings(store="memory://", app_id="unit-replicas").streaming()
    assert worker_app(settings).conf.topic_replication_factor == 3
    assert create_indexer_app(settings, sink=None).conf.topic_replication_factor == 3  # type: ignore[arg-type]

    asked: list[tuple[list[str], int]] = []

    async def ensure(bootstrap: str, names: list[str], partitions: int, replication_factor: int = 1,
                     **_: Any) -> list[str]:
        asked.append((names, replication_factor))
        return []

    monkeypatch.setattr(topics, "ensure_topics", ensure)
    topics.require_topics(settings, "worker", {"unit-replicas-symbol-state-changelog": {}})
    assert asked == [(["trades", "anomalies", "incidents", "trades.dlq", "unit-replicas-symbol-state-changelog"], 3)]

    made: list[int] = []

    class Publisher:  # what ingest would create its topics with is all this needs
        def __init__(self, *args: Any, replication_factor: int, **kwargs: Any) -> None:
            made.append(replication_factor)
            raise SystemExit(0)

    monkeypatch.setattr(producer, "KafkaTradePublisher", Publisher)
    day = tmp_path / "day.csv"
    day.write_text("ts_event,price,size,symbol\n2025-05-05T14:00:00Z,100,10,ACME\n")
    for flags in ([], ["--replication-factor", "2"]):
        CliRunner().invoke(main, ["ingest", *flags, str(day)])
    assert made == [3, 2]


def test_the_progress_line_sums_the_committed_takes_since_the_last_one() -> None:
    """At INFO the worker logged a `batch` line per partition and a `take_committed` line per take:
    2,500 lines a minute under load. Now one `progress` line a minute sums what was committed."""
    progress = TakeProgress()
    assert progress.line() is None  # a minute without a committed take: no line
    progress.committed({"messages": 3, "accepted": 6_000, "anomalies": 1, "dead_letters": 0})
    progress.committed({"messages": 2, "accepted": 4_000, "anomalies": 0, "dead_letters": 2, "suppressed": 1})
    progress.committed({})  # a take that committed nothing of its own (its partitions were revoked)
    assert progress.line() == {"takes": 3, "messages": 5, "accepted": 10_000, "anomalies": 1, "dead_letters": 2,
                               "suppressed": 1}
    assert progress.line() is None  # counted once
