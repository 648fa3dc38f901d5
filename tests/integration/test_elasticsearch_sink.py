"""The Elasticsearch sinks and query against the real Elasticsearch of scripts/services.sh."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elasticsearch import AsyncElasticsearch, Elasticsearch

from adapters.elasticsearch import (
    AsyncElasticsearchAnomalySink,
    ElasticsearchAnomalyQuery,
    ElasticsearchAnomalySink,
    RetryPolicy,
)
from adapters.elasticsearch.mapping import ANOMALIES, INCIDENTS
from application.query import QueryAnomalies, parse_time
from domain.incidents import Incident
from domain.model import Anomaly, anomaly_id, severity_for
from entrypoints.cli import main
from integration_support import GatedProxy, eventually

FAST_RETRY = RetryPolicy(initial_delay=0.05, multiplier=2.0, max_delay=0.2, total=30.0, jitter=0.0)


def make_anomaly(symbol: str, detector: str, when: str, score: float, sequence: int = 1,
                 extra_ns: int = 0) -> Anomaly:
    ts = parse_time(when, 0) + extra_ns
    return Anomaly(id=anomaly_id(detector, symbol, 2, 7, ts, sequence), detector=detector, symbol=symbol,
                   ts_event=ts, price=113.72 + sequence / 100, size=1000 * sequence, score=score,
                   severity=severity_for(score), reason=f"{detector} fired on {symbol} with score {score}",
                   publisher_id=2, instrument_id=3_000_000_000, sequence=sequence,
                   details={"ratio": score * 4, "threshold": 3158.0})


A1 = make_anomaly("NVDA", "high_volume", "2025-05-05T13:30:03.063638070Z", 2.5, 1)
A2 = make_anomaly("NVDA", "price_change", "2025-05-05T14:00:00Z", 6.0, 2)
A3 = make_anomaly("AAPL", "high_volume", "2025-05-05T15:00:00Z", 1.2, 3)
A4 = make_anomaly("NVDA", "trade_burst", "2025-05-06T13:30:00Z", 3.0, 4)
SAMPLE = [A1, A2, A3, A4]


def many(n: int, day: str = "2025-05-05") -> list[Anomaly]:
    return [make_anomaly("ACME", "volume_surge", f"{day}T14:00:00Z", 1.5, i, extra_ns=i) for i in range(n)]


def stored_count(es: Elasticsearch, prefix: str, expected: int | None = None) -> int:
    def probe() -> int | None:
        es.indices.refresh(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
        count = int(es.count(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)["count"])
        return count if expected is None or count == expected else None

    return eventually(probe, timeout=30, what=f"{expected} documents in {prefix}-*") or 0


def sink_for(es_url: str, prefix: str, **kw: Any) -> ElasticsearchAnomalySink:
    return ElasticsearchAnomalySink(Elasticsearch(es_url, max_retries=0, request_timeout=10), index_prefix=prefix,
                                    replicas=0, **kw)


@pytest.fixture
def proxy(es_url: str) -> Iterator[GatedProxy]:
    gate = GatedProxy(es_url)
    yield gate
    gate.close()


# -- writing ----------------------------------------------------------------------------------------
def test_template_is_installed_and_daily_indices_get_its_mappings(es: Elasticsearch, es_url: str,
                                                                  es_prefix: str) -> None:
    sink = sink_for(es_url, es_prefix)
    sink.ensure_template()
    sink.ensure_template()  # idempotent
    (template,) = es.indices.get_index_template(name=es_prefix)["index_templates"]
    assert template["index_template"]["index_patterns"] == [f"{es_prefix}-*"]
    sink.publish(SAMPLE)
    sink.close()
    assert sorted(es.indices.get(index=f"{es_prefix}-*")) == [f"{es_prefix}-2025.05.05", f"{es_prefix}-2025.05.06"]
    props = es.indices.get_mapping(index=f"{es_prefix}-2025.05.05")[f"{es_prefix}-2025.05.05"]["mappings"]["properties"]
    assert (props["ts_event"]["type"], props["details"]["type"], props["symbol"]["type"]) == (
        "date_nanos", "flattened", "keyword")
    assert stored_count(es, es_prefix, 4) == 4
    assert (sink.counters.written, sink.counters.failed, sink.counters.retries) == (4, 0, 0)


def test_writing_the_same_anomalies_again_overwrites_instead_of_duplicating(es: Elasticsearch, es_url: str,
                                                                            es_prefix: str) -> None:
    first = many(300) + SAMPLE
    sink = sink_for(es_url, es_prefix, chunk_size=100)
    sink.publish(first)
    sink.close()
    assert stored_count(es, es_prefix, len(first)) == len(first)
    restarted = sink_for(es_url, es_prefix)  # a replay after a restart: a new sink, same anomalies
    restarted.publish(first[::-1])
    restarted.close()
    assert stored_count(es, es_prefix) == len(first)
    doc = es.get(index=f"{es_prefix}-2025.05.05", id=A1.id)
    assert doc["_version"] == 2 and doc["_source"]["ts_event"] == "2025-05-05T13:30:03.063638070Z"


def test_a_document_elasticsearch_rejects_is_reported_not_retried(es: Elasticsearch, es_url: str,
                                                                  es_prefix: str) -> None:
    # An index created by hand with a conflicting mapping: symbols cannot be parsed as longs.
    es.indices.create(index=f"{es_prefix}-2025.05.06", mappings={"properties": {"symbol": {"type": "long"}}})
    sink = sink_for(es_url, es_prefix)
    sink.publish(SAMPLE)
    sink.flush()
    assert [f.anomaly for f in sink.failed] == [A4]
    assert sink.failed[0].status == 400 and "symbol" in sink.failed[0].reason
    assert (sink.counters.written, sink.counters.failed, sink.counters.retries, sink.pending) == (3, 1, 0, 0)
    sink.close()
    assert stored_count(es, es_prefix, 3) == 3


def test_an_outage_is_retried_and_nothing_is_lost(es: Elasticsearch, es_prefix: str, proxy: GatedProxy) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) in (3, 6):  # Elasticsearch "comes back" after 3 failed attempts each time
            proxy.open()
        time.sleep(seconds)

    sink = sink_for(proxy.url, es_prefix, retry=FAST_RETRY, sleep=sleep)
    before, during = many(200), many(150, day="2025-05-06")
    sink.publish(before)  # down from the start: the template and the bulk wait for it
    sink.flush()
    assert (sink.counters.written, sink.counters.retries, proxy.opened) == (200, 3, 1)
    proxy.cut()  # down again, with the client holding pooled connections
    sink.publish(during)
    sink.flush()
    assert (sink.counters.written, sink.counters.retries, sink.counters.failed) == (350, 6, 0)
    sink.close()
    assert stored_count(es, es_prefix, 350) == 350


@pytest.mark.asyncio
async def test_the_async_sink_writes_idempotently_and_survives_an_outage(es: Elasticsearch, es_url: str,
                                                                         es_prefix: str, proxy: GatedProxy) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            proxy.open()
        await asyncio.sleep(seconds)

    anomalies = many(120) + SAMPLE
    sink = AsyncElasticsearchAnomalySink(AsyncElasticsearch(proxy.url, max_retries=0, request_timeout=10),
                                         index_prefix=es_prefix, replicas=0, retry=FAST_RETRY, sleep=sleep)
    await sink.publish(anomalies)
    await sink.close()
    assert (sink.counters.written, sink.counters.retries) == (len(anomalies), 2)
    again = AsyncElasticsearchAnomalySink(AsyncElasticsearch(es_url, max_retries=0), index_prefix=es_prefix,
                                          replicas=0)
    await again.publish(anomalies)
    await again.close()
    assert stored_count(es, es_prefix) == len(anomalies)


# -- querying -----------------------------------------------------------------------------------------
@pytest.fixture
def stored(es: Elasticsearch, es_url: str, es_prefix: str) -> str:
    sink = sink_for(es_url, es_prefix)
    sink.publish(SAMPLE + [make_anomaly("NVDA", "high_volume", "2025-05-05T13:30:03.063638070Z", 1.1, 9,
                                        extra_ns=1)])
    sink.close()
    stored_count(es, es_prefix, 5)
    return es_prefix


A1_NEXT_NS = make_anomaly("NVDA", "high_volume", "2025-05-05T13:30:03.063638070Z", 1.1, 9, extra_ns=1)


@pytest.mark.parametrize(("criteria", "expected"), [
    ({"symbols": ["nvda"]}, [A4, A2, A1_NEXT_NS, A1]),
    ({"detectors": ["high_volume"]}, [A3, A1_NEXT_NS, A1]),
    ({"since": "2025-05-05T13:45:00Z", "until": "2025-05-06T00:00:00Z"}, [A3, A2]),
    ({"since": "2025-05-05T13:30:03.063638071Z", "until": "2025-05-05T13:30:03.063638072Z"}, [A1_NEXT_NS]),
    ({"min_score": 3.0}, [A4, A2]),
    ({"min_score": 2.0, "order": "score"}, [A2, A4, A1]),
    ({"symbols": ["NVDA", "AAPL"], "detectors": ["high_volume"], "min_score": 1.2}, [A3, A1]),
    ({"limit": 2}, [A4, A3]),
], ids=["symbol-any-case", "detector", "time-range", "nanosecond-range", "min-score", "by-score", "combined",
        "limit"])
def test_query_finds_exactly_the_matching_anomalies(es: Elasticsearch, stored: str, criteria: dict,
                                                    expected: list[Anomaly]) -> None:
    matches = QueryAnomalies(ElasticsearchAnomalyQuery(es, index_prefix=stored))(**criteria)
    assert matches.found == expected
    # Counted when the limit is reached: the same filters over all the indices (five stored, two shown).
    assert matches.total == (5 if criteria == {"limit": 2} else len(expected))


def test_query_of_a_prefix_with_no_indices_finds_nothing(es: Elasticsearch, es_prefix: str) -> None:
    none = ElasticsearchAnomalyQuery(es, index_prefix=f"{es_prefix}-none")
    assert none.search() == [] and none.count() == 0


def test_query_command_prints_json_and_a_table(es_url: str, stored: str) -> None:
    args = ["query", "--es-url", es_url, "--index", stored, "--symbol", "NVDA", "--since", "2025-05-05T00:00:00Z",
            "--until", "2025-05-06T00:00:00Z", "--min-score", "2"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [a["id"] for a in found] == [A2.id, A1.id]
    assert found[1] == A1.to_dict()
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "2 anomalies" in table.output and "price_change" in table.output
    assert A1.id in table.output and A2.id in table.output  # whole, for `show` and `label`
    assert " of " not in table.output.splitlines()[0]
    cut = CliRunner().invoke(main, [*args, "--limit", "1"])  # two match: the table says it shows one of them
    assert cut.exit_code == 0 and "1 of 2 anomalies (the first 1 by --order time: raise --limit" in cut.output
    cut_json = CliRunner().invoke(main, [*args, "--limit", "1", "--json"])
    assert json.loads(cut_json.stdout) == [A2.to_dict()]
    assert cut_json.stderr.startswith("1 of 2 anomalies (the first 1")  # apart from the JSON a script reads


@pytest.mark.asyncio
async def test_show_and_label_take_a_unique_start_of_an_id_the_indices_hold(es: Elasticsearch, es_url: str,
                                                                           es_prefix: str, tmp_path: Path) -> None:
    """A prefix query on the templates' keyword `id`, over the anomaly and the incident indices."""
    first = replace(A1, id="9d302921bbad48840e9783c0da2d2251")
    twin = replace(A2, id="9d302921bbd4c275f5b00afdb1ce91dd")  # shares its first 10 digits
    incident = Incident(id="ab12cd34" + "0" * 24, symbol="AAPL", start_ns=A3.ts_event, end_ns=A3.ts_event, size=1,
                        members=(A3.id,), detectors=(A3.detector,), score=A3.score, severity=A3.severity,
                        headline=f"{A3.detector}: {A3.reason}")
    stores = ((ANOMALIES, es_prefix, [first, twin, A3]), (INCIDENTS, f"{es_prefix}i", [incident]))
    for kind, prefix, documents in stores:
        sink = AsyncElasticsearchAnomalySink(AsyncElasticsearch(es_url, max_retries=0), index_prefix=prefix,
                                             replicas=0, kind=kind)
        await sink.publish(documents)
        await sink.close()
        stored_count(es, prefix, len(documents))
    env = {"STOCKANOMALY_ES_INDEX_PREFIX": es_prefix, "STOCKANOMALY_ES_INCIDENTS_PREFIX": f"{es_prefix}i",
           "STOCKANOMALY_OUT": None}

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*args, "--es-url", es_url], env=env)
        return result.exit_code, result.output.strip()

    code, text = await asyncio.to_thread(run, "show", first.id[:11].upper(), "--json")
    assert code == 0 and json.loads(text)["anomaly"]["id"] == first.id, text
    code, text = await asyncio.to_thread(run, "show", incident.id[:8], "--json")
    assert code == 0 and json.loads(text)["incident"]["id"] == incident.id, text
    code, text = await asyncio.to_thread(run, "show", first.id[:10])
    assert code == 1 and text == (f"Error: '9d302921bb' starts 2 ids in Elasticsearch at {es_url} ({es_prefix}-*, "
                                  f"{es_prefix}i-*): {first.id}, {twin.id}; give more of it")
    code, text = await asyncio.to_thread(run, "show", "ffffffff")
    assert code == 1 and text.startswith("Error: no anomaly or incident id starts with 'ffffffff' in Elasticsearch")
    verdicts = tmp_path / "v.jsonl"
    code, text = await asyncio.to_thread(run, "label", "--confirmed", twin.id[:11], incident.id[:8].upper(),
                                         "--file", str(verdicts))
    assert code == 0, text
    assert [json.loads(line)["id"] for line in verdicts.read_text().splitlines()] == [twin.id, incident.id]
