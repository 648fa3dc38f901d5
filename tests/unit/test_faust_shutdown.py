"""A consumer stopped while the broker is away, without a broker (adapters.faust.shutdown)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.group import LeaveGroupRequest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode.threads import QueueServiceThread

import adapters.faust.shutdown as shutdown

OffsetCommitRequest = object()  # another request of the coordinator's


class Consumer:
    """AIOKafkaConsumer's stop as aiokafka 0.14 does it with the broker away: the fetch task it
    cancels was sleeping before a retry, and the stop awaits it without absorbing the cancellation,
    before its client is closed."""

    def __init__(self, broker_away: bool) -> None:
        self.broker_away = broker_away
        self.client = SimpleNamespace(closed=0)

        async def close() -> None:
            self.client.closed += 1

        self._client = SimpleNamespace(close=close)

    async def stop(self) -> None:
        if self.broker_away:
            retry = asyncio.ensure_future(asyncio.sleep(10))  # the fetch's retry backoff
            await asyncio.sleep(0)
            retry.cancel()
            await retry  # raises CancelledError, as aiokafka's Fetcher.close does
        await self._client.close()


@pytest.mark.asyncio
async def test_a_consumer_stop_that_trips_over_a_cancelled_fetch_retry_is_finished_and_says_so() -> None:
    away = Consumer(broker_away=True)
    assert await shutdown.stop_consumer(away) is shutdown.ConsumerStop.BROKER_AWAY
    assert away.client.closed == 1  # its connections closed all the same
    up = Consumer(broker_away=False)
    assert await shutdown.stop_consumer(up, patience=5.0) is shutdown.ConsumerStop.STOPPED
    assert up.client.closed == 1


class Leaving(Consumer):
    """AIOKafkaConsumer's stop with the broker away but no fetch retrying just then: its fetcher closes
    quietly, and its group coordinator's LeaveGroup fails (aiokafka logs that and goes on)."""

    def __init__(self, leave_fails: bool, other_fails: bool = False) -> None:
        super().__init__(broker_away=False)
        self.leave_fails, self.other_fails = leave_fails, other_fails

        async def send_req(request: Any) -> None:
            fails = self.leave_fails if isinstance(request, LeaveGroupRequest) else self.other_fails
            if fails:
                raise KafkaConnectionError("no connection to the coordinator")

        self._coordinator = SimpleNamespace(_send_req=send_req)

    async def stop(self) -> None:
        # As GroupCoordinator.close does: a last offset commit may fail too; the LeaveGroup is tried.
        for request in (OffsetCommitRequest, LeaveGroupRequest("group", "member")):
            try:
                await self._coordinator._send_req(request)
            except KafkaConnectionError:
                pass
        await self._client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(("leave_fails", "other_fails", "outcome"), [
    (True, False, shutdown.ConsumerStop.BROKER_AWAY), (False, True, shutdown.ConsumerStop.STOPPED),
    (False, False, shutdown.ConsumerStop.STOPPED)], ids=["leave-failed", "other-request-failed", "left"])
async def test_a_consumer_stop_whose_leave_group_failed_says_the_broker_was_away(
        leave_fails: bool, other_fails: bool, outcome: shutdown.ConsumerStop) -> None:
    # Its fetch was not retrying when the stop cancelled it, so the stop ended as with the broker up:
    # the worker exited without saying that the group was not told (seen once in the broker-down test).
    consumer = Leaving(leave_fails, other_fails)
    assert await shutdown.stop_consumer(consumer, patience=5.0) is outcome
    assert consumer.client.closed == 1


class Hung(Consumer):
    """AIOKafkaConsumer's stop with a broker that is hung: its LeaveGroup is never answered. Its
    fetcher's close re-raises the cancellation of the fetch it cancels, as aiokafka's does; its
    client's close may hang too (a connection whose unsent bytes the broker does not read)."""

    def __init__(self, client_close_hangs: bool = False) -> None:
        super().__init__(broker_away=False)
        self.leave_cancelled = asyncio.Event()
        self.fetcher_closed = False
        client_close_hangs_ = client_close_hangs

        async def close_fetcher() -> None:
            self.fetcher_closed = True
            fetch = asyncio.ensure_future(asyncio.sleep(10))
            await asyncio.sleep(0)
            fetch.cancel()
            await fetch

        async def close_client() -> None:
            self.client.closed += 1
            if client_close_hangs_:
                await asyncio.Event().wait()

        self._fetcher = SimpleNamespace(close=close_fetcher)
        self._client = SimpleNamespace(close=close_client)

    async def stop(self) -> None:
        try:
            await asyncio.Event().wait()  # the LeaveGroup's answer
        except asyncio.CancelledError:
            self.leave_cancelled.set()
            raise


@pytest.mark.asyncio
@pytest.mark.parametrize("client_close_hangs", [False, True])
async def test_a_consumer_stop_the_broker_never_answers_is_abandoned_after_its_patience(
        client_close_hangs: bool) -> None:
    hung = Hung(client_close_hangs)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await shutdown.stop_consumer(hung, patience=0.1) is shutdown.ConsumerStop.ABANDONED
    # The patience for the stop, then at most as much again for each of the fetcher and the client.
    assert loop.time() - started < 1.0
    assert hung.leave_cancelled.is_set() and hung.fetcher_closed and hung.client.closed == 1


@pytest.mark.asyncio
async def test_a_consumer_stop_that_is_itself_cancelled_stays_cancelled() -> None:
    started = asyncio.Event()

    class Slow(Consumer):
        async def stop(self) -> None:
            started.set()
            await asyncio.sleep(10)

    slow = Slow(broker_away=False)
    task = asyncio.ensure_future(shutdown.stop_consumer(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.client.closed == 0


@pytest.mark.asyncio
async def test_the_consumer_thread_stops_its_consumer_and_says_once_what_it_could_not_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AIOKafkaConsumerThread, "on_thread_stop", AIOKafkaConsumerThread.on_thread_stop)
    queue_stopped: list[bool] = []

    async def stop_method_queue(self: Any) -> None:
        queue_stopped.append(True)

    monkeypatch.setattr(QueueServiceThread, "on_thread_stop", stop_method_queue)
    shutdown.stop_consumer_thread_without_broker()
    shutdown.stop_consumer_thread_without_broker()  # idempotent: wrapped once
    said: list[tuple[str, float | None]] = []
    for consumer in (Consumer(broker_away=True), Consumer(broker_away=False), Hung()):
        thread: Any = object.__new__(AIOKafkaConsumerThread)
        thread._consumer = consumer
        thread.app = SimpleNamespace(conf=SimpleNamespace(id="app"))
        shutdown.when_stopped_without_broker(
            thread.app, lambda after, name=type(consumer).__name__: said.append((name, after)), lambda: 0.05)
        await thread.on_thread_stop()
        assert thread._consumer.client.closed == 1
    assert queue_stopped == [True, True, True]  # Faust's own part of the stop, first
    # A stop with the broker up says nothing; one it refused says so; one it never answered, after how long.
    assert said == [("Consumer", None), ("Hung", 0.05)]


# -- a take caught by the outage: the stop's grace, and the sends given up ------------------------
class Stop:
    """Faust's `app.wait_until_stopped`, told when to return."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self) -> None:
        await self.event.wait()


@pytest.mark.asyncio
async def test_a_take_finishes_however_long_it_takes_while_the_worker_is_not_stopping() -> None:
    stop = Stop()
    grace = shutdown.StopGrace(0.0, stop.wait)
    slow = asyncio.Event()

    async def work() -> str:
        await slow.wait()
        return "done"

    task = asyncio.ensure_future(grace.within(work(), "delivering"))
    for _ in range(20):  # the loop goes round: a grace of 0 s is not counted before a stop
        await asyncio.sleep(0)
    assert not task.done()
    slow.set()
    assert await task == "done" and not grace.over


@pytest.mark.asyncio
async def test_the_grace_left_is_all_of_it_until_the_stop_and_none_once_it_is_over() -> None:
    stop = Stop()
    grace = shutdown.StopGrace(0.2, stop.wait)
    assert grace.remaining() == 0.2  # its countdown not even started
    stuck = Stuck()
    task = asyncio.ensure_future(grace.within(stuck.send(), "delivering"))
    await stuck.started.wait()
    assert grace.remaining() == 0.2  # the worker is not stopping
    stop.event.set()
    await asyncio.sleep(0.05)
    assert 0.0 < grace.remaining() < 0.2
    with pytest.raises(shutdown.TakeGivenUp):
        await task
    assert grace.remaining() == 0.0


class Stuck:
    """A send to a broker that is away: it never ends, and says when it started and was cancelled."""

    def __init__(self) -> None:
        self.started, self.cancelled = asyncio.Event(), asyncio.Event()

    async def send(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.mark.asyncio
async def test_once_stopping_a_take_has_the_grace_then_is_given_up_and_cancelled() -> None:
    stop = Stop()
    grace = shutdown.StopGrace(0.0, stop.wait)
    stuck = Stuck()
    task = asyncio.ensure_future(grace.within(stuck.send(), "delivering"))
    await stuck.started.wait()
    stop.event.set()
    with pytest.raises(shutdown.TakeGivenUp) as given_up:
        await task
    assert given_up.value.stage == "delivering" and stuck.cancelled.is_set() and grace.over

    ran: list[str] = []

    async def commit() -> None:
        ran.append("commit")

    with pytest.raises(shutdown.TakeGivenUp) as given_up:  # the grace is over: not even started
        await grace.within(commit(), "committing")
    assert given_up.value.stage == "committing" and ran == []


@pytest.mark.asyncio
async def test_a_take_that_finishes_within_the_grace_is_kept_and_its_errors_are_its_own() -> None:
    stop = Stop()
    grace = shutdown.StopGrace(600.0, stop.wait)
    stop.event.set()
    step = asyncio.Event()

    async def delivered() -> int:
        await step.wait()
        return 7

    task = asyncio.ensure_future(grace.within(delivered(), "delivering"))
    await asyncio.sleep(0)
    step.set()
    assert await task == 7  # the stop began, the grace had not run out

    async def failed() -> None:
        raise ValueError("a send the broker refused")

    with pytest.raises(ValueError, match="refused"):
        await grace.within(failed(), "delivering")


@pytest.mark.asyncio
async def test_a_take_cancelled_while_within_the_grace_cancels_its_work() -> None:
    grace = shutdown.StopGrace(600.0, Stop().wait)
    stuck = Stuck()
    task = asyncio.ensure_future(grace.within(stuck.send(), "delivering"))
    await stuck.started.wait()
    task.cancel()  # Faust stopping the agent
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(stuck.cancelled.wait(), 5)


class Cluster:
    def leader_for_partition(self, tp: Any) -> int:
        return 1


class Producer:
    """An aiokafka producer's parts `give_up_sends` meets: a real message accumulator, a sender whose
    requests the broker never answers, and a stop that flushes the accumulator (as aiokafka's does)."""

    def __init__(self, committing: bool = False) -> None:
        from aiokafka.producer.message_accumulator import MessageAccumulator
        from aiokafka.producer.transaction_manager import TransactionResult

        self._message_accumulator = MessageAccumulator(Cluster(), 1000, 0, 1200)
        self.sender_closed = False
        self.stopped = False
        self.client = SimpleNamespace(closed=False)
        self._sender = SimpleNamespace(close=self._close_sender)
        self._txn_manager = SimpleNamespace(
            needs_transaction_commit=lambda: TransactionResult.COMMIT if committing else None)

        async def close_client() -> None:
            self.client.closed = True

        self.client.close = close_client  # type: ignore[attr-defined]

    async def _close_sender(self) -> None:
        try:
            await asyncio.Event().wait()  # awaiting a produce request the broker never answers
        except asyncio.CancelledError:
            self.sender_closed = True
            raise

    async def stop(self) -> None:
        await self._message_accumulator.close()
        self.stopped = True
        await self.client.close()


async def held_batches(producer: Producer) -> list[Any]:
    """Three batches of one record each, as a take's sends leave them with the broker away: one sent
    and queued again for a retry, one in flight, one never sent. Their records' futures."""
    from aiokafka.structs import TopicPartition

    acc = producer._message_accumulator
    futures = [await acc.add_message(TopicPartition("anomalies", p), b"k", b"v", timeout=1) for p in (0, 1)]
    drained, _ = acc.drain_by_nodes(ignore_nodes=set())
    retried = drained[1][TopicPartition("anomalies", 0)]
    acc.reenqueue(retried)  # its request failed (the connection closed): queued again
    futures.append(await acc.add_message(TopicPartition("anomalies", 2), b"k", b"v", timeout=1))
    return futures


@pytest.mark.asyncio
async def test_the_sends_of_a_take_given_up_fail_at_once_and_the_producer_stops_within_its_patience() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        producer = Producer()
        futures = await held_batches(producer)
        started = loop.time()
        await shutdown.give_up_sends([producer], patience=0.2)
        assert loop.time() - started < 5  # the sender's request waited out its patience, not more
        assert producer.sender_closed and producer.stopped and producer.client.closed
        failed = [type(f.exception()) for f in futures]
        assert failed == [shutdown.SendsGivenUp] * 3
        del futures, producer
        for _ in range(3):
            await asyncio.sleep(0)  # the batches' delivery callbacks run
        import gc

        gc.collect()  # a future whose exception nobody retrieved says so when collected
        assert errors == []  # aiokafka's callbacks found each batch where they expect it
    finally:
        loop.set_exception_handler(None)


@pytest.mark.asyncio
async def test_requests_the_cancelled_sender_left_in_flight_are_cancelled_before_the_connections_close() -> None:
    # aiokafka's sender, cancelled, awaits its requests in flight one by one, and the patience's
    # cancellation cancels only the one it awaits: the others would fail when the connections close
    # and put their batches, failed by then, back for a retry (a KeyError).
    producer = Producer()
    left: list[asyncio.Future[None]] = []

    class Sender:
        async def _send_produce_req(self) -> None:  # as aiokafka's: a method of the sender
            await asyncio.Event().wait()

        async def close(self) -> None:
            await asyncio.Event().wait()

    class Handler:  # a transaction request: the handler's `do`, the handler holding the sender
        def __init__(self, sender: Sender) -> None:
            self._sender = sender

        async def do(self) -> None:
            await asyncio.Event().wait()

    sender = Sender()
    producer._sender = sender  # type: ignore[assignment]
    elsewhere = asyncio.ensure_future(Sender()._send_produce_req())  # another producer's: left alone
    left = [asyncio.ensure_future(sender._send_produce_req()), asyncio.ensure_future(Handler(sender).do())]
    await asyncio.sleep(0)
    await shutdown.give_up_sends([producer], patience=0.05)
    assert all(request.cancelled() for request in left) and producer.client.closed
    assert not elsewhere.done()
    elsewhere.cancel()


@pytest.mark.asyncio
async def test_a_producer_committing_keeps_what_it_holds_and_its_stop_is_bounded_all_the_same() -> None:
    producer = Producer(committing=True)
    futures = await held_batches(producer)
    await shutdown.give_up_sends([producer], patience=0.2)
    assert not any(f.done() for f in futures)  # not failed: the commit would go out without them
    assert producer.sender_closed and not producer.stopped and producer.client.closed  # stop cut short
