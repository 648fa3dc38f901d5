"""DatabentoLiveSource: trades from the Databento live feed as micro-batches, reconnecting with backoff."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import structlog
from databento.common.error import BentoError
from databento_dbn import ErrorMsg, MBP1Msg, MBP10Msg, SymbolMappingMsg, SystemMsg, TradeMsg

from adapters.databento.dead_letters import origin, record as record_at
from adapters.databento.symbology import SYMBOL_WIDTH
from domain.errors import ConfigError, SourceError
from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk

log = structlog.get_logger()

API_KEY_ENV = "DATABENTO_API_KEY"
# The record type that carries the trades of each schema one can subscribe to.
TRADE_RECORD = {"trades": TradeMsg, "tbbo": MBP1Msg, "mbp-1": MBP1Msg, "mbp-10": MBP10Msg}
UNDEF_PRICE = np.iinfo(np.int64).max
RECENT_TRADES = 100_000  # keys remembered to drop the overlap a reconnect replays
_END = object()


class LiveClient(Protocol):
    """The part of `databento.Live` used here; tests pass a fake."""

    def subscribe(self, dataset: str, schema: str, symbols: Any, stype_in: str = ...,
                  start: Any = ...) -> Any: ...

    def __aiter__(self) -> Any: ...  # databento's LiveIterator: has __anext__

    def terminate(self) -> None: ...


class DatabentoLiveConnector:
    """Opens `databento.Live` clients. The API key comes only from the environment and stays in here:
    it is never part of a repr, a log line or an error message this adapter writes."""

    def __init__(self, key: str, client_class: Callable[..., LiveClient] | None = None) -> None:
        self._key = key
        self._client_class = client_class

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 client_class: Callable[..., LiveClient] | None = None) -> DatabentoLiveConnector:
        key = (os.environ if env is None else env).get(API_KEY_ENV, "").strip()
        if not key:
            raise ConfigError(f"{API_KEY_ENV} is not set: export your Databento API key to use --live")
        return cls(key, client_class)

    def __call__(self) -> LiveClient:
        if self._client_class is None:
            import databento

            return databento.Live(key=self._key)
        return self._client_class(key=self._key)

    def redact(self, text: str) -> str:
        return text.replace(self._key, "****")

    def __repr__(self) -> str:
        return "DatabentoLiveConnector(key=****)"


def _no_such_host(exc: BaseException) -> bool:
    """A connection that failed because its host name does not exist (EAI_NONAME). databento wraps
    the socket error in a BentoError, keeping only its text."""
    return isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_NONAME or (
        f"[Errno {socket.EAI_NONAME}]" in str(exc))


def _unknown_dataset(dataset: str) -> str:
    import databento

    known = {d.value for d in databento.Dataset}
    return "" if dataset in known else f" ({dataset} is none of the {len(known)} datasets databento knows)"


class Backoff:
    """Exponential delays between reconnects: initial, initial * factor, ... capped at maximum."""

    def __init__(self, initial: float = 0.5, factor: float = 2.0, maximum: float = 30.0) -> None:
        self.initial, self.factor, self.maximum = initial, factor, maximum
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class _TradeBuffer:
    """Live records -> trade rows, symbols from the session's SymbolMappingMsg records."""

    def __init__(self, schema: str, origin: str) -> None:
        self.record_type: type[Any] = TRADE_RECORD[schema]
        self.origin = origin
        self.symbols: dict[int, str] = {}
        self.rows: list[tuple[Any, ...]] = []
        self.letters: list[DeadLetter] = []
        self.recent: dict[tuple[int, int, int, int], None] = {}
        self.replay_until: int | None = None  # after a reconnect: drop repeats up to this ts_event
        self.last_ts: int | None = None
        self.index = 0

    def add(self, record: Any, redact: Callable[[str], str]) -> None:
        self.index += 1
        if isinstance(record, self.record_type) and _text(record.action) == "T":
            self._trade(record)
        elif isinstance(record, SymbolMappingMsg):
            out = record.stype_out_symbol
            # Same choice as databento's own mapping: the output symbol unless it is a bare id.
            self.symbols[record.instrument_id] = record.stype_in_symbol if out.isdigit() else out
        elif isinstance(record, ErrorMsg):
            log.warning("databento_live_error", error=redact(str(record.err)))
        elif isinstance(record, SystemMsg) and not _is_heartbeat(record):
            log.info("databento_live_system", message=redact(str(record.msg)))

    def _trade(self, record: Any) -> None:
        key = (record.publisher_id, record.instrument_id, record.ts_event, record.sequence)
        if self.replay_until is not None:
            if record.ts_event > self.replay_until:
                self.replay_until = None
            elif key in self.recent:
                return
        self.recent[key] = None
        if len(self.recent) > RECENT_TRADES:
            del self.recent[next(iter(self.recent))]
        symbol = self.symbols.get(record.instrument_id)
        where = origin(self.origin, record_at(self.index - 1))  # (`index` counts from 1)
        if symbol is None:
            self.letters.append(DeadLetter("unknown_instrument",
                                           f"instrument_id {record.instrument_id} has no symbol mapping yet",
                                           where, bytes(record)))
            return
        if len(symbol) > SYMBOL_WIDTH:  # cut to the width, two names could become one symbol
            self.letters.append(DeadLetter("bad_row", f"symbol longer than {SYMBOL_WIDTH} characters: {symbol!r} "
                                                      f"(instrument_id {record.instrument_id})",
                                           where, bytes(record)))
            return
        price = record.price
        self.rows.append((record.ts_event, record.ts_recv, np.nan if price == UNDEF_PRICE else price / 1e9,
                          record.size, record.publisher_id, record.instrument_id, record.sequence,
                          _text(record.side).encode()[:1] or b"N", int(record.flags), symbol))
        self.last_ts = record.ts_event if self.last_ts is None else max(self.last_ts, record.ts_event)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self) -> SourceChunk:
        trades = np.array(self.rows, TRADE_DTYPE) if self.rows else np.empty(0, TRADE_DTYPE)
        chunk = SourceChunk(trades, self.letters)
        self.rows, self.letters = [], []
        return chunk


class DatabentoLiveSource:
    """Async iterable of SourceChunks from a live subscription: a chunk every `flush_trades` trades
    or `flush_seconds` after the first unsent trade, whichever comes first.

    When the session ends or fails it reconnects after an exponential backoff, asking the gateway
    to replay from the last trade's ts_event (intraday replay) and dropping the trades it had
    already sent. `max_retries` consecutive failed attempts (None: never give up) end it with a
    SourceError. databento's own ReconnectPolicy is not used: it retries once, immediately, with
    no backoff and no replay of the gap.
    """

    def __init__(self, connect: Callable[[], LiveClient], dataset: str, schema: str = "trades",
                 symbols: Sequence[str] | str = "ALL_SYMBOLS", *, flush_trades: int = 2_000,
                 flush_seconds: float = 0.05, backoff: Backoff | None = None, max_retries: int | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep,
                 redact: Callable[[str], str] | None = None) -> None:
        if schema not in TRADE_RECORD:
            raise ConfigError(f"live schema must be one of {', '.join(TRADE_RECORD)}, got {schema!r}")
        self.connect, self.dataset, self.schema = connect, dataset, schema
        self.symbols = symbols if isinstance(symbols, str) else list(symbols)
        self.flush_trades, self.flush_seconds = flush_trades, flush_seconds
        self.backoff = backoff or Backoff()
        self.max_retries, self.sleep = max_retries, sleep
        self.redact = redact or getattr(connect, "redact", None) or (lambda text: text)
        self.sessions = 0

    def __aiter__(self) -> AsyncIterator[SourceChunk]:
        return self.chunks()

    async def chunks(self) -> AsyncIterator[SourceChunk]:
        buffer = _TradeBuffer(self.schema, f"live:{self.dataset}")
        while True:
            start = buffer.last_ts
            buffer.replay_until = start
            client: LiveClient | None = None
            received = 0
            try:
                client = self.connect()
                # subscribe() connects and authenticates, blocking: keep it off the event loop.
                await asyncio.to_thread(client.subscribe, dataset=self.dataset, schema=self.schema,
                                        symbols=self.symbols, stype_in="raw_symbol", start=start)
                self.sessions += 1
                log.info("databento_live_connected", dataset=self.dataset, schema=self.schema,
                         session=self.sessions, replay_from=start)
                async for chunk, count in self._session(client, buffer):
                    received += count
                    yield chunk
                reason = "session ended"
            except ValueError as exc:  # databento: authentication refused, bad subscription
                raise SourceError(f"databento live: {self.redact(str(exc))}") from None
            except (BentoError, OSError) as exc:
                reason = self.redact(f"{type(exc).__name__}: {exc}")
                if not self.sessions and _no_such_host(exc):
                    # Never connected, and the gateway's name does not exist (a DNS outage says "try
                    # again" instead): a misspelt dataset, or a machine that resolves no names. No
                    # retry would change either.
                    raise SourceError(f"databento live: the gateway of dataset {self.dataset!r} has no address "
                                      f"({reason}); check --dataset{_unknown_dataset(self.dataset)} and this "
                                      "machine's DNS") from None
            finally:
                _terminate(client)
            if received:  # the session worked: the next failure starts the backoff over
                self.backoff.reset()
            if self.max_retries is not None and self.backoff.failures >= self.max_retries:
                raise SourceError(f"databento live: gave up after {self.backoff.failures} reconnect attempts "
                                  f"({reason})")
            delay = self.backoff.next_delay()
            log.warning("databento_live_disconnected", reason=reason, retry_in_seconds=delay,
                        attempt=self.backoff.failures)
            await self.sleep(delay)

    async def _session(self, client: LiveClient, buffer: _TradeBuffer) -> AsyncIterator[tuple[SourceChunk, int]]:
        """Chunks of one session, with how many records arrived since the previous chunk."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100_000)
        pump = asyncio.create_task(_pump(client, queue))
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        count = 0
        try:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = None if deadline is None else max(0.0, deadline - loop.time())
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout)
                    except TimeoutError:
                        item = None
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    if len(buffer) or buffer.letters:
                        yield buffer.take(), count
                    raise item
                if item is not None:
                    count += 1
                    buffer.add(item, self.redact)
                    if deadline is None and (len(buffer) or buffer.letters):
                        deadline = loop.time() + self.flush_seconds
                due = deadline is not None and loop.time() >= deadline
                if len(buffer) >= self.flush_trades or (due and (len(buffer) or buffer.letters)):
                    yield buffer.take(), count
                    count, deadline = 0, None
            if len(buffer) or buffer.letters or count:
                yield buffer.take(), count
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)


async def _pump(client: LiveClient, queue: asyncio.Queue[Any]) -> None:
    """Move records from the client into the queue; its end or its error goes in last."""
    try:
        async for record in client:
            await queue.put(record)
        await queue.put(_END)
    except Exception as exc:  # handed to the reader, which re-raises it or reconnects
        await queue.put(exc)


def _terminate(client: LiveClient | None) -> None:
    if client is None:
        return
    try:
        client.terminate()
    except (ValueError, BentoError) as exc:  # never started, already closed
        log.debug("databento_live_terminate", error=type(exc).__name__)


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _is_heartbeat(record: SystemMsg) -> bool:
    return bool(record.is_heartbeat())
