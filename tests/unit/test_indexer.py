"""The indexer agent: anomalies from the topic into the sink, bad records dead-lettered, a refusal stops it."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from builders import FakeIndexSink as FakeSink, until
from faust.transport.consumer import TransactionManager
from faust.types import TP

from adapters.elasticsearch.bulk import FailedAnomaly
from adapters.faust.indexer import create_indexer_app, rejected_letters
from adapters.kafka.records import decode_anomaly, decode_incident
from adapters.memory import InMemoryMetrics
from domain.model import Anomaly, DeadLetter
from entrypoints.settings import load_settings

ANOMALY = Anomaly(id="a1", detector="high_volume", symbol="NVDA", ts_event=1_746_450_000_000_000_000, price=113.5,
                  size=120_000, score=45.2, severity="high", reason="size 120,000 is 45.2x NVDA's p99.9 of 2,656",
                  publisher_id=2, instrument_id=11667, sequence=42, details={"threshold": 2656.0})


def test_an_anomaly_survives_the_topic_round_trip() -> None:
    assert decode_anomaly(json.dumps(ANOMALY.to_dict()).encode(), "anomalies[0]@1") == ANOMALY
    for bad in (b"{not json", b"[]", json.dumps({"id": "x"}).encode(), None):
        letter = decode_anomaly(bad, "anomalies[0]@7")
        assert isinstance(letter, DeadLetter) and letter.reason == "bad_anomaly"
        assert letter.origin == "anomalies[0]@7" and letter.raw == (bad or b"")


@pytest.mark.parametrize("bad", [
    json.dumps({**ANOMALY.to_dict(), "ts_event": 1e999}).encode(),  # Infinity: int() raised OverflowError
    json.dumps({**ANOMALY.to_dict(), "context": [{"ts_event": 1e999, "price": 1, "size": 1}]}).encode(),
    b"[" * 1001 + b"]" * 1001,  # nested deeper than json.loads goes: RecursionError
], ids=["infinite-ts", "infinite-context-ts", "too-deep"])
def test_a_record_that_does_not_decode_is_a_dead_letter_whatever_it_holds(bad: bytes) -> None:
    # These raised out of the decoder: the indexer (and the notifier) stopped on the record, and
    # stopped again at every restart, stuck before it for good.
    for decode, reason in ((decode_anomaly, "bad_anomaly"), (decode_incident, "bad_incident")):
        letter = decode(bad, "anomalies[0]@7")
        assert isinstance(letter, DeadLetter) and letter.reason == reason and letter.raw == bad


@pytest.mark.asyncio
async def test_the_indexer_writes_anomalies_and_counts_what_elasticsearch_said() -> None:
    sink, metrics = FakeSink(), InMemoryMetrics()
    app = create_indexer_app(load_settings(app_id="unit-indexer").streaming(), sink, metrics)  # type: ignore[arg-type]
    app.tables.recovery.completed.set()  # as a started app's are once recovered
    async with app.index_anomalies.test_context() as agent:  # type: ignore[attr-defined]
        await agent.put(json.dumps(ANOMALY.to_dict()).encode(), key=b"NVDA")
        await until(lambda: sink.written)
    assert sink.written == [ANOMALY]
    assert metrics.elasticsearch["written"] == 1


@pytest.mark.asyncio
async def test_a_refusal_retrying_cannot_fix_stops_the_indexer_without_committing() -> None:
    sink = FakeSink(refuse=PermissionError("HTTP 403: no privilege to write"))
    app = create_indexer_app(load_settings(app_id="unit-indexer-refused").streaming(), sink)  # type: ignore[arg-type]
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app.crash = crash  # type: ignore[method-assign]
    app.tables.recovery.completed.set()  # as a started app's are once recovered
    async with app.index_anomalies.test_context() as agent:  # type: ignore[attr-defined]
        await agent.put(json.dumps(ANOMALY.to_dict()).encode(), key=b"NVDA")
        await until(lambda: crashes)
    assert len(crashes) == 1 and "403" in str(crashes[0])
    assert sink.written == []


def test_a_document_elasticsearch_refused_is_dead_lettered_with_its_own_partition() -> None:
    """A take spans partitions; each refusal's letter commits with its record's partition (it went
    with the take's last one: revoked before the commit, the refusal was lost)."""
    other = replace(ANOMALY, id="other-id", symbol="AMD")
    letters = rejected_letters([FailedAnomaly(ANOMALY, 400, "mapper_parsing_exception"),
                                FailedAnomaly(other, 400, "mapper_parsing_exception")],
                               {ANOMALY.id: 3, other.id: 0}, "anomalies")
    assert [(p, d.reason, d.origin, d.key) for p, d in letters] == [
        (3, "index_rejected", f"anomalies:{ANOMALY.id}", b"NVDA"), (0, "index_rejected", "anomalies:other-id", b"AMD")]
    assert "HTTP 400: mapper_parsing_exception" in letters[0][1].detail


@pytest.mark.asyncio
async def test_partitions_a_second_indexer_took_and_gave_back_get_fresh_producers(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Measured: a second indexer joined the group and left again; the first crashed with ProducerFenced on
    its next take. The partitions it had lent out stayed with it as standbys, their producers kept (Faust
    stops only the revoked partitions' that are not standbys now), fenced by the other's, and reused."""
    async def faust_on_rebalance(self: Any, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        pass  # Faust's own, as it treats revoked partitions that are standbys now: their producers kept

    monkeypatch.setattr(TransactionManager, "on_rebalance", faust_on_rebalance)
    app = create_indexer_app(load_settings(app_id="unit-indexer-lent").streaming(), FakeSink())  # type: ignore[arg-type]
    assert app.conf.table_standby_replicas > 0  # 0 with no tables: Faust assigns round-robin, no topic groups

    producers = {f"unit-indexer-lent-indexer-1-{p}": object() for p in range(4)}

    async def stop_transaction(tid: str) -> None:
        producers.pop(tid)

    manager = SimpleNamespace(
        producer=SimpleNamespace(_transaction_producers=producers, stop_transaction=stop_transaction),
        _tps_to_transactional_ids=lambda tps: {f"unit-indexer-lent-indexer-1-{tp.partition}" for tp in tps})
    held = {TP(topic, p) for topic in ("anomalies", "incidents") for p in (2, 3)}
    lent = {TP(topic, p) for topic in ("anomalies", "incidents") for p in (0, 1)}
    await TransactionManager.on_rebalance(manager, held, lent, set())  # type: ignore[arg-type]
    assert set(producers) == {"unit-indexer-lent-indexer-1-2", "unit-indexer-lent-indexer-1-3"}
