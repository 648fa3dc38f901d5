"""Ingest: per-symbol micro-batches, event-time pacing on a fake clock, and the live feed on a fake client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
from click.testing import CliRunner
import databento
from databento.common.error import BentoError
from databento_dbn import Action, ErrorMsg, Side, SType, SymbolMappingMsg, TradeMsg

from adapters.kafka.codec import decode, encode_batch
from adapters.kafka.databento_live import Backoff, DatabentoLiveConnector, DatabentoLiveSource
from adapters.memory import InMemoryTradeSource
from application.ingest import IngestTrades, Pacer, parse_pace, read_ahead, symbol_batches
from builders import S, T0, calm_flow
from domain.errors import ConfigError, SourceError
from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import Sent, SourceChunk
from entrypoints.cli import main

LIVE_SAMPLE = Path(__file__).resolve().parents[2].parent / "shared/data/databento/live-session.sample.dbn.zst"
SECRET = "db-TESTKEY0123456789abcdefghijk"


def interleaved(symbols: tuple[str, ...] = ("AAA", "BBB", "CCC"), per_symbol: int = 1_000) -> np.ndarray:
    flows = [calm_flow(per_symbol, symbol=s, seed=i, first_sequence=1) for i, s in enumerate(symbols)]
    merged = np.concatenate(flows)
    return merged[np.argsort(merged["ts_event"], kind="stable")]


class FakeClock:
    """Time moves only when someone sleeps (or when a test moves it)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.t = now
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class InMemoryPublisher:
    """The TradePublisher port over lists, keeping exactly what Kafka would get."""

    def __init__(self, clock: FakeClock | None = None, seconds_per_message: float = 0.0,
                 stall_after: int | None = None) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.dead_letters: list[DeadLetter] = []
        self.flushes = 0
        self.clock, self.seconds_per_message = clock, seconds_per_message
        self.sent_at: list[float] = []
        self.sent = Sent()
        self.stall_after = stall_after  # messages after which a publish waits forever (a full buffer)
        self.stalled = asyncio.Event()

    async def publish(self, runs: list[tuple[str, np.ndarray]], mark: object = None,
                      dead_letters: Sequence[DeadLetter] = ()) -> None:
        if not len(runs):
            await self.publish_dead_letters(dead_letters)
        for n, (symbol, trades) in enumerate(runs):  # one message per run, as a producer for one symbol would send
            if len(self.messages) == self.stall_after:
                self.stalled.set()
                await asyncio.Event().wait()
            key, value = encode_batch(symbol, trades)
            self.messages.append((key, value))
            if n == 0:
                await self.publish_dead_letters(dead_letters)
            self.sent.trades, self.sent.messages = self.sent.trades + len(trades), self.sent.messages + 1
            self.sent.bytes += len(value)
            if self.clock is not None:
                self.sent_at.append(self.clock.now())
                self.clock.t += self.seconds_per_message

    async def publish_dead_letters(self, dead_letters: Sequence[DeadLetter], mark: object = None) -> None:
        self.dead_letters.extend(dead_letters)
        self.sent.dead_letters += len(dead_letters)

    async def flush(self) -> None:
        self.flushes += 1

    def trades(self) -> np.ndarray:
        decoded = [decode(key, value, "test")[0] for key, value in self.messages]
        return np.concatenate(decoded) if decoded else np.empty(0, TRADE_DTYPE)


# -- the batcher -----------------------------------------------------------------------------
def test_batches_hold_one_symbol_each_at_most_max_trades_in_original_order() -> None:
    trades = interleaved()
    batches = list(symbol_batches(trades, max_trades=64))
    assert all(len(b) <= 64 and set(b["symbol"].tolist()) == {s} for s, b in batches)
    for symbol in ("AAA", "BBB", "CCC"):
        sent = np.concatenate([b for s, b in batches if s == symbol])
        np.testing.assert_array_equal(sent, trades[trades["symbol"] == symbol])
    assert sum(len(b) for _, b in batches) == len(trades)


def test_a_single_symbol_chunk_is_cut_without_regrouping() -> None:
    trades = calm_flow(5_000, symbol="NVDA", rate=2_000.0)  # 2.5 s of event time
    batches = list(symbol_batches(trades, max_trades=2_000))
    assert [len(b) for _, b in batches] == [2_000, 2_000, 1_000]
    assert all(b.base is trades or b.base is trades.base for _, b in batches)  # views, no copies


def test_no_message_spans_more_than_its_share_of_event_time() -> None:
    """A partition holds many symbols: bounded spans keep its trades near event-time order."""
    trades = interleaved()
    span = 20 * S
    batches = list(symbol_batches(trades, max_trades=10_000, max_span_ns=span))
    assert all(int(b["ts_event"][-1]) // span == int(b["ts_event"][0]) // span for _, b in batches)
    sent = np.concatenate([b for _, b in batches])
    late = np.maximum.accumulate(sent["ts_event"]) - sent["ts_event"]
    assert late.max() < span and sum(len(b) for _, b in batches) == len(trades)


def test_an_empty_chunk_gives_no_batches() -> None:
    assert list(symbol_batches(np.empty(0, TRADE_DTYPE), 10)) == []


# -- pacing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "speed"), [("max", None), ("realtime", 1.0), ("x10", 10.0), ("2.5x", 2.5),
                                             ("x0.5", 0.5), (" MAX ", None)])
def test_pace_spec(text: str, speed: float | None) -> None:
    assert parse_pace(text) == speed


@pytest.mark.parametrize("text", ["fast", "x0", "x", "10", "x-2", ""])
def test_pace_spec_rejects_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="pace"):
        parse_pace(text)


def trades_at(*seconds: float) -> np.ndarray:
    trades = np.zeros(len(seconds), TRADE_DTYPE)
    trades["ts_event"] = [T0 + round(s * S) for s in seconds]
    trades["symbol"] = "ACME"
    trades["sequence"] = np.arange(len(seconds))
    return trades


async def released(pacer: Pacer, *chunks: np.ndarray) -> list[list[int]]:
    return [[int(x) for x in part["sequence"]] for chunk in chunks async for part in pacer.release(chunk)]


@pytest.mark.asyncio
@pytest.mark.parametrize(("speed", "waits"), [(1.0, [1.0, 2.0]), (2.0, [0.5, 1.0]), (None, [])],
                         ids=["realtime", "x2", "max"])
async def test_pacer_reproduces_event_time_gaps_scaled_by_speed(speed: float | None, waits: list[float]) -> None:
    clock = FakeClock()
    parts = await released(Pacer(speed, clock), trades_at(0, 1, 1.001, 3))
    assert clock.sleeps == pytest.approx(waits)
    assert parts == ([[0], [1, 2], [3]] if speed else [[0, 1, 2, 3]])


@pytest.mark.asyncio
async def test_pacer_keeps_its_origin_across_chunks() -> None:
    clock = FakeClock()
    await released(Pacer(1.0, clock), trades_at(0, 1), trades_at(2.5))
    assert clock.sleeps == pytest.approx([1.0, 1.5])


@pytest.mark.asyncio
async def test_time_spent_sending_counts_against_the_wait_and_late_trades_do_not_wait() -> None:
    clock = FakeClock()
    publisher = InMemoryPublisher(clock, seconds_per_message=0.4)
    await IngestTrades(publisher, pace=1.0, clock=clock)(InMemoryTradeSource(trades_at(0, 1, 1.2, 3)))
    # Sent at 0 (+0.4 sending) -> waits 0.6 for t=1; t=1.2 is late after sending t=1, goes at once.
    assert clock.sleeps == pytest.approx([0.6, 1.2])
    assert [round(t - 1_000.0, 3) for t in publisher.sent_at] == [0.0, 1.0, 1.4, 3.0]


# -- the use case ----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_ingest_publishes_every_trade_in_per_symbol_order_and_the_dead_letters() -> None:
    trades = interleaved()
    bad = DeadLetter("bad_row", "unparseable price 'x'", "f.csv, line 7", b"raw,row")

    async def chunks() -> AsyncIterator[SourceChunk]:
        yield SourceChunk(trades[:1_500], [bad])
        yield SourceChunk(trades[1_500:])

    publisher = InMemoryPublisher()
    summary = await IngestTrades(publisher, batch_trades=100)(chunks())
    assert publisher.dead_letters == [bad]
    got = publisher.trades()
    for symbol in ("AAA", "BBB", "CCC"):
        np.testing.assert_array_equal(got[got["symbol"] == symbol], trades[trades["symbol"] == symbol])
    assert (summary.trades, summary.dead_letters, summary.messages) == (3_000, 1, len(publisher.messages))
    assert summary.bytes == sum(len(v) for _, v in publisher.messages)
    assert publisher.flushes == 1


@pytest.mark.asyncio
async def test_an_interrupted_ingest_still_says_what_it_sent() -> None:
    """Cancelled (Ctrl-C, SIGTERM) within a publish: the summary counts every message handed over
    up to there, which the final flush delivers (it said 0 trades with 33,118 on the topic)."""
    trades = interleaved()
    publisher = InMemoryPublisher(stall_after=7)
    ingest = IngestTrades(publisher, batch_trades=100)
    run = asyncio.ensure_future(ingest(InMemoryTradeSource(trades, chunk_size=3_000)))
    await asyncio.wait_for(publisher.stalled.wait(), timeout=10)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert publisher.flushes == 1
    assert ingest.summary.messages == len(publisher.messages) == 7
    assert ingest.summary.trades == len(publisher.trades()) > 0
    assert ingest.summary.bytes == sum(len(v) for _, v in publisher.messages)
    assert ingest.summary.seconds > 0


@pytest.mark.asyncio
async def test_ingest_flushes_what_it_sent_when_the_source_fails() -> None:
    async def failing() -> AsyncIterator[SourceChunk]:
        yield SourceChunk(calm_flow(10, symbol="NVDA"))
        raise SourceError("disk gone")

    publisher = InMemoryPublisher()
    with pytest.raises(SourceError):
        await IngestTrades(publisher)(failing())
    assert publisher.flushes == 1 and len(publisher.trades()) == 10


@pytest.mark.asyncio
async def test_a_blocking_source_is_read_ahead_in_order() -> None:
    trades = calm_flow(10_000)
    chunks = [chunk.trades async for chunk in read_ahead(InMemoryTradeSource(trades, chunk_size=999))]
    np.testing.assert_array_equal(np.concatenate(chunks), trades)


# -- the live feed ---------------------------------------------------------------------------
def mapping(instrument_id: int, symbol: str) -> SymbolMappingMsg:
    return SymbolMappingMsg(0, instrument_id, T0, SType.RAW_SYMBOL, symbol, SType.RAW_SYMBOL, symbol, 0, 0)


def trade(sequence: int, instrument_id: int = 1) -> TradeMsg:
    return TradeMsg(2, instrument_id, T0 + sequence * S, 100_250_000_000 + sequence, 10 * sequence, Action.TRADE,
                    Side.BID, 0, T0 + sequence * S + 5, flags=130, sequence=sequence)


class FakeLive:
    """Stands in for databento.Live: replays records, optionally failing after some of them."""

    def __init__(self, records: list[Any], fail_after: int | None = None, hang: bool = False) -> None:
        self.records, self.fail_after, self.hang = records, fail_after, hang
        self.subscriptions: list[dict[str, Any]] = []
        self.terminated = False

    def subscribe(self, dataset: str, schema: str, symbols: Any, stype_in: str = "raw_symbol",
                  start: Any = None) -> None:
        self.subscriptions.append({"dataset": dataset, "schema": schema, "symbols": symbols, "start": start})

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._replay()

    async def _replay(self) -> AsyncIterator[Any]:
        for i, record in enumerate(self.records):
            if i == self.fail_after:
                raise BentoError("connection lost")
            await asyncio.sleep(0)
            yield record
        if self.hang:
            await asyncio.Event().wait()

    def terminate(self) -> None:
        self.terminated = True


class Connections:
    """A connect() that hands out prepared clients, or raises the prepared errors."""

    def __init__(self, *outcomes: FakeLive | Exception) -> None:
        self.outcomes: Iterator[FakeLive | Exception] = iter(outcomes)
        self.clients: list[FakeLive] = []

    def __call__(self) -> FakeLive:
        outcome = next(self.outcomes, BentoError("connection refused"))
        if isinstance(outcome, Exception):
            raise outcome
        self.clients.append(outcome)
        return outcome


async def collect(source: DatabentoLiveSource) -> tuple[list[SourceChunk], BaseException | None]:
    chunks: list[SourceChunk] = []
    try:
        async for chunk in source:
            chunks.append(chunk)
    except SourceError as exc:
        return chunks, exc
    return chunks, None


def live_source(connect: Any, sleeps: list[float] | None = None, **kw: Any) -> DatabentoLiveSource:
    async def sleep(seconds: float) -> None:
        (sleeps if sleeps is not None else []).append(seconds)

    kw.setdefault("max_retries", 1)
    return DatabentoLiveSource(connect, "XNAS.ITCH", "trades", ["NVDA"], sleep=sleep, **kw)


@pytest.mark.skipif(not LIVE_SAMPLE.exists(), reason="../shared/data/databento is not beside the repository")
@pytest.mark.asyncio
async def test_live_session_records_become_trades_named_by_their_symbol_mappings() -> None:
    import databento

    records = list(databento.DBNStore.from_file(LIVE_SAMPLE))  # a real capture: mappings, trades, mbp-1, ...
    connect = Connections(FakeLive(records))
    chunks, gave_up = await collect(live_source(connect))
    trades = np.concatenate([c.trades for c in chunks])
    assert trades["symbol"].tolist() == ["ESZ4", "ESZ4"]  # the TradeMsgs; their MBP-1 copies are another schema
    assert trades["price"].tolist() == [4756.0, 4756.0]
    assert trades["size"].tolist() == [2, 1]
    assert trades["sequence"].tolist() == [5109302, 5116924]
    assert not any(c.dead_letters for c in chunks)
    assert connect.clients[0].subscriptions == [{"dataset": "XNAS.ITCH", "schema": "trades", "symbols": ["NVDA"],
                                                 "start": None}]
    assert connect.clients[0].terminated
    assert isinstance(gave_up, SourceError)  # the fake has no second session to offer


@pytest.mark.asyncio
async def test_live_trades_are_cut_every_n_trades_and_unmapped_instruments_are_dead_letters() -> None:
    spread = "ESM5-ESU5-ESZ5-ESH6 BUTTERFLY"  # longer than a trade's symbol holds: a dead letter, not cut
    records = [mapping(1, "NVDA"), mapping(7, spread), trade(1), trade(2), trade(3, instrument_id=99), trade(4),
               trade(6, instrument_id=7), trade(5)]
    chunks, _ = await collect(live_source(Connections(FakeLive(records)), flush_trades=2))
    assert [c.trades["sequence"].tolist() for c in chunks] == [[1, 2], [4, 5]]
    letters = [d for c in chunks for d in c.dead_letters]
    assert [d.reason for d in letters] == ["unknown_instrument", "bad_row"]
    assert [d.origin for d in letters] == ["live:XNAS.ITCH, record 5", "live:XNAS.ITCH, record 7"]  # from 1
    assert "99" in letters[0].detail and len(letters[0].raw) == 48
    assert letters[1].detail == f"symbol longer than 24 characters: {spread!r} (instrument_id 7)"
    row = chunks[0].trades[0]
    assert (float(row["price"]), int(row["size"]), row["side"], int(row["flags"]), int(row["ts_recv"])) == (
        100.250000001, 10, b"B", 130, T0 + S + 5)


@pytest.mark.asyncio
async def test_live_trades_wait_at_most_flush_seconds_for_their_batch() -> None:
    client = FakeLive([mapping(1, "NVDA"), trade(1)], hang=True)
    chunks = live_source(Connections(client), flush_trades=1_000, flush_seconds=0.01).chunks()
    first = await asyncio.wait_for(anext(chunks), timeout=5)
    assert first.trades["sequence"].tolist() == [1]
    await chunks.aclose()
    assert client.terminated


@pytest.mark.asyncio
async def test_a_failing_publisher_ends_the_live_session_at_once() -> None:
    class BrokenPublisher(InMemoryPublisher):
        async def publish(self, runs: list[tuple[str, np.ndarray]], mark: object = None,
                          dead_letters: object = ()) -> None:
            raise ConnectionError("broker gone")

    client = FakeLive([mapping(1, "NVDA"), trade(1)], hang=True)
    publisher = BrokenPublisher()
    with pytest.raises(ConnectionError):
        await IngestTrades(publisher)(live_source(Connections(client), flush_seconds=0.01))
    assert client.terminated and publisher.flushes == 1


@pytest.mark.asyncio
async def test_live_gives_up_at_once_when_the_datasets_gateway_has_no_address() -> None:
    """A misspelt --dataset retried for ever (its gateway's host name does not exist); a name that
    does not resolve for now (EAI_AGAIN), or once a session has worked, is still retried."""
    nxdomain = BentoError("Connection to xnas-ithc.lsg.databento.com:13000 failed: [Errno -2] Name or service not known")
    sleeps: list[float] = []
    source = DatabentoLiveSource(Connections(nxdomain), "XNAS.ITHC", "trades", ["NVDA"], sleep=sleeps.append)
    chunks, gave_up = await collect(source)
    assert chunks == [] and sleeps == []
    assert str(gave_up) == (
        "databento live: the gateway of dataset 'XNAS.ITHC' has no address (BentoError: Connection to "
        "xnas-ithc.lsg.databento.com:13000 failed: [Errno -2] Name or service not known); check --dataset "
        f"(XNAS.ITHC is none of the {len(list(databento.Dataset))} datasets databento knows) and this machine's DNS")
    outage = BentoError("Connection to xnas-itch.lsg.databento.com:13000 failed: [Errno -3] Temporary failure "
                        "in name resolution")
    chunks, gave_up = await collect(live_source(Connections(outage, outage), sleeps, max_retries=2))
    assert "gave up after 2 reconnect attempts" in str(gave_up) and len(sleeps) == 2
    worked = FakeLive([mapping(1, "NVDA"), trade(1)])
    chunks, gave_up = await collect(live_source(Connections(worked, nxdomain), max_retries=1))
    assert len(chunks) == 1 and "gave up after 1 reconnect attempts" in str(gave_up)


@pytest.mark.asyncio
async def test_live_reconnects_with_backoff_replays_the_gap_and_drops_what_it_already_sent() -> None:
    first = FakeLive([mapping(1, "NVDA"), trade(1), trade(2), trade(3), trade(4)], fail_after=4)
    second = FakeLive([mapping(1, "NVDA"), trade(3), trade(4), trade(5), trade(6)])  # replayed from trade 3
    connect = Connections(first, second, BentoError("refused"), BentoError("refused"))
    sleeps: list[float] = []
    chunks, gave_up = await collect(live_source(connect, sleeps, max_retries=2,
                                                backoff=Backoff(initial=0.5, factor=2, maximum=30)))
    assert np.concatenate([c.trades for c in chunks])["sequence"].tolist() == [1, 2, 3, 4, 5, 6]
    assert second.subscriptions[0]["start"] == T0 + 3 * S  # the last trade's ts_event before the drop
    assert sleeps == [0.5, 0.5, 1.0]  # reset after each session that delivered; doubling while refused
    assert isinstance(gave_up, SourceError) and "2 reconnect attempts" in str(gave_up)
    assert first.terminated and second.terminated


@pytest.mark.asyncio
async def test_live_api_key_comes_from_the_environment_and_is_never_exposed() -> None:
    made: list[dict[str, Any]] = []

    def leaky_client(**kw: Any) -> FakeLive:
        made.append(kw)
        client = FakeLive([ErrorMsg(T0, f"auth failed for key {SECRET}")])

        def subscribe(*args: Any, **kwargs: Any) -> None:
            if len(made) > 1:
                raise BentoError(f"gateway rejected {SECRET}")

        client.subscribe = subscribe  # type: ignore[method-assign]
        return client

    connect = DatabentoLiveConnector.from_env({"DATABENTO_API_KEY": SECRET}, client_class=leaky_client)
    assert SECRET not in repr(connect)
    with structlog.testing.capture_logs() as logs:
        _, gave_up = await collect(live_source(connect, max_retries=1))
    assert made[0] == {"key": SECRET}  # handed to the client, and only there
    assert logs and SECRET not in repr(logs)
    assert "****" in repr(logs)
    assert gave_up is not None and SECRET not in str(gave_up)


def test_live_without_an_api_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="DATABENTO_API_KEY is not set"):
        DatabentoLiveConnector.from_env({"DATABENTO_API_KEY": "  "})
    result = CliRunner().invoke(main, ["ingest", "--live", "--symbols", "NVDA"], env={"DATABENTO_API_KEY": ""})
    assert result.exit_code == 1
    assert "DATABENTO_API_KEY is not set" in result.output


@pytest.mark.parametrize(("args", "message"), [
    ([], "give one or more PATHs"),
    (["x.csv", "--live"], "not both"),
    (["--live", "--pace", "realtime"], "--pace applies to files"),
    (["x.csv", "--pace", "soon"], "pace must be"),
    (["--live", "--resume"], "--resume applies to files"),
], ids=["nothing", "both", "live-paced", "bad-pace", "live-resumed"])
def test_ingest_command_rejects_contradictions_before_touching_kafka(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["ingest", *args], env={"DATABENTO_API_KEY": SECRET})
    assert result.exit_code != 0
    assert message in result.output
    assert SECRET not in result.output


@pytest.mark.asyncio
async def test_topic_set_up_gives_up_on_a_port_that_accepts_and_never_answers() -> None:
    """Not Kafka behind the address (a load balancer, a wrong service): `ingest` sat silent for
    aiokafka's default 40 s request timeout before its one-line error; now one 10 s request."""
    from aiokafka.errors import KafkaConnectionError

    from adapters.kafka.topics import ensure_topics

    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(KafkaConnectionError):
            await asyncio.wait_for(ensure_topics(f"127.0.0.1:{port}", ["trades"], 1), timeout=25)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


class _CreatingElsewhere:
    """An admin client of a broker on which another process is creating `trades` at this instant: it
    is listed, and described first with no partitions, then with its 4."""

    def __init__(self, **_: Any) -> None:
        self.descriptions = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def list_topics(self) -> list[str]:
        return ["trades"]

    async def describe_topics(self, topics: list[str]) -> list[dict]:
        self.descriptions += 1
        partitions = [{"partition": p, "leader": 1} for p in range(4)] if self.descriptions > 2 else []
        return [{"topic": t, "error_code": 0 if partitions else 5, "partitions": partitions} for t in topics]


@pytest.mark.asyncio
async def test_a_topic_another_process_is_creating_is_waited_for_not_taken_for_one_of_no_partitions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers started together on a new broker: one exited with "'trades' has 0" partitions."""
    from adapters.kafka import topics

    made: list[_CreatingElsewhere] = []
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", lambda **kw: made.append(_CreatingElsewhere(**kw)) or made[-1])
    assert await topics.ensure_topics("127.0.0.1:9092", ["trades"], 4) == []
    assert made[0].descriptions == 3
    with pytest.raises(ConfigError, match="'trades' has 4"):  # a real difference is still refused
        await topics.ensure_topics("127.0.0.1:9092", ["trades"], 2)


SAMPLE_DBN = Path(__file__).resolve().parents[2].parent / "shared/data/databento/xnas-itch.trades.sample.dbn.zst"


def broker_gone_after(sends: int, monkeypatch: pytest.MonkeyPatch) -> list[InMemoryPublisher]:
    """Ingest's KafkaTradePublisher made an in-memory one whose broker goes away once `sends` messages
    went (its publishes then fail as aiokafka's do); the list gets each one the command makes."""
    from aiokafka.errors import LeaderNotAvailableError

    import adapters.kafka.producer as producer

    made: list[InMemoryPublisher] = []

    class GoesAway(InMemoryPublisher):
        def __init__(self, *_: object, **__: object) -> None:
            super().__init__()
            made.append(self)

        async def __aenter__(self) -> GoesAway:
            return self

        async def __aexit__(self, *_: object) -> None:
            await self.flush()

        async def publish(self, runs: list[tuple[str, np.ndarray]], mark: object = None,
                          dead_letters: Sequence[DeadLetter] = ()) -> None:
            if len(self.messages) >= sends:
                raise LeaderNotAvailableError()
            await super().publish(runs, mark, dead_letters)

    monkeypatch.setattr(producer, "KafkaTradePublisher", GoesAway)
    return made


def test_an_ingest_whose_broker_goes_away_midway_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka cut during an ingest: its one line named only the client's error ("LeaderNotAvailableError:
    [Error 5] LeaderNotAvailableError"), not that the broker had stopped answering."""
    broker_gone_after(1, monkeypatch)
    result = CliRunner().invoke(main, ["ingest", str(SAMPLE_DBN), "--batch-trades", "1", "--bootstrap", "kafka:9092"])
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.output.splitlines() == [
        "Error: Kafka at kafka:9092: LeaderNotAvailableError (Kafka error 5); no broker answered for the "
        "partitions in time: is Kafka down or restarting? (the same command with --resume sends the rest, "
        "skipping what the topic holds)"]


@pytest.mark.parametrize("sends", [1, 0], ids=["after-a-message", "before-any"])
def test_an_ingest_json_whose_broker_goes_away_midway_still_says_what_was_sent(
        monkeypatch: pytest.MonkeyPatch, sends: int) -> None:
    """Automation got nothing on stdout (exit 1, one line on stderr): not what had been sent, nor whether to resume."""
    made = broker_gone_after(sends, monkeypatch)
    result = CliRunner().invoke(main, ["ingest", str(SAMPLE_DBN), "--batch-trades", "1", "--bootstrap", "kafka:9092",
                                       "--json"])
    assert result.exit_code == 1, (result.output, result.exception)
    if not sends:  # nothing sent: the error says it all, as without --json
        assert (result.stdout, result.stderr) == ("", "Error: Kafka at kafka:9092: LeaderNotAvailableError (Kafka "
                                                      "error 5)\n")
        return
    reason = ("Kafka at kafka:9092: LeaderNotAvailableError (Kafka error 5); no broker answered for the partitions "
              "in time: is Kafka down or restarting? (the same command with --resume sends the rest, skipping what "
              "the topic holds)")
    assert result.stderr.splitlines() == [f"Error: {reason}"]
    summary = json.loads(result.stdout)
    sent = made[0].messages  # the first publish's, before the broker went away
    assert sent and (summary["messages"], summary["trades"]) == (len(sent), len(made[0].trades()))
    assert (summary["topic"], summary["interrupted"], summary["failed"]) == ("trades", False, reason)


def test_kafka_protocol_errors_read_with_their_code_once() -> None:
    from aiokafka.errors import KafkaTimeoutError, LeaderNotAvailableError, UnknownTopicOrPartitionError

    from adapters.kafka.errors import broker_away, said

    assert said(LeaderNotAvailableError()) == "LeaderNotAvailableError (Kafka error 5)"
    assert said(UnknownTopicOrPartitionError("t")) == "UnknownTopicOrPartitionError (Kafka error 3): t"
    assert broker_away(LeaderNotAvailableError()) and broker_away(KafkaTimeoutError())
    assert not broker_away(UnknownTopicOrPartitionError()) and not broker_away(ValueError("x"))
