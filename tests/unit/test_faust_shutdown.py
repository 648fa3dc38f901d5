"""A consumer stopped while the broker is away, without a broker (adapters.faust.shutdown)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode.threads import QueueServiceThread

import adapters.faust.shutdown as shutdown


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
    assert await shutdown.stop_consumer(away) is False
    assert away.client.closed == 1  # its connections closed all the same
    up = Consumer(broker_away=False)
    assert await shutdown.stop_consumer(up) is True
    assert up.client.closed == 1


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
    said: list[str] = []
    for away in (True, False):
        thread: Any = object.__new__(AIOKafkaConsumerThread)
        thread._consumer = Consumer(broker_away=away)
        thread.app = SimpleNamespace(conf=SimpleNamespace(id="app"))
        shutdown.when_stopped_without_broker(thread.app, lambda away=away: said.append(f"away={away}"))
        await thread.on_thread_stop()
        assert thread._consumer.client.closed == 1
    assert queue_stopped == [True, True]  # Faust's own part of the stop, first
    assert said == ["away=True"]  # a stop with the broker up says nothing
