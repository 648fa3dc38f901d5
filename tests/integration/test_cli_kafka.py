"""`stockanomaly decode` and `tail` against the real Kafka: what a user sees of the topics."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from adapters.kafka.codec import encode_batch
from adapters.kafka.producer import KafkaTradePublisher
from adapters.memory import InMemoryTradeSource
from adapters.synthetic import generate_market
from application.ingest import IngestTrades
from domain.model import Anomaly, DeadLetter, anomaly_id
from entrypoints.cli import main

pytestmark = pytest.mark.integration


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.asyncio
async def test_decode_shows_the_trades_ingest_wrote_row_for_row(kafka_bootstrap, new_topic) -> None:
    names = [await new_topic(name, partitions=3) for name in ("trades", "dlq", "anomalies")]
    market = generate_market(symbols=6, trades=20_000, seed=4).trades
    async with KafkaTradePublisher(kafka_bootstrap, names[0], names[1], partitions=3,
                                   anomalies_topic=names[2], incidents_topic=f"{names[0]}.incidents") as publisher:
        await IngestTrades(publisher, batch_trades=300)(InMemoryTradeSource(market, chunk_size=5_000))
    code, out, _ = await asyncio.to_thread(invoke, "decode", "--bootstrap", kafka_bootstrap, "--topic", names[0],
                                           "--limit", "100000", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(market)
    assert sorted((r["symbol"], r["ts_event"], r["sequence"], r["size"]) for r in rows) == sorted(
        zip(market["symbol"].tolist(), market["ts_event"].tolist(), market["sequence"].tolist(),
            market["size"].tolist()))
    assert all(r["ts_local"].endswith("-05:00") for r in rows)  # a March day before daylight saving time
    # The last message of one partition only, as readable rows.
    code, out, _ = await asyncio.to_thread(invoke, "decode", "--bootstrap", kafka_bootstrap, "--topic", names[0],
                                           "--partition", "1", "--last", "1")
    assert code == 0 and out and all(line.split()[0].startswith("1@") for line in out.splitlines())
    code, _, err = await asyncio.to_thread(invoke, "decode", "--bootstrap", kafka_bootstrap, "--topic", names[0],
                                           "--partition", "7")
    assert code == 1 and err.strip().splitlines()[-1] == f"Error: {names[0]} has partitions [0, 1, 2], not [7]"


@pytest.mark.asyncio
async def test_decode_writes_strict_json_for_impossible_prices_and_says_when_there_is_nothing(
        kafka_bootstrap, new_topic) -> None:
    names = [await new_topic(name, partitions=1) for name in ("trades", "dlq", "anomalies")]
    market = generate_market(symbols=1, trades=2_000, seed=4).trades[:3].copy()
    market["price"][1], market["price"][2] = float("nan"), float("inf")  # ingest passes them; the worker refuses them
    async with KafkaTradePublisher(kafka_bootstrap, names[0], names[1], partitions=1, anomalies_topic=names[2],
                                   incidents_topic=f"{names[0]}.incidents") as publisher:
        await IngestTrades(publisher, batch_trades=300)(InMemoryTradeSource(market, chunk_size=5_000))
    code, out, _ = await asyncio.to_thread(invoke, "decode", "--bootstrap", kafka_bootstrap, "--topic", names[0],
                                           "--json")

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert code == 0
    assert [json.loads(line, parse_constant=strict)["price"] for line in out.splitlines()][1:] == [None, None]
    code, out, err = await asyncio.to_thread(invoke, "decode", "--bootstrap", kafka_bootstrap, "--topic", names[0],
                                             "--offset", "99")
    assert code == 0 and out == "" and err.strip() == f"no messages on {names[0]} from offset 99"


@pytest.mark.asyncio
async def test_tail_shows_the_last_anomalies_of_the_topic_in_order_and_skips_what_is_not_one(
        kafka_bootstrap, new_topic) -> None:
    topic = await new_topic("anomalies", partitions=2)
    ts = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York
    anomalies = [Anomaly(id=anomaly_id("high_volume", "NVDA", 2, 7, ts + k, k), detector="high_volume",
                         symbol="NVDA", ts_event=ts + k, price=113.0, size=50_000 + k, score=2.0 + k,
                         severity="medium", reason=f"size {50_000 + k:,} is large", sequence=k, session="regular",
                         ts_local=f"2025-05-05T09:30:00.00000000{k}-04:00") for k in range(5)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        written = int(time.time() * 1000)  # record timestamps a millisecond apart at least
        await producer.send_and_wait(topic, b"{not an anomaly", partition=1, timestamp_ms=written)
        for k, a in enumerate(anomalies):  # as workers of two partitions commit them, one after another
            await producer.send_and_wait(topic, json.dumps(a.to_dict()).encode(), key=b"NVDA", partition=k % 2,
                                         timestamp_ms=written + 1 + k)
    finally:
        await producer.stop()
    code, out, err = await asyncio.to_thread(invoke, "tail", "--bootstrap", kafka_bootstrap, "--topic", topic,
                                             "-n", "3", "--json")
    # The last three of the topic, in the order they were written (not three of each partition).
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [a.id for a in anomalies[-3:]]
    code, out, err = await asyncio.to_thread(invoke, "tail", "--bootstrap", kafka_bootstrap, "--topic", topic,
                                             "-n", "10", "--json")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [a.id for a in anomalies]
    assert "1@0: not an anomaly" in err
    code, out, _ = await asyncio.to_thread(invoke, "tail", "--bootstrap", kafka_bootstrap, "--topic", topic, "-n", "1")
    assert code == 0 and out.startswith("2025-05-05 09:30:00.000 regular  NVDA") and "size 50,004 is large" in out
    assert out.rstrip().endswith(f"  id {anomalies[-1].id}")  # what `show` and `label` take, last on the line


@pytest.mark.asyncio
async def test_tail_and_decode_count_records_not_offsets_on_a_transactional_topic(kafka_bootstrap, new_topic) -> None:
    # The worker writes anomalies in transactions: each commit marker takes an offset, and an
    # aborted transaction's records take offsets a read-committed reader never sees.
    topic = await new_topic("anomalies", partitions=1)
    ts = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York
    anomalies = [Anomaly(id=anomaly_id("high_volume", "NVDA", 2, 7, ts + k, k), detector="high_volume",
                         symbol="NVDA", ts_event=ts + k, price=113.0, size=50_000 + k, score=2.0,
                         severity="medium", reason="large", sequence=k, session="regular",
                         ts_local=f"2025-05-05T09:30:00.00000000{k}-04:00") for k in range(6)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}-writer")
    await producer.start()
    try:
        for a in anomalies:
            async with producer.transaction():
                await producer.send_and_wait(topic, json.dumps(a.to_dict()).encode(), key=b"NVDA")
        await producer.begin_transaction()
        for a in anomalies:  # six records nobody will see
            await producer.send_and_wait(topic, json.dumps(a.to_dict()).encode(), key=b"NVDA")
        await producer.abort_transaction()
    finally:
        await producer.stop()
    for n in (1, 3, 6, 10):
        code, out, _ = await asyncio.to_thread(invoke, "tail", "--bootstrap", kafka_bootstrap, "--topic", topic,
                                               "-n", str(n), "--json")
        assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [a.id for a in anomalies[-n:]]
    code, out, _ = await asyncio.to_thread(invoke, "decode", "--bootstrap", kafka_bootstrap, "--topic", topic,
                                           "--last", "2")
    assert code == 0 and len(out.strip().splitlines()) == 2


@pytest.mark.asyncio
async def test_tail_incidents_shows_the_incidents_topic(kafka_bootstrap, new_topic) -> None:
    from domain.incidents import IncidentGrouper

    topic = await new_topic("incidents", partitions=1)
    ts = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York
    members = [Anomaly(id=anomaly_id(d, "NVDA", 2, 7, ts + k, k), detector=d, symbol="NVDA", ts_event=ts + k,
                       price=113.0, size=50_000, score=1.5 + k, severity="low", reason=f"{d} fired", sequence=k,
                       session="regular", ts_local=f"2025-05-05T09:30:00.00000000{k}-04:00")
               for k, d in enumerate(("high_volume", "trade_burst"))]
    grouper = IncidentGrouper()
    grouper.add(members)
    (incident,) = grouper.flush()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(incident.to_dict()).encode(), key=b"NVDA")
    finally:
        await producer.stop()
    code, out, _ = await asyncio.to_thread(invoke, "tail", "--incidents", "--bootstrap", kafka_bootstrap,
                                           "--topic", topic)
    assert code == 0
    assert out.strip() == ("2025-05-05 09:30:00.000 regular  NVDA       2 anomalies    2.50  trade_burst: trade_burst fired"
                           f"  id {incident.id}")
    code, out, _ = await asyncio.to_thread(invoke, "tail", "--incidents", "--json", "--bootstrap", kafka_bootstrap,
                                           "--topic", topic)
    assert code == 0 and json.loads(out)["members"] == [m.id for m in members]


@pytest.mark.asyncio
async def test_decode_shows_dead_letters_with_their_reason_and_what_they_hold(kafka_bootstrap, new_topic) -> None:
    """`decode --topic trades.dlq` was refused (the topic is also the dead-letter setting) and showed
    a CSV row as an undecodable message, without the reason it was refused for."""
    names = [await new_topic(name, partitions=1) for name in ("trades", "dlq")]
    trade = generate_market(symbols=1, trades=2_000, seed=4).trades[:1]
    key, value = encode_batch(str(trade["symbol"][0]), trade)
    letters = [DeadLetter("bad_row", "unparseable price 'x'", "day.csv, line 7", b"1746451800,NVDA,x,100"),
               DeadLetter("bad_price", "price is nan", f"{names[0]}[0]@5", value, key)]
    async with KafkaTradePublisher(kafka_bootstrap, names[0], names[1], partitions=1, anomalies_topic=f"{names[0]}.a",
                                   incidents_topic=f"{names[0]}.i") as publisher:
        await publisher.publish_dead_letters(letters)
    env = {"STOCKANOMALY_DLQ_TOPIC": names[1]}

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, [*args, "--bootstrap", kafka_bootstrap], env=env)
        return result.exit_code, result.stdout, result.stderr

    code, out, err = await asyncio.to_thread(run, "decode", "--dead-letters")
    lines = out.splitlines()
    assert code == 0, err
    assert lines[0] == "         0@0  dead letter bad_row from day.csv, line 7: unparseable price 'x'"
    assert lines[1].strip() == "raw (21 bytes): '1746451800,NVDA,x,100'"
    assert lines[2] == f"         0@1  dead letter bad_price from {names[0]}[0]@5: price is nan"
    assert lines[3].startswith("         0@1  ") and f" seq {int(trade['sequence'][0])}" in lines[3] and len(lines) == 4
    # The same topic named with --topic, and a partition given twice read once.
    code, out, err = await asyncio.to_thread(run, "decode", "--topic", names[1], "--json", "--partition", "0",
                                             "--partition", "0")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert [(r.get("dead_letter"), r.get("origin"), r.get("raw"), r.get("trades")) for r in rows[:2]] == [
        ("bad_row", "day.csv, line 7", "1746451800,NVDA,x,100", None), ("bad_price", f"{names[0]}[0]@5", None, 1)]
    assert rows[2]["sequence"] == int(trade["sequence"][0]) and len(rows) == 3
    code, out, err = await asyncio.to_thread(run, "tail", "--topic", names[1])
    assert code == 0 and "0@0: not an anomaly" in err and out == ""


@pytest.mark.asyncio
async def test_tail_orders_anomalies_of_one_millisecond_by_event_time_not_by_partition(
        kafka_bootstrap, new_topic) -> None:
    """A worker writes a take's anomalies to several partitions within one millisecond of Kafka's
    timestamps, in event-time order; tail put partition 0's first whatever their times."""
    topic = await new_topic("anomalies", partitions=2)
    ts = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York
    late, early = (Anomaly(id=anomaly_id("high_volume", s, 2, 7, ts + k, k), detector="high_volume", symbol=s,
                           ts_event=ts + k, price=113.0, size=50_000, score=2.0, severity="medium",
                           reason=f"{s} large", sequence=k, session="regular",
                           ts_local=f"2025-05-05T09:30:00.00000000{k}-04:00") for s, k in (("NVDA", 5), ("AMD", 1)))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        written = int(time.time() * 1000)
        for anomaly, partition in ((early, 1), (late, 0)):
            await producer.send_and_wait(topic, json.dumps(anomaly.to_dict()).encode(), key=anomaly.symbol.encode(),
                                         partition=partition, timestamp_ms=written)
    finally:
        await producer.stop()
    for n, want in ((2, [early, late]), (1, [late])):
        code, out, _ = await asyncio.to_thread(invoke, "tail", "--bootstrap", kafka_bootstrap, "--topic", topic,
                                               "-n", str(n), "--json")
        assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [a.id for a in want]
