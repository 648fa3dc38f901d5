"""`stockanomaly reindex` against the real Kafka and Elasticsearch: the documents Elasticsearch
refused (on the dead-letter topic as the indexer leaves them) written again once the cause is
fixed, each once, under its id."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from adapters.kafka.producer import KafkaTradePublisher
from adapters.kafka.records import INDEX_REJECTED
from application.query import parse_time
from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter, anomaly_id, severity_for
from entrypoints.cli import main
from integration_support import eventually

pytestmark = pytest.mark.integration


def anomaly(symbol: str, when: str, sequence: int) -> Anomaly:
    ts = parse_time(when, 0)
    return Anomaly(id=anomaly_id("high_volume", symbol, 2, 7, ts, sequence), detector="high_volume", symbol=symbol,
                   ts_event=ts, price=113.72, size=90_000, score=2.5, severity=severity_for(2.5),
                   reason=f"size 90,000 is 25.0x {symbol}'s p99.9 of 3,594 (alert at 8x)", publisher_id=2,
                   instrument_id=11667, sequence=sequence, details={"ratio": 25.0})


MONDAY = anomaly("NVDA", "2025-05-05T13:54:21Z", 1)
TUESDAY = anomaly("NVDA", "2025-05-06T13:54:21Z", 2)
INCIDENT = Incident(id="f" * 32, symbol="NVDA", start_ns=MONDAY.ts_event, end_ns=MONDAY.ts_event, size=1,
                    members=(MONDAY.id,), detectors=("high_volume",), score=2.5, severity=MONDAY.severity,
                    headline=f"high_volume: {MONDAY.reason}")


def rejected(topic: str, doc: Anomaly | Incident) -> DeadLetter:
    """What the indexer leaves on the dead-letter topic for a document Elasticsearch refused."""
    return DeadLetter(INDEX_REJECTED, f"Elasticsearch refused document {doc.id}: HTTP 400: mapper_parsing_exception",
                      f"{topic}:{doc.id}", json.dumps(doc.to_dict()).encode(), key=b"NVDA")


def ids_in(es: Elasticsearch, prefix: str, expected: int) -> list[str]:
    def probe() -> list[str] | None:
        es.indices.refresh(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
        hits = es.search(index=f"{prefix}-*", size=100, allow_no_indices=True, ignore_unavailable=True)["hits"]["hits"]
        return sorted(h["_id"] for h in hits) if len(hits) == expected else None

    return eventually(probe, timeout=30, what=f"{expected} documents in {prefix}-*") or []


@pytest.mark.asyncio
async def test_reindex_writes_the_refused_documents_again_once_the_mapping_is_fixed(
        kafka_bootstrap, new_topic, es: Elasticsearch, es_url: str, es_prefix: str) -> None:
    dlq = await new_topic("dlq", partitions=2)
    letters = [rejected("anomalies", MONDAY), rejected("anomalies", TUESDAY), rejected("incidents", INCIDENT),
               rejected("anomalies", MONDAY),  # refused twice (a take read again): indexed once
               DeadLetter(INDEX_REJECTED, "refused", "anomalies:x", b"{not json"),
               DeadLetter("bad_price", "price is nan", "trades[0]@5", b"...")]  # not the indexer's: left alone
    async with KafkaTradePublisher(kafka_bootstrap, f"{dlq}.t", dlq, partitions=2, anomalies_topic=f"{dlq}.a",
                                   incidents_topic=f"{dlq}.i") as publisher:
        await publisher.publish_dead_letters(letters)
    incidents_prefix = f"{es_prefix}i"
    env = {"STOCKANOMALY_DLQ_TOPIC": dlq, "STOCKANOMALY_ES_INDEX_PREFIX": es_prefix,
           "STOCKANOMALY_ES_INCIDENTS_PREFIX": incidents_prefix}

    def run() -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["reindex", "--bootstrap", kafka_bootstrap, "--es-url", es_url], env=env)
        return result.exit_code, result.stdout, result.stderr

    # Still refused: Tuesday's index was made with a mapping that cannot take a symbol.
    es.indices.create(index=f"{es_prefix}-2025.05.06", mappings={"properties": {"symbol": {"type": "long"}}})
    code, out, err = await asyncio.to_thread(run)
    assert code == 1
    assert out.strip() == f"indexed again: 1 anomaly, 1 incident (from 5 index_rejected dead letters on {dlq})"
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"refused again: {TUESDAY.id}: HTTP 400: ") and "symbol" in lines[0]
    assert lines[1].startswith("unreadable: ") and "(anomalies:x): not an anomaly record" in lines[1] and len(lines) == 2
    assert ids_in(es, es_prefix, 1) == [MONDAY.id] and ids_in(es, incidents_prefix, 1) == [INCIDENT.id]

    # The mapping fixed (the index dropped): everything readable is indexed, each document once.
    es.indices.delete(index=f"{es_prefix}-2025.05.06")
    code, out, err = await asyncio.to_thread(run)
    assert code == 1  # the unreadable letter is still there, and still said
    assert out.strip() == f"indexed again: 2 anomalies, 1 incident (from 5 index_rejected dead letters on {dlq})"
    assert "refused again" not in err and err.count("unreadable: ") == 1
    assert ids_in(es, es_prefix, 2) == sorted([MONDAY.id, TUESDAY.id])
    assert es.get(index=f"{es_prefix}-2025.05.05", id=MONDAY.id)["_version"] == 2  # replaced, not duplicated
    assert es.get(index=f"{es_prefix}-2025.05.06", id=TUESDAY.id)["_source"]["symbol"] == "NVDA"


@pytest.mark.asyncio
async def test_reindex_says_when_there_is_nothing_to_index(kafka_bootstrap, new_topic, es_url: str) -> None:
    dlq = await new_topic("dlq", partitions=1)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["reindex", "--bootstrap", kafka_bootstrap, "--topic",
                                                                dlq, "--es-url", es_url])
    assert result.exit_code == 0 and result.stdout.strip() == f"no index_rejected dead letters on {dlq}"


@pytest.mark.asyncio
async def test_reindex_gives_up_on_an_unreachable_elasticsearch_in_one_line(kafka_bootstrap, new_topic) -> None:
    dlq = await new_topic("dlq", partitions=1)
    async with KafkaTradePublisher(kafka_bootstrap, f"{dlq}.t", dlq, partitions=1, anomalies_topic=f"{dlq}.a",
                                   incidents_topic=f"{dlq}.i") as publisher:
        await publisher.publish_dead_letters([rejected("anomalies", MONDAY)])
    result = await asyncio.to_thread(CliRunner().invoke, main, [
        "reindex", "--bootstrap", kafka_bootstrap, "--topic", dlq, "--es-url", "http://127.0.0.1:1",
        "--retry-seconds", "0.5"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: Elasticsearch unavailable for 0.5s: 1 document not written; their dead letters stay on {dlq}: "
        "run reindex again once it answers")
