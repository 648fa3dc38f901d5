"""Resuming an interrupted ingest against the in-memory trade log: every trade once, in order."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.kafka.marks import mark_header, read_mark
from adapters.memory import InMemoryTradeLog, InMemoryTradeSource, Interrupted
from adapters.synthetic import generate_market
from application.ingest import IngestTrades
from application.resume import ResumePlan, plan_resume
from builders import S, T0, calm_flow
from domain.errors import ResumeError
from domain.model import DeadLetter
from domain.ports import IngestMark, SourceChunk

SOURCE = "5ca1ab1e0ddba11"
MARKET = generate_market(symbols=8, trades=40_000, seed=3).trades


def identities(trades: np.ndarray) -> list[tuple]:
    """Each trade as the guard tells trades apart: (publisher, instrument, ts_event, sequence)."""
    return list(zip(trades["publisher_id"].tolist(), trades["instrument_id"].tolist(),
                    trades["ts_event"].tolist(), trades["sequence"].tolist()))


def assert_each_trade_once_in_order(log: InMemoryTradeLog, trades: np.ndarray) -> None:
    held = log.trades()
    assert len(held) == len(trades)
    assert sorted(identities(held)) == sorted(identities(trades))
    for symbol in dict.fromkeys(trades["symbol"].tolist()):  # each symbol's trades in file order
        assert held[held["symbol"] == symbol].tobytes() == trades[trades["symbol"] == symbol].tobytes(), symbol


async def interrupted(log: InMemoryTradeLog, source: InMemoryTradeSource, after: int, batch: int = 500,
                      plan: ResumePlan | None = None) -> None:
    """Ingest until `after` more messages are on the log, then the crash."""
    log.interrupt_after = log.sent.messages + after
    with pytest.raises(Interrupted):
        await IngestTrades(log, batch_trades=batch, source_id=SOURCE, resume=plan)(source)
    log.interrupt_after = None


async def resumed(log: InMemoryTradeLog, source: InMemoryTradeSource, batch: int = 500) -> tuple[ResumePlan, int]:
    plan = await plan_resume(log, source, SOURCE, "trades")
    summary = await IngestTrades(log, batch_trades=batch, source_id=SOURCE, resume=plan)(source)
    assert summary.skipped == plan.skipped
    return plan, summary.trades


@pytest.mark.asyncio
@pytest.mark.parametrize("after", [1, 7, 40, 150, 400, 900], ids=lambda n: f"after-{n}-messages")
async def test_an_ingest_interrupted_anywhere_resumes_with_every_trade_once(after: int) -> None:
    log, source = InMemoryTradeLog(partitions=4, message_trades=100), InMemoryTradeSource(MARKET, chunk_size=7_000)
    await interrupted(log, source, after)
    on_log = len(log.trades())

    plan, sent = await resumed(log, source)

    assert 0 < plan.skipped == on_log and sent == len(MARKET) - on_log
    assert_each_trade_once_in_order(log, MARKET)


@pytest.mark.asyncio
async def test_a_window_a_partition_holds_part_of_is_finished_not_repeated() -> None:
    """Small messages: the crash lands inside one publish's share of a partition (mid-partition)."""
    log, source = InMemoryTradeLog(partitions=2, message_trades=20), InMemoryTradeSource(MARKET, chunk_size=3_000)
    await interrupted(log, source, 37)
    plan = await plan_resume(log, source, SOURCE, "trades")

    partly = [r for r in plan.reached.values() if 0 < r.sent.sum() < r.stop - r.first]
    assert partly, "the crash should have cut a window"
    await IngestTrades(log, batch_trades=20, source_id=SOURCE, resume=plan)(source)
    assert_each_trade_once_in_order(log, MARKET)


@pytest.mark.asyncio
@pytest.mark.parametrize("lost", [{0: 99}, {1: 2, 3: 1}, {0: 99, 1: 99, 2: 1}], ids=["one-empty", "two-short", "one-left"])
async def test_partitions_reached_unevenly_are_each_resumed_from_their_own_end(lost: dict[int, int]) -> None:
    """What a crash left in flight never reached its partition: each partition ends elsewhere."""
    log, source = InMemoryTradeLog(partitions=4, message_trades=100), InMemoryTradeSource(MARKET, chunk_size=7_000)
    await interrupted(log, source, 120)
    for partition, messages in lost.items():
        log.lose_last(partition, messages)
    ends = {p: len(log.trades(p)) for p in range(4)}

    plan, _ = await resumed(log, source)

    assert {p: r.trades for p, r in plan.reached.items()} == {p: n for p, n in ends.items() if n}
    assert_each_trade_once_in_order(log, MARKET)


def tied(n: int, symbols: tuple[str, ...] = ("NVDA",), per_tick: int = 5) -> np.ndarray:
    """`n` trades a symbol in bursts of `per_tick` at one timestamp, told apart only by sequence;
    the symbols interleaved at the same timestamps."""
    flows = []
    for k, symbol in enumerate(symbols):
        flow = calm_flow(n, symbol=symbol, seed=k, first_sequence=1 + k * n)
        flow["ts_event"] = T0 + (np.arange(n) // per_tick) * S // 10
        flow["price"] = 100.0  # equal rows but for the sequence
        flow["size"] = 100
        flows.append(flow)
    merged = np.concatenate(flows)
    return merged[np.lexsort((np.tile(np.arange(n), len(symbols)), merged["ts_event"]))]


@pytest.mark.asyncio
@pytest.mark.parametrize("symbols", [("NVDA",), ("NVDA", "AMD", "TSLA")], ids=["one-symbol", "three-symbols"])
async def test_trades_at_equal_timestamps_are_told_apart_by_sequence(symbols: tuple[str, ...]) -> None:
    trades = tied(300, symbols)
    total = InMemoryTradeLog(partitions=1, message_trades=7)
    await IngestTrades(total, batch_trades=7, source_id=SOURCE)(InMemoryTradeSource(trades, chunk_size=64))
    for after in range(1, total.sent.messages, 3):  # a message of 7 ends inside a tie of 5, wherever it stops
        log, source = InMemoryTradeLog(partitions=1, message_trades=7), InMemoryTradeSource(trades, chunk_size=64)
        await interrupted(log, source, after, batch=7)
        await resumed(log, source, batch=7)
        assert_each_trade_once_in_order(log, trades)


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(6))
async def test_a_resumed_ingest_interrupted_again_resumes_again(seed: int) -> None:
    """Crash, resume with other message sizes, crash again (partitions losing what was in flight):
    each resume starts from whatever the log holds by then."""
    rng = np.random.default_rng(seed)
    log, source = InMemoryTradeLog(partitions=4, message_trades=int(rng.choice([30, 300]))), \
        InMemoryTradeSource(MARKET, chunk_size=int(rng.choice([2_000, 9_000])))
    plan = None
    for _ in range(4):
        await interrupted(log, source, int(rng.integers(1, 200)), batch=int(rng.choice([50, 500])), plan=plan)
        for p in range(4):
            log.lose_last(p, int(rng.integers(0, 3)))
        plan = await plan_resume(log, source, SOURCE, "trades")
    await IngestTrades(log, batch_trades=2_000, source_id=SOURCE, resume=plan)(source)
    assert_each_trade_once_in_order(log, MARKET)


@pytest.mark.asyncio
async def test_a_complete_ingest_resumed_sends_nothing_and_a_fresh_log_gets_everything() -> None:
    source = InMemoryTradeSource(MARKET, chunk_size=7_000)
    log = InMemoryTradeLog(partitions=4)
    plan, sent = await resumed(log, source)
    assert (plan.skipped, sent) == (0, len(MARKET)) and "holds none" in plan.describe()

    plan, sent = await resumed(log, source)

    assert (plan.skipped, sent) == (len(MARKET), 0)
    assert plan.describe().startswith(f"resume: skipped {len(MARKET):,} trades of these files already on trades")
    assert_each_trade_once_in_order(log, MARKET)


@pytest.mark.asyncio
@pytest.mark.parametrize("after", [1, 3, 40, 95, 250], ids=lambda n: f"after-{n}-messages")
async def test_each_dead_letter_is_on_the_log_once_after_a_resume(after: int) -> None:
    """Letters a source does not place (no `dead_letters_at`) stand before their chunk's trades: an
    ingest stopped inside a chunk had sent them, one stopped before the chunk's first message had not.
    (Placed letters: test_ingest_dead_letters.)"""
    chunks = [SourceChunk(MARKET[i:i + 5_000], [DeadLetter("bad_row", "", f"day.csv, line {i + k}", b"x")
                                                for k in range(3)])
              for i in range(0, len(MARKET), 5_000)]

    class Chunks:
        def chunks(self):  # type: ignore[no-untyped-def]
            return iter(chunks)

    log = InMemoryTradeLog(partitions=4, message_trades=100)
    await interrupted(log, Chunks(), after)  # type: ignore[arg-type]
    plan = await plan_resume(log, Chunks(), SOURCE, "trades")  # type: ignore[arg-type]
    await IngestTrades(log, batch_trades=500, source_id=SOURCE, resume=plan)(Chunks())  # type: ignore[arg-type]

    origins = [d.origin for d in log.dead_letters]
    assert sorted(origins) == sorted(d.origin for c in chunks for d in c.dead_letters)  # each once


async def a_log_with(trades: np.ndarray, source: str = SOURCE, partitions: int = 4,
                     after: int | None = 40) -> InMemoryTradeLog:
    log = InMemoryTradeLog(partitions=partitions, message_trades=100, interrupt_after=after)
    try:
        await IngestTrades(log, batch_trades=500, source_id=source)(InMemoryTradeSource(trades, chunk_size=7_000))
    except Interrupted:
        pass
    log.interrupt_after = None
    return log


@pytest.mark.asyncio
async def test_a_log_ending_with_other_files_is_refused_before_anything_is_sent() -> None:
    log = await a_log_with(generate_market(symbols=8, trades=10_000, seed=9).trades, source="0therday", after=None)
    held = log.sent.messages
    with pytest.raises(ResumeError, match=r"^trades ends with messages that are not from these files \(trades\[\d\]@\d+: "
                                          r"from source 0therday, trades [\d,]+-[\d,]+\): nothing of them to resume"):
        await plan_resume(log, InMemoryTradeSource(MARKET), SOURCE, "trades")
    assert log.sent.messages == held


@pytest.mark.asyncio
async def test_marked_as_these_files_but_holding_other_trades_is_refused() -> None:
    """The same names and sizes, other trades (a file rewritten in place): the content decides."""
    log = await a_log_with(MARKET)
    changed = MARKET.copy()
    changed["size"] += 1
    with pytest.raises(ResumeError, match=r"says it holds trades of these files' [\d,]+-[\d,]+, but those are not its trades"):
        await plan_resume(log, InMemoryTradeSource(changed, chunk_size=7_000), SOURCE, "trades")


@pytest.mark.asyncio
async def test_files_shorter_than_what_the_log_says_it_holds_are_refused() -> None:
    log = await a_log_with(MARKET, after=300)
    with pytest.raises(ResumeError, match=r"but these files hold 1,000 trades: they are not the files ingested there"):
        await plan_resume(log, InMemoryTradeSource(MARKET[:1_000]), SOURCE, "trades")


@pytest.mark.asyncio
async def test_a_log_written_for_another_partition_count_is_refused() -> None:
    log = await a_log_with(MARKET)
    p = next(p for p in range(4) if log.records[p])
    last = log.records[p][-1]
    log.records[p].append(type(last)(last.value, last.mark, 8, last.timestamp_ms + 1))
    with pytest.raises(ResumeError, match=rf"trades\[{p}\]@\d+ was written for 8 partitions, trades has 4"):
        await plan_resume(log, InMemoryTradeSource(MARKET, chunk_size=7_000), SOURCE, "trades")


@pytest.mark.asyncio
async def test_other_data_written_after_the_interrupted_ingest_is_refused() -> None:
    log = await a_log_with(MARKET)
    empty = next(p for p in range(4) if not log.records[p])  # the interrupted ingest did not reach it
    log.append(empty, log.records[next(p for p in range(4) if log.records[p])][-1].value, None)
    with pytest.raises(ResumeError, match=rf"trades\[{empty}\]@0 is not from these files and was written after"):
        await plan_resume(log, InMemoryTradeSource(MARKET, chunk_size=7_000), SOURCE, "trades")


@pytest.mark.asyncio
async def test_other_data_from_before_the_ingest_is_left_alone() -> None:
    """Yesterday's file on the same topic: a partition this ingest had not reached ends with it."""
    log = await a_log_with(generate_market(symbols=8, trades=10_000, seed=9).trades, source="yesterday", after=None)
    yesterday = len(log.trades())
    source = InMemoryTradeSource(MARKET, chunk_size=7_000)
    await interrupted(log, source, 10)
    assert any(log.records[p][-1].mark.source == "yesterday" for p in range(4) if log.records[p])  # type: ignore[union-attr]

    await resumed(log, source)

    assert len(log.trades()) == yesterday + len(MARKET)


@pytest.mark.asyncio
async def test_a_paced_resume_does_not_wait_for_what_it_skips() -> None:
    from test_ingest import FakeClock

    trades = calm_flow(2_000, rate=1.0)  # ~2,000 s of event time
    log, source = InMemoryTradeLog(partitions=1, message_trades=100), InMemoryTradeSource(trades, chunk_size=500)
    await interrupted(log, source, 12, batch=100)
    clock = FakeClock()
    plan = await plan_resume(log, source, SOURCE, "trades")
    await IngestTrades(log, batch_trades=100, pace=10.0, clock=clock, source_id=SOURCE, resume=plan)(source)

    left = trades["ts_event"][plan.skipped:]
    assert sum(clock.sleeps) <= (left[-1] - left[0]) / S / 10 + 0.01
    assert_each_trade_once_in_order(log, trades)


def test_the_mark_header_reads_back_and_a_garbled_one_is_an_error() -> None:
    key, value = mark_header(IngestMark("0123abcd", 65_536, 131_072), 4)
    assert (key, value) == ("stockanomaly-ingest", b"source=0123abcd;trades=65536-131072;partitions=4")
    assert read_mark([("other", b"x"), (key, value)]) == (IngestMark("0123abcd", 65_536, 131_072), 4)
    assert read_mark([("other", b"x")]) is None and read_mark(None) is None
    with pytest.raises(ValueError, match="does not read as one"):
        read_mark([(key, b"source=0123abcd;trades=5")])


def test_every_message_of_a_file_ingest_says_which_trades_it_covers() -> None:
    import asyncio

    log = InMemoryTradeLog(partitions=4, message_trades=100)
    asyncio.run(IngestTrades(log, batch_trades=100, source_id=SOURCE)(InMemoryTradeSource(MARKET, chunk_size=7_000)))
    marks = [r.mark for records in log.records for r in records]
    assert all(m is not None and m.source == SOURCE for m in marks)
    covered = sorted({(m.first, m.stop) for m in marks if m is not None})
    assert covered[0][0] == 0 and covered[-1][1] == len(MARKET)
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))  # windows follow one another
