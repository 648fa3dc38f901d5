"""A consumer stopped while the broker is away stops at once (a fix to aiokafka 0.14's consumer stop,
as faust-streaming 0.15's consumer thread meets it).

With the broker away, aiokafka's fetcher retries each fetch after `retry_backoff` (fetcher.py,
`_proc_fetch_request`: the sleep after "Failed fetch messages" is outside the `try` that absorbs a
cancellation), so a fetch task is nearly always in that sleep. `Fetcher.close()` cancels its fetch
tasks and awaits each without absorbing the cancellation (fetcher.py, `close`: `x.cancel(); await x`),
so `AIOKafkaConsumer.stop()` raises CancelledError there, before it closes its client. In a worker that
ends Faust's consumer thread (`AIOKafkaConsumerThread.on_thread_stop`) with an exception mode's
ServiceThread does not catch (`_start_thread` catches `Exception`, and CancelledError is not one): the
thread never says it has shut down, and the worker's stop waited mode's `shutdown_timeout` (60 s) for
it, then logged the timeout's traceback, and the thread's own traceback went to stderr, which Faust
logs a line at a time. Measured: SIGTERM 20 s into a broker outage, exit after 64 s.

The consumer had done everything else of its stop by then (its group coordinator closed, the fetch
task cancelled): what is left is closing its client's connections, done here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

log = structlog.get_logger()


async def stop_consumer(consumer: Any) -> bool:
    """`consumer.stop()` (an AIOKafkaConsumer), finished when aiokafka's fetcher re-raises the
    cancellation of a fetch it was retrying. False when it had to be finished here, i.e. the
    broker was away. A stop that is itself cancelled is still cancelled."""
    try:
        await consumer.stop()
        return True
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    client = getattr(consumer, "_client", None)
    if client is not None:
        await client.close()
    return False


def stop_consumer_thread_without_broker() -> None:
    """Make Faust's consumer thread end its consumer with `stop_consumer` (idempotent)."""
    if getattr(AIOKafkaConsumerThread.on_thread_stop, "_without_broker", False):
        return

    async def on_thread_stop(self: AIOKafkaConsumerThread) -> None:
        # Faust's own, but for the consumer's stop: the thread's method queue first, then the consumer.
        await super(AIOKafkaConsumerThread, self).on_thread_stop()
        consumer = self._consumer
        if consumer is not None and not await stop_consumer(consumer):
            said = getattr(self.app, _SAY, None)
            if said is not None:
                said()
            else:
                log.warning("stopped_without_broker", group=self.app.conf.id)

    on_thread_stop._without_broker = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread.on_thread_stop = on_thread_stop  # type: ignore[method-assign]


_SAY = "_say_stopped_without_broker"


def when_stopped_without_broker(app: Any, say: Callable[[], None]) -> None:
    """`say` (one line of what the stop could not do) when `app`'s consumer stops with the broker away;
    called on the consumer's thread, once the consumer is closed."""
    setattr(app, _SAY, say)
