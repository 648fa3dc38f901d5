"""The worker's Kafka outputs: records in the source partition's transaction, dead letters traced
to their own message, oversized ones cut to fit."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import numpy as np
import pytest

from adapters.faust.outputs import KafkaDeadLetterSink, KafkaJsonSink, PartitionProducer, traced_to_messages
from adapters.kafka.codec import Placement, decode, decode_many
from adapters.kafka.dead_letters import MAX_DEAD_LETTER_VALUE, dead_letter_record, read_dead_letter, truncated_length
from builders import batch_of, make_trade
from domain.model import DeadLetter
from domain.validation import dead_letter_for


class _Producer:
    """Records sends; a send to `failing` is acknowledged with an error."""

    def __init__(self, failing: str = "") -> None:
        self.sent: list[tuple[str, bytes | None, bytes, object, str | None]] = []
        self.failing = failing

    async def send(self, topic, key, value, partition, timestamp, headers, *, transactional_id):  # type: ignore[no-untyped-def]
        self.sent.append((topic, key, value, headers, transactional_id))
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if topic == self.failing:
            ack.set_exception(RuntimeError("MessageSizeTooLarge"))
        else:
            ack.set_result(len(self.sent))
        return ack


@pytest.mark.asyncio
async def test_outputs_go_into_the_source_partitions_transaction_and_failures_surface() -> None:
    from adapters.synthetic import generate_market
    from entrypoints.container import build_container
    from adapters.memory import InMemoryTradeSource

    container = build_container()
    container.replay()(InMemoryTradeSource(generate_market(symbols=2, trades=20_000, seed=3).trades, chunk_size=5_000))
    anomaly = container.collected_anomalies().anomalies[0]
    producer = _Producer(failing="trades.dlq")
    out = PartitionProducer(producer, "app-0-3")
    await KafkaJsonSink(out, "anomalies").publish([anomaly])
    await out.delivered()
    [(topic, key, value, _, tid)] = producer.sent
    assert (topic, key, tid) == ("anomalies", anomaly.symbol.encode(), "app-0-3")
    assert json.loads(value)["id"] == anomaly.id
    await KafkaDeadLetterSink(out, "trades.dlq").publish([DeadLetter("bad_json", "not JSON", "t[3]@9", b"{", b"K")])
    with pytest.raises(RuntimeError, match="MessageSizeTooLarge"):
        await out.delivered()  # the take must not commit


def test_a_dead_letter_too_large_for_a_kafka_record_is_cut_and_flagged() -> None:
    raw = b"x" * 1_040_000
    key, value, headers = dead_letter_record(DeadLetter("bad_encoding", "value starts with b'xxxx'", "t[0]@5", raw,
                                                        b"NVDA"))
    assert key == b"NVDA" and value == raw[:MAX_DEAD_LETTER_VALUE]
    assert dict(headers)["truncated"] == b"1040000" and dict(headers)["origin"] == b"t[0]@5"
    _, small, headers = dead_letter_record(DeadLetter("bad_json", "not JSON", "t[0]@6", b"{", b"NVDA"))
    assert small == b"{" and "truncated" not in dict(headers)


def test_a_dead_letter_record_with_a_header_without_value_reads_as_an_empty_one() -> None:
    """Another producer's record on the topic may carry a header whose value is null: `decode
    --dead-letters` stopped on it with an AttributeError."""
    headers = [("reason", b"bad_json"), ("detail", None), ("truncated", None)]
    letter = read_dead_letter(b"NVDA", b"{", headers)  # type: ignore[arg-type]
    assert letter == DeadLetter("bad_json", "", "", b"{", b"NVDA")
    assert truncated_length(headers) is None  # type: ignore[arg-type]


def test_a_refused_trade_is_traced_to_its_own_message_and_re_encoded_alone() -> None:
    messages = [SimpleNamespace(topic="trades", partition=2, offset=o, key=k)
                for o, k in ((40, b"AAA"), (41, b"BBB"), (42, b"AAA"))]
    trades = batch_of(make_trade(symbol="AAA", sequence=1), make_trade(symbol="AAA", sequence=2),
                      make_trade(symbol="BBB", sequence=1), make_trade(symbol="AAA", ts_event=2, sequence=3))
    trades["price"][2] = np.nan
    placement = Placement([2, 1, 1])
    whole = DeadLetter("bad_json", "not JSON", "trades[2]@39", b"{", b"ZZZ")  # decoding: already its message's
    letters = traced_to_messages([whole, dead_letter_for(trades[1], "duplicate", row=1),
                                  dead_letter_for(trades[2], "bad_price", row=2),
                                  dead_letter_for(trades[3], "out_of_order", row=3)], trades, messages, placement)
    assert letters[0] == whole
    assert [(d.origin, d.key) for d in letters[1:]] == [("trades[2]@40#1", b"AAA"), ("trades[2]@41#0", b"BBB"),
                                                        ("trades[2]@42#0", b"AAA")]
    again, problems = decode(letters[2].key, letters[2].raw, "dlq")
    assert problems == [] and len(again) == 1 and np.isnan(again["price"][0]) and again["symbol"][0] == "BBB"


def test_a_refused_trade_of_a_json_list_names_its_element_whatever_elements_decoding_refused() -> None:
    """The origin's `#i` is the trade's element in the list as the producer sent it (the list's
    undecodable elements have dead letters of their own, with their own `#i`), its row in a binary
    batch, and absent for a single JSON object."""
    def item(sequence: int, price: object = 10.0) -> dict[str, object]:
        return {"ts_event": 1_746_451_800_000_000_000 + sequence, "price": price, "size": 100, "sequence": sequence}

    values = [json.dumps([item(1), {"price": 1}, item(2), item(3)]).encode(), json.dumps(item(4)).encode(),
              json.dumps([{"size": 1}, item(5)]).encode()]
    messages = [SimpleNamespace(topic="trades", partition=1, offset=70 + i, key=b"AAA", value=v)
                for i, v in enumerate(values)]
    trades, undecodable, placement = decode_many([(m.key, m.value, f"trades[1]@{m.offset}") for m in messages])
    assert [d.origin for d in undecodable] == ["trades[1]@70#1", "trades[1]@72#0"]
    assert list(trades["sequence"]) == [1, 2, 3, 4, 5]
    refused = [dead_letter_for(trades[r], "duplicate", row=r) for r in range(len(trades))]
    origins = [d.origin for d in traced_to_messages(refused, trades, messages, placement)]
    assert origins == ["trades[1]@70#0", "trades[1]@70#2", "trades[1]@70#3", "trades[1]@71", "trades[1]@72#1"]
