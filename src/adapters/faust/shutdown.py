"""A worker stopped while the broker is away stops at once: its consumer (a fix to aiokafka 0.14's
consumer stop, as faust-streaming 0.15's consumer thread meets it), and a take the outage caught in
the middle (`StopGrace`, `give_up_sends`).

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

A broker that is hung (or cut off without a reset) rather than down refuses nothing: every request
waits for its timeout. The consumer's stop first leaves the group (aiokafka's `GroupCoordinator.close`
sends a LeaveGroup and awaits the answer, for the consumer's `request_timeout_ms`: Faust's
`broker_request_timeout`, 90 s), so the thread outlived mode's 60 s again, with the traceback of that
timeout and then the thread's own ("Event loop is closed": it ended after the worker's loop). Measured:
SIGTERM with a take in delivery and the broker SIGSTOPped, the take given up after the 5 s grace, the
LeaveGroup sent 1.5 s later and failed 90 s after that; exit after 97 s. Hence a patience for the
consumer's stop too (what is left of the stop's grace, at least a floor once it is over): past it the
stop is abandoned (cancelled where it waits), the fetcher's tasks cancelled and the connections closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import structlog
from aiokafka.errors import KafkaError
from aiokafka.producer.transaction_manager import TransactionResult
from aiokafka.protocol.group import LeaveGroupRequest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

log = structlog.get_logger()

T = TypeVar("T")


class ConsumerStop(enum.Enum):
    """How a consumer's stop ended."""

    STOPPED = "stopped"  # as aiokafka does it: the broker answered, or there was nothing to ask it
    BROKER_AWAY = "broker_away"  # the broker refused (down): the fetcher's cancelled retry, finished here
    ABANDONED = "abandoned"  # the broker did not answer within the patience (hung, or cut off)


async def stop_consumer(consumer: Any, patience: float | None = None) -> ConsumerStop:
    """`consumer.stop()` (an AIOKafkaConsumer), finished when aiokafka's fetcher re-raises the
    cancellation of a fetch it was retrying (BROKER_AWAY), and abandoned after `patience` seconds
    (None: none) of waiting on a broker that does not answer (ABANDONED): then it is cancelled where it
    waits (its LeaveGroup, as a rule), its fetcher's tasks are cancelled, and its connections closed,
    each within the patience again (a connection whose unsent bytes the broker does not read would
    otherwise wait for them). A stop that ends as usual but whose LeaveGroup failed (aiokafka logs
    that and goes on: the fetch it cancelled was not retrying just then) is BROKER_AWAY too: the group
    was not told. A stop that is itself cancelled is still cancelled."""
    leave_failed = _watch_leave_group(consumer)
    stopping = asyncio.ensure_future(consumer.stop())
    try:
        await asyncio.wait({stopping}, timeout=patience)
    except asyncio.CancelledError:
        stopping.cancel()
        raise
    if stopping.done():
        if not stopping.cancelled():
            stopping.result()  # an error of its own is the caller's
            return ConsumerStop.BROKER_AWAY if leave_failed() else ConsumerStop.STOPPED
        outcome = ConsumerStop.BROKER_AWAY
    else:
        outcome = ConsumerStop.ABANDONED
        stopping.cancel()
        await asyncio.wait({stopping})  # cancelled where it awaits a request or a task: it ends at once
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                # aiokafka's close re-raises the cancellation of a fetch it cancels (see above)
                await asyncio.wait_for(fetcher.close(), patience)
    client = getattr(consumer, "_client", None)
    if client is not None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(client.close(), patience)
    return outcome


def _watch_leave_group(consumer: Any) -> Callable[[], bool]:
    """Whether the LeaveGroup `consumer`'s stop sends has failed, asked after the stop: its group
    coordinator's requests are watched (this consumer's only). A static member sends none."""
    coordinator: Any = getattr(consumer, "_coordinator", None)
    send = getattr(coordinator, "_send_req", None)
    if send is None:
        return lambda: False
    failed: list[BaseException] = []

    async def send_watched(request: Any) -> Any:
        try:
            return await send(request)
        except Exception as exc:
            if isinstance(request, LeaveGroupRequest):
                failed.append(exc)
            raise

    coordinator._send_req = send_watched
    return lambda: bool(failed)


def stop_consumer_thread_without_broker() -> None:
    """Make Faust's consumer thread end its consumer with `stop_consumer` (idempotent), within the
    patience `when_stopped_without_broker` gave for its app (else without one)."""
    if getattr(AIOKafkaConsumerThread.on_thread_stop, "_without_broker", False):
        return

    async def on_thread_stop(self: AIOKafkaConsumerThread) -> None:
        # Faust's own, but for the consumer's stop: the thread's method queue first, then the consumer.
        await super(AIOKafkaConsumerThread, self).on_thread_stop()
        consumer = self._consumer
        if consumer is None:
            return
        patience = getattr(self.app, _PATIENCE, None)
        waited = patience() if patience is not None else None
        outcome = await stop_consumer(consumer, waited)
        if outcome is ConsumerStop.STOPPED:
            return
        abandoned_after = waited if outcome is ConsumerStop.ABANDONED else None
        said = getattr(self.app, _SAY, None)
        if said is not None:
            said(abandoned_after)
        else:
            log.warning("stopped_without_broker", group=self.app.conf.id, abandoned_after_s=abandoned_after)

    on_thread_stop._without_broker = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread.on_thread_stop = on_thread_stop  # type: ignore[method-assign]


_SAY = "_say_stopped_without_broker"
_PATIENCE = "_consumer_stop_patience"


def when_stopped_without_broker(app: Any, say: Callable[[float | None], None],
                                patience: Callable[[], float] | None = None) -> None:
    """`say` (one line of what the stop could not do) when `app`'s consumer stops with the broker away:
    given None when the broker refused, or the seconds after which a stop it did not answer was
    abandoned. `patience()`: those seconds, asked when the consumer's stop starts. Both are called on
    the consumer's thread."""
    setattr(app, _SAY, say)
    if patience is not None:
        setattr(app, _PATIENCE, patience)


# -- a take caught by the outage --------------------------------------------------------------------
# A take in hand when the worker is told to stop is finished first: Faust's stop waits for every
# message it handed over to be acknowledged (`Consumer.wait_empty`, no time limit), and then flushes
# and stops each producer (aiokafka's `stop` waits for every record it holds to be acknowledged).
# With the broker away, the take's sends never are: under exactly-once its producers are idempotent,
# and aiokafka retries an idempotent batch until it is delivered (`Sender._can_retry`; it expires one
# only while its partition has no known leader, after the 20 minutes of Faust's
# `producer_request_timeout`). Measured: a worker sent SIGTERM with a take in delivery, the broker
# stopped, was still waiting 90 s later. Hence a grace: once it has passed, the take is given up
# (the same worker, the broker paused then killed: it exits 8-9 s after the SIGTERM, at a 5 s grace).


class TakeGivenUp(Exception):
    """The stop's grace ran out while a take was `stage` ("delivering": its outputs and state sent, not
    all acknowledged; "committing": its transactions' commits sent, not all confirmed)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


class StopGrace:
    """How long a take in hand may still run once the worker is told to stop: `grace` seconds from the
    moment `stopped()` returns (Faust's `app.wait_until_stopped`, which returns when the stop starts),
    whichever take is in hand then (a stop that works through the messages fetched before it, the
    broker up, gives up the take in hand at that moment too). Watched from the first `within`, in the
    running loop."""

    def __init__(self, grace: float, stopped: Callable[[], Awaitable[Any]]) -> None:
        self.grace = grace
        self._stopped = stopped
        self._over: asyncio.Future[None] | None = None
        self._countdown: asyncio.Future[None] | None = None
        self._ends: float | None = None  # time.monotonic() when the grace runs out, once the stop started

    def _watch(self) -> asyncio.Future[None]:
        if self._over is None:
            loop = asyncio.get_running_loop()
            over: asyncio.Future[None] = loop.create_future()
            self._over = over

            def expire() -> None:
                if not over.done():
                    over.set_result(None)

            async def countdown() -> None:
                await self._stopped()
                self._ends = time.monotonic() + self.grace
                loop.call_later(self.grace, expire)  # a timer, not a task left sleeping at the exit

            self._countdown = asyncio.ensure_future(countdown())  # held: the loop keeps tasks weakly
        return self._over

    def remaining(self) -> float:
        """Seconds left of the grace (none once it is over; all of it while its countdown has not
        started). Safe from any thread: the consumer's stop, on the consumer's thread, is bounded by it."""
        ends = self._ends
        return self.grace if ends is None else max(0.0, ends - time.monotonic())

    @property
    def over(self) -> bool:
        """The grace has run out."""
        return self._over is not None and self._over.done()

    async def within(self, work: Awaitable[T], stage: str) -> T:
        """`work`'s result, unless the grace runs out first: then `work` is cancelled (an aiokafka send
        or commit cancelled is only no longer awaited: what it handed to its producer stays there, see
        `give_up_sends`) and TakeGivenUp(stage) raised. Once the grace is over, `work` is not started."""
        over = self._watch()
        if over.done():
            if asyncio.iscoroutine(work):
                work.close()
            raise TakeGivenUp(stage)
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        either: set[asyncio.Future[Any]] = {task, over}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait({task})  # its awaits are on futures: it ends at once
        raise TakeGivenUp(stage)


class SendsGivenUp(KafkaError):
    """What a producer still held when the worker gave its take up: never to be delivered by it."""

    retriable = False


def _fail_held(accumulator: Any, error: Exception) -> None:
    """Fail every batch `accumulator` (aiokafka's) holds, queued or in flight, and every future of
    theirs: nobody awaits them any more, so each one's exception is retrieved here (or asyncio logs
    "Future exception was never retrieved" for each, when it is collected)."""
    queued = [b for queue in accumulator._batches.values() for b in queue]
    for batch in queued:
        if batch.retry_count:
            # Sent once and queued again for a retry: its delivery's callback removes it from the
            # batches in flight, where aiokafka would have put it back before sending it again.
            accumulator._pending_batches.add(batch)
    batches = queued + list(accumulator._pending_batches)
    accumulator.fail_all(error)
    for batch in batches:
        for future in (batch.future, batch._drain_waiter, *(f for f, _ in batch._msg_futures)):
            if future.done() and not future.cancelled():
                future.exception()


def _requests_in_flight(sender: Any) -> list[asyncio.Task[Any]]:
    """The requests of `sender` (aiokafka's, for one producer) still running: its produce requests
    (`Sender._send_produce_req`) and transaction requests (a handler's `do`, the handler holding the
    sender). aiokafka keeps them in its sender routine's locals only, so they are found among the
    loop's tasks by the sender their coroutine runs for."""
    found = []
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if task.done() or frame is None:
            continue
        owner = frame.f_locals.get("self")
        if owner is sender or getattr(owner, "_sender", None) is sender:
            found.append(task)
    return found


async def give_up_sends(producers: Iterable[Any], patience: float) -> None:
    """Stop `producers` (aiokafka producers, side by side) without waiting for what they hold: each
    one's sender first (cancelled, it still awaits each request it has in flight: with the broker
    down these fail at once, with one that does not answer they wait for their request timeout, so
    this is bounded by `patience`), then every batch not yet acknowledged fails (`fail_all`, what
    aiokafka does itself when its sender dies: failed while its request was in flight, a batch's
    retry would find it gone and end the sender with a KeyError), so that Faust's flush and the
    producers' stops no longer wait for them, and then the producer itself, its connections closed.

    No transaction is committed or aborted here: a commit is only ever requested after every send of
    the take was acknowledged, and an abort would need the coordinator that is away (aiokafka's abort
    first waits for the pending batches, the very sends given up). The broker aborts each open
    transaction itself: when the partition's next producer (the successor, same transactional id)
    fences it, or after the transaction timeout (aiokafka's 60 s). A producer whose commit is under
    way (the take was given up committing, every send of it acknowledged) keeps what it holds: failing
    a batch there would let its commit go out without it."""

    async def give_up(producer: Any) -> None:
        try:
            await asyncio.wait_for(producer._sender.close(), patience)
        except Exception:  # noqa: BLE001 - timed out (cancelled with what it had in flight), or failed: given up
            pass
        # Cancelled, the sender awaits its requests in flight one by one, and a second cancellation
        # (the patience over) cancels only the one it awaits then: a broker that does not answer
        # leaves the others waiting. Closing the connections under them fails each at once, and a
        # produce request would put its batches back for a retry, failed below by then (a KeyError
        # that ends its task, "never retrieved"). Cancelled instead, they end at once and silently.
        left = _requests_in_flight(producer._sender)
        for request in left:
            request.cancel()
        if left:
            await asyncio.wait(left)
        txn = getattr(producer, "_txn_manager", None)
        if txn is None or txn.needs_transaction_commit() is not TransactionResult.COMMIT:
            _fail_held(producer._message_accumulator, SendsGivenUp("the worker stopped and gave its take up"))
        try:
            await asyncio.wait_for(producer.stop(), patience)
        except Exception:  # noqa: BLE001 - timed out, or whatever its stop met: what it held is given up
            await producer.client.close()

    await asyncio.gather(*(give_up(p) for p in producers))
