"""Ingest into the real Kafka: every trade arrives, each symbol in order, bad rows in the dead-letter topic."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord
from click.testing import CliRunner

from adapters.databento import DatabentoFileSource
from adapters.kafka.codec import decode
from adapters.kafka.keys import partition_of
from adapters.kafka.marks import read_mark
from adapters.kafka.producer import KafkaTradePublisher
from adapters.memory import InMemoryTradeSource
from adapters.synthetic import generate_market
from application.ingest import IngestTrades
from domain.model import TRADE_DTYPE
from entrypoints.cli import main
from integration_support import eventually_async, read_all

pytestmark = pytest.mark.integration

NASDAQ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
NVDA_DAY = NASDAQ / "xnas-itch-20250505.trades.csv.zst"
CSV_HEADER = ("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,"
              "sequence,symbol")


def decoded_by_symbol(records: list[ConsumerRecord], partitions: int) -> dict[str, np.ndarray]:
    """Each symbol's trades in the order its partition holds them; a symbol never spans partitions,
    and lands where Kafka's partitioner would put its key."""
    seen_in: dict[str, set[int]] = defaultdict(set)
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        trades, letters = decode(record.key, record.value, f"{record.topic}[{record.partition}]@{record.offset}")
        assert letters == []
        for symbol in dict.fromkeys(trades["symbol"].tolist()):
            seen_in[symbol].add(record.partition)
            parts[symbol].append(trades[trades["symbol"] == symbol])
    assert all(p == {partition_of(s, partitions)} for s, p in seen_in.items())
    return {symbol: np.concatenate(chunks) for symbol, chunks in parts.items()}


def same_trades(got: np.ndarray, want: np.ndarray) -> bool:
    return got.tobytes() == np.ascontiguousarray(want, TRADE_DTYPE).tobytes()


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.skipif(not NVDA_DAY.exists(), reason="../shared/data/nasdaq is not beside the repository")
async def test_a_real_nvda_day_arrives_complete_and_in_order(kafka_bootstrap, new_topic) -> None:
    topic = await new_topic("trades", partitions=3)
    dlq = await new_topic("dlq", partitions=3)
    expected = np.concatenate([c.trades for c in DatabentoFileSource([NVDA_DAY]).chunks()])

    async with KafkaTradePublisher(kafka_bootstrap, topic, dlq, partitions=3, anomalies_topic=f"{topic}.anomalies",
                                   incidents_topic=f"{topic}.incidents") as publisher:
        summary = await IngestTrades(publisher, batch_trades=2_000)(DatabentoFileSource([NVDA_DAY]))

    records = await read_all(kafka_bootstrap, topic, partition_count=3, timeout=60)
    by_symbol = decoded_by_symbol(records, 3)
    assert summary.trades == len(expected) == 183_301
    assert len(records) == summary.messages
    assert max(int.from_bytes(r.value[4:8], "little") for r in records) == 2_000
    assert list(by_symbol) == ["NVDA"]
    assert same_trades(by_symbol["NVDA"], expected)
    assert bool(np.all(np.diff(by_symbol["NVDA"]["ts_event"]) >= 0))


@pytest.mark.asyncio
async def test_many_symbols_keep_their_own_order_across_partitions(kafka_bootstrap, new_topic) -> None:
    topic = await new_topic("multi", partitions=4)
    dlq = await new_topic("multi-dlq", partitions=4)
    trades = generate_market(symbols=8, trades=40_000, seed=3).trades

    async with KafkaTradePublisher(kafka_bootstrap, topic, dlq, anomalies_topic=f"{topic}.anomalies",
                                   incidents_topic=f"{topic}.incidents") as publisher:
        summary = await IngestTrades(publisher, batch_trades=500)(InMemoryTradeSource(trades, chunk_size=7_000))

    by_symbol = decoded_by_symbol(await read_all(kafka_bootstrap, topic, partition_count=4, timeout=60), 4)
    assert summary.trades == len(trades)
    assert sorted(by_symbol) == sorted(set(trades["symbol"].tolist()))
    for symbol, got in by_symbol.items():
        assert same_trades(got, trades[trades["symbol"] == symbol]), symbol


@pytest.mark.asyncio
async def test_bad_csv_rows_go_to_the_dead_letter_topic_with_reason_and_raw_row(
        kafka_bootstrap, new_topic, tmp_path: Path) -> None:
    topic, dlq = await new_topic("csv", partitions=4), await new_topic("csv-dlq", partitions=4)
    good = [f"2025-05-05T13:30:0{i}.000000100Z,2025-05-05T13:30:0{i}.000000000Z,0,2,7,T,B,0,113.{i}00000000,"
            f"{100 + i},0,0,{i},NVDA" for i in range(6)]
    bad_price = good[2].replace("113.200000000", "1l3.2")
    short = "2025-05-05T13:30:09Z,2025-05-05T13:30:09Z,0,2,7,T"
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([CSV_HEADER, good[0], good[1], bad_price, short, *good[3:]]) + "\n")

    # The command runs its own event loop: give it a thread of its own.
    result = await asyncio.to_thread(CliRunner().invoke, main, [
        "ingest", str(path), "--bootstrap", kafka_bootstrap, "--topic", topic, "--dlq-topic", dlq,
        "--anomalies-topic", f"{topic}.anomalies", "--incidents-topic", f"{topic}.incidents", "--json"])
    assert result.exit_code == 0, result.output

    letters = sorted(await read_all(kafka_bootstrap, dlq, partition_count=4), key=lambda r: dict(r.headers)["origin"])
    headers = [dict(r.headers) for r in letters]
    assert [(h["reason"], h["origin"].decode()) for h in headers] == [(b"bad_row", f"{path}, line 4"),
                                                                      (b"bad_row", f"{path}, line 5")]
    assert [r.value for r in letters] == [bad_price.encode(), short.encode()]
    assert b"unparseable price" in headers[0]["detail"]
    trades = decoded_by_symbol(await read_all(kafka_bootstrap, topic, partition_count=4), 4)["NVDA"]
    assert trades["sequence"].tolist() == [0, 1, 3, 4, 5]



@pytest.mark.asyncio
async def test_ingest_creates_missing_topics_and_refuses_a_partition_count_that_differs(
        kafka_bootstrap, kafka_admin, new_topic, suffix, tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text(CSV_HEADER + "\n2025-05-05T13:30:00.000000100Z,2025-05-05T13:30:00.000000000Z,0,2,7,T,B,0,"
                    "113.100000000,100,0,0,1,NVDA\n")
    names = [f"it-{n}-{suffix}" for n in ("fresh", "fresh-anomalies", "fresh-incidents", "fresh-dlq")]
    args = ["ingest", str(path), "--bootstrap", kafka_bootstrap, "--topic", names[0], "--anomalies-topic", names[1],
            "--incidents-topic", names[2], "--dlq-topic", names[3], "--partitions", "3"]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    described = await kafka_admin.describe_topics(names)
    assert {t["topic"]: len(t["partitions"]) for t in described} == dict.fromkeys(names, 3)

    # A file that cannot be read: its dead letter published, the file named, and not a success.
    junk = tmp_path / "junk.dbn"
    junk.write_bytes(b"garbage")
    result = await asyncio.to_thread(CliRunner().invoke, main, [*args[:1], str(junk), *args[2:]])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {junk}: unreadable from the start on")
    letters = await read_all(kafka_bootstrap, names[3], partition_count=3)
    assert [dict(r.headers)["reason"] for r in letters] == [b"bad_file"] and "1 dead letters" in result.output

    result = await asyncio.to_thread(CliRunner().invoke, main, [*args[:-1], "6"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].endswith(
        "topic partitions differ from the configured 6 (STOCKANOMALY_PARTITIONS, or a command's --partitions): "
        f"'{names[0]}' has 3, '{names[1]}' has 3, '{names[2]}' has 3, '{names[3]}' has 3; configure that count, "
        "or recreate the topics")


@pytest.mark.asyncio
@pytest.mark.parametrize(("pace", "total"), [("x100", 200_000), ("max", 2_000_000)])
async def test_ingest_stopped_by_sigterm_flushes_and_sums_up_what_it_sent(
        kafka_bootstrap, new_topic, tmp_path: Path, pace: str, total: int) -> None:
    """docker stop and systemd stop with SIGTERM: what was sent is flushed and counted, as with Ctrl-C,
    and the status says it is not everything (128 + 15). Unpaced, a signal lands within a publish of
    a whole read chunk: the summary said 0 trades with 33,118 on the topic."""
    names = [await new_topic(n, partitions=4) for n in ("term", "term-anomalies", "term-incidents", "term-dlq")]
    path = tmp_path / "day.dbn.zst"
    generated = CliRunner().invoke(main, ["generate", str(path), "--symbols", "8", "--trades", str(total)])
    assert generated.exit_code == 0, generated.output
    cli = Path(sys.executable).with_name("stockanomaly")
    ingest = subprocess.Popen([str(cli), "ingest", str(path), "--pace", pace, "--json",
                               "--bootstrap", kafka_bootstrap, "--topic", names[0], "--anomalies-topic", names[1],
                               "--incidents-topic", names[2], "--dlq-topic", names[3], "--partitions", "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async def sent() -> int:
            return len(await read_all(kafka_bootstrap, names[0], partition_count=4))

        await eventually_async(sent, timeout=60, interval=0.05, what="the first messages of the ingest")
        ingest.send_signal(signal.SIGTERM)
        out, err = ingest.communicate(timeout=60)
    finally:
        if ingest.poll() is None:
            ingest.kill()
    assert ingest.returncode == 128 + signal.SIGTERM, err
    summary = json.loads(out)
    records = await read_all(kafka_bootstrap, names[0], partition_count=4)
    trades = sum(len(decode(r.key, r.value, "")[0]) for r in records)
    assert summary["interrupted"] is True and summary["seconds"] > 0
    assert (summary["messages"], summary["trades"]) == (len(records), trades) and 0 < trades < total
    assert summary["bytes"] == sum(len(r.value) for r in records)
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "interrupted: the same command with --resume sends the rest, skipping what the " \
                                   "topic holds"


@pytest.mark.asyncio
async def test_processes_creating_the_same_topics_at_once_all_start(kafka_bootstrap, new_topic, suffix) -> None:
    """Workers started together on a new broker each create the topics they need; one of two was
    refused ("'...-changelog' has 0" partitions), the other's creation still under way."""
    from adapters.kafka.topics import ensure_topics

    names = [f"it-race-{k}-{suffix}" for k in range(6)]  # removed with the suffix's topics (new_topic)
    for attempt in range(3):  # the window is short: several rounds of six topics, each by four at once
        round_names = [f"{name}-{attempt}" for name in names]
        created = await asyncio.gather(*(ensure_topics(kafka_bootstrap, round_names, 4, client_id=f"it-race-{k}")
                                          for k in range(4)))
        assert sorted(name for made in created for name in made) == sorted(round_names)  # each created once


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Each partition's committed end offset (read_committed: the last stable offset)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def identity_counts(trades: np.ndarray) -> Counter:
    """How often each trade is there, by the guard's identity (publisher, instrument, ts_event, sequence)."""
    return Counter(zip(trades["publisher_id"].tolist(), trades["instrument_id"].tolist(),
                       trades["ts_event"].tolist(), trades["sequence"].tolist()))


@pytest.mark.asyncio
@pytest.mark.parametrize(("day", "pace", "stop"), [
    ("generated", "x200", signal.SIGKILL), ("generated", "x200", signal.SIGINT),
    pytest.param("nvda", "x5000", signal.SIGKILL, marks=pytest.mark.skipif(
        not NVDA_DAY.exists(), reason="../shared/data/nasdaq is not beside the repository")),
], ids=["generated-killed", "generated-ctrl-c", "nvda-killed"])
async def test_an_interrupted_ingest_resumed_holds_every_trade_of_the_file_exactly_once(
        kafka_bootstrap, new_topic, tmp_path: Path, day: str, pace: str, stop: signal.Signals) -> None:
    """A real ingest stopped once 40 messages are on the topic (killed: what was in flight is lost,
    partitions end unevenly), then the same command with --resume: the topic holds the file. The
    real NVDA day has runs of prints at one timestamp, told apart by their sequence."""
    names = [await new_topic(n, partitions=4) for n in ("resume", "resume-anomalies", "resume-incidents", "resume-dlq")]
    path = NVDA_DAY if day == "nvda" else tmp_path / "day.dbn.zst"
    if day == "generated":
        generated = CliRunner().invoke(main, ["generate", str(path), "--symbols", "8", "--trades", "300000"])
        assert generated.exit_code == 0, generated.output
    expected = np.concatenate([c.trades for c in DatabentoFileSource([path]).chunks()])
    cli = Path(sys.executable).with_name("stockanomaly")
    args = [str(cli), "ingest", str(path), "--json", "--batch-trades", "500", "--bootstrap", kafka_bootstrap,
            "--topic", names[0], "--anomalies-topic", names[1], "--incidents-topic", names[2], "--dlq-topic", names[3],
            "--partitions", "4"]
    first = subprocess.Popen([*args, "--pace", pace], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async def enough() -> int:
            return sum((await end_offsets(kafka_bootstrap, names[0], 4)).values()) >= 40

        await eventually_async(enough, timeout=60, interval=0.02, what="40 messages of the first ingest on the topic")
        first.send_signal(stop)
        _, first_err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == (-signal.SIGKILL if stop == signal.SIGKILL else 128 + signal.SIGINT), first_err
    before = await end_offsets(kafka_bootstrap, names[0], 4)
    held = sum(len(decode(r.key, r.value, "")[0]) for r in await read_all(kafka_bootstrap, names[0], partition_count=4))
    assert 0 < held < len(expected)

    resumed = await asyncio.to_thread(subprocess.run, [*args, "--resume"], capture_output=True, text=True, timeout=300)

    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    said = [line for line in resumed.stderr.splitlines() if line.startswith("resume: ")]
    assert said == [f"resume: skipped {held:,} trades of these files already on {names[0]} " + said[0].split(names[0] + " ")[1]]
    assert (summary["skipped"], summary["trades"], summary["resumed"]) == (held, len(expected) - held, True)
    records = await read_all(kafka_bootstrap, names[0], partition_count=4, timeout=60)
    on_topic = np.concatenate([decode(r.key, r.value, "")[0] for r in records])
    assert len(on_topic) == len(expected) == {"generated": 300_000, "nvda": 183_301}[day]
    counts = identity_counts(on_topic)
    assert counts == identity_counts(expected) and set(counts.values()) == {1}  # each trade exactly once
    for symbol, got in decoded_by_symbol(records, 4).items():  # each symbol in file order, on its partition
        assert same_trades(got, expected[expected["symbol"] == symbol]), symbol
    after = await end_offsets(kafka_bootstrap, names[0], 4)
    assert sum(after.values()) - sum(before.values()) == summary["messages"] and sum(after.values()) == len(records)
    assert "Traceback" not in resumed.stderr + first_err


@pytest.mark.asyncio
async def test_resuming_onto_a_topic_that_ends_with_another_file_is_refused_in_one_line(
        kafka_bootstrap, new_topic, tmp_path: Path) -> None:
    names = [await new_topic(n, partitions=4) for n in ("other", "other-anomalies", "other-incidents", "other-dlq")]
    one, two = tmp_path / "one.dbn.zst", tmp_path / "two.dbn.zst"
    for path, seed in ((one, "1"), (two, "2")):
        made = CliRunner().invoke(main, ["generate", str(path), "--symbols", "4", "--trades", "5000", "--seed", seed])
        assert made.exit_code == 0, made.output
    args = ["ingest", "--bootstrap", kafka_bootstrap, "--topic", names[0], "--anomalies-topic", names[1],
            "--incidents-topic", names[2], "--dlq-topic", names[3], "--partitions", "4"]
    result = await asyncio.to_thread(CliRunner().invoke, main, [*args, str(one)])
    assert result.exit_code == 0, result.output
    ends = await end_offsets(kafka_bootstrap, names[0], 4)

    result = await asyncio.to_thread(CliRunner().invoke, main, [*args, str(two), "--resume"])

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(
        f"Error: {names[0]} ends with messages that are not from these files ({names[0]}[")
    assert "nothing of them to resume; ingest them without --resume, or to another topic" in result.output
    assert await end_offsets(kafka_bootstrap, names[0], 4) == ends  # nothing sent


def csv_rows(trades: np.ndarray) -> list[str]:
    """Trades as the lines of a Databento CSV export (integer nanosecond timestamps)."""
    return [f"{t['ts_recv']},{t['ts_event']},0,{t['publisher_id']},{t['instrument_id']},T,{t['side'].decode()},0,"
            f"{t['price']:.9f},{t['size']},{t['flags']},0,{t['sequence']},{t['symbol']}" for t in trades]


@pytest.mark.asyncio
async def test_a_paced_ingest_interrupted_and_resumed_sends_each_bad_row_once_with_the_trades_around_it(
        kafka_bootstrap, new_topic, tmp_path: Path) -> None:
    """Bad rows before the first trade, among the trades (one in a run of three, one cut short) and after
    the last, in a file read almost whole as one chunk: each dead letter reaches trades.dlq once, with the publish of
    the trade after it (its carrier), not with the chunk's first trades. Interrupted (Ctrl-C) mid-way,
    the topic then holds exactly the letters whose carrier's publish it holds; resumed, the rest."""
    names = [await new_topic(n, partitions=4) for n in ("dlq-pace", "dlq-pace-anomalies", "dlq-pace-incidents",
                                                        "dlq-pace-dlq")]
    good = csv_rows(generate_market(symbols=8, trades=40_000, seed=3).trades)
    bad_at = [0, 0, 7_000, 15_000, 20_000, 20_001, 20_002, 31_000, 39_999, 40_000, 40_000, 40_000]
    lines = list(good)
    for k, at in enumerate(sorted(bad_at, reverse=True)):  # bad rows put before the good row `at`
        neighbour = good[min(at, len(good) - 1)].split(",")
        neighbour[8] = "1l3.2"
        lines.insert(at, ",".join(neighbour) if k != 5 else ",".join(neighbour[:6]))
    path = tmp_path / "day.csv"
    path.write_text("\n".join([CSV_HEADER, *lines]) + "\n")
    chunks = list(DatabentoFileSource([path]).chunks())
    expected = np.concatenate([c.trades for c in chunks])
    position, sent = {}, 0  # each dead letter's place among the trades ingest sends: how many go before it
    for chunk in chunks:
        position |= {d.origin: sent + k for k, d in zip(chunk.letters_at(), chunk.dead_letters)}
        sent += len(chunk.trades)
    assert len(chunks[0].trades) > 31_000 and len(expected) == 40_000 and len(position) == len(bad_at)
    carrier = {origin: min(at, len(expected) - 1) for origin, at in position.items()}

    cli = Path(sys.executable).with_name("stockanomaly")
    args = [str(cli), "ingest", str(path), "--json", "--bootstrap", kafka_bootstrap, "--topic", names[0],
            "--anomalies-topic", names[1], "--incidents-topic", names[2], "--dlq-topic", names[3], "--partitions", "4"]
    first = subprocess.Popen([*args, "--pace", "x3000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async def a_third_there() -> bool:
            return sum((await end_offsets(kafka_bootstrap, names[0], 4)).values()) >= 1_500

        await eventually_async(a_third_there, timeout=60, interval=0.05, what="1,500 messages of the first ingest")
        first.send_signal(signal.SIGINT)
        _, first_err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGINT, first_err

    def marked(records: list[ConsumerRecord]) -> list[tuple[int, int, int]]:
        """(timestamp, first, stop) of each message: when it was sent, and its publish's trades."""
        found = [(r.timestamp, read_mark(r.headers)) for r in records]
        assert all(mark is not None for _, mark in found)
        return [(t, mark[0].first, mark[0].stop) for t, mark in found if mark is not None]

    reached = max(stop for _, _, stop in marked(await read_all(kafka_bootstrap, names[0], partition_count=4)))
    went = [dict(r.headers)["origin"].decode() for r in await read_all(kafka_bootstrap, names[3], partition_count=4)]
    assert 0 < reached < len(expected)
    assert sorted(went) == sorted(o for o, c in carrier.items() if c < reached)  # none ahead of its trades

    resumed = await asyncio.to_thread(subprocess.run, [*args, "--resume"], capture_output=True, text=True, timeout=300)

    assert resumed.returncode == 0, resumed.stderr
    records = await read_all(kafka_bootstrap, names[0], partition_count=4, timeout=60)
    on_topic = np.concatenate([decode(r.key, r.value, "")[0] for r in records])
    counts = identity_counts(on_topic)
    assert len(on_topic) == 40_000 and counts == identity_counts(expected) and set(counts.values()) == {1}
    letters = await read_all(kafka_bootstrap, names[3], partition_count=4)
    origins = Counter(dict(r.headers)["origin"].decode() for r in letters)
    assert origins == Counter(dict.fromkeys(carrier, 1))  # each bad row once, on one side of the resume or the other
    assert json.loads(resumed.stdout)["dead_letters"] == len(bad_at) - len(went)
    messages = marked(records)
    for letter in letters:  # no publish after its carrier's went before it, and every one before it did
        c, sent_at = carrier[dict(letter.headers)["origin"].decode()], letter.timestamp
        assert all(t <= sent_at for t, _, stop in messages if stop <= c), letter.offset
        assert all(t >= sent_at for t, first, _ in messages if first > c), letter.offset
    assert "Traceback" not in resumed.stderr + first_err


@pytest.mark.asyncio
async def test_a_file_of_bad_rows_alone_resumed_sends_none_of_its_dead_letters_again(
        kafka_bootstrap, new_topic, tmp_path: Path) -> None:
    """No trade on the trades topic says which of its letters went: the resume reads the dead-letter
    topic, where each letter a file ingest sends is marked with its files."""
    names = [await new_topic(n, partitions=4) for n in ("bad-only", "bad-only-anomalies", "bad-only-incidents",
                                                        "bad-only-dlq")]
    rows = [line.split(",") for line in csv_rows(generate_market(symbols=8, trades=40_000, seed=3).trades[:3])]
    path = tmp_path / "bad.csv"  # every price unreadable
    path.write_text("\n".join([CSV_HEADER, *(",".join([*f[:8], "1l3.2", *f[9:]]) for f in rows)]) + "\n")
    args = ["ingest", str(path), "--json", "--bootstrap", kafka_bootstrap, "--topic", names[0], "--anomalies-topic",
            names[1], "--incidents-topic", names[2], "--dlq-topic", names[3], "--partitions", "4"]
    first = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert first.exit_code == 0, first.output

    again = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--resume"])

    assert again.exit_code == 0, again.output
    summary = json.loads(again.output.strip().splitlines()[-1])
    assert (summary["trades"], summary["dead_letters"]) == (0, 0)
    letters = await read_all(kafka_bootstrap, names[3], partition_count=4)
    assert sorted(dict(r.headers)["origin"].decode() for r in letters) == [f"{path}, line {n}" for n in (2, 3, 4)]
    assert {read_mark(r.headers)[0].source for r in letters} == {DatabentoFileSource([path]).fingerprint()}  # type: ignore[index]
