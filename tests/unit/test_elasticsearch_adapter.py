"""The Elasticsearch adapters without a server: documents, index names, retry decisions, the query."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from click.testing import CliRunner
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError
from elasticsearch import ConnectionError as EsConnectionError

import adapters.elasticsearch.async_sink as async_sink_module
import adapters.elasticsearch.sink as sink_module
from adapters.elasticsearch import (
    AsyncElasticsearchAnomalySink,
    ElasticsearchAnomalySink,
    ElasticsearchRejected,
    ElasticsearchSettings,
    ElasticsearchUnavailable,
    RetryPolicy,
    index_for,
    index_template,
    redact_url,
)
from adapters.elasticsearch.bulk import FAILED, FATAL, RETRY, WRITTEN, outcome
from adapters.elasticsearch.mapping import check_prefix, from_document, iso_ns, to_document
from adapters.elasticsearch.query import search_body
from application.query import InvalidQuery, QueryAnomalies, parse_time
from domain.model import Anomaly, Print, anomaly_id
from entrypoints.cli import main

# 2025-05-05T13:30:03.063638070Z
TS = 1_746_451_803_063_638_070
NS = 1_000_000_000
INGESTED = datetime(2025, 5, 5, 13, 30, 4, 120_000, tzinfo=timezone.utc)


def make_anomaly(sequence: int = 1, symbol: str = "NVDA", detector: str = "high_volume", ts_event: int = TS,
                 score: float = 2.5, **kw: Any) -> Anomaly:
    return Anomaly(id=anomaly_id(detector, symbol, 2, 7, ts_event, sequence), detector=detector, symbol=symbol,
                   ts_event=ts_event, price=kw.pop("price", 113.72), size=kw.pop("size", 48_200), score=score,
                   severity="medium", reason=kw.pop("reason", "size 48,200 is 14.1x NVDA's p99.9 of 3,420"),
                   publisher_id=2, instrument_id=7, sequence=sequence,
                   details=kw.pop("details", {"ratio": 14.1, "p999": 3420.0}), **kw)


def api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "localhost", 9200))
    return ApiError(f"status {status}", meta=meta, body={"error": {"type": "x", "reason": "y"}})


# -- documents, index names, template -----------------------------------------------------------
def test_event_time_becomes_a_nanosecond_iso_string() -> None:
    assert iso_ns(TS) == "2025-05-05T13:30:03.063638070Z"
    assert iso_ns(0) == "1970-01-01T00:00:00.000000000Z"


@pytest.mark.parametrize(("ts", "index"), [
    (TS, "stockanomaly-anomalies-2025.05.05"),
    (1_746_489_599_999_999_999, "stockanomaly-anomalies-2025.05.05"),
    (1_746_489_600_000_000_000, "stockanomaly-anomalies-2025.05.06"),
], ids=["afternoon", "last-ns-of-day", "utc-midnight"])
def test_anomalies_go_to_the_index_of_their_utc_event_day(ts: int, index: str) -> None:
    assert index_for("stockanomaly-anomalies", ts) == index


def test_document_round_trips_to_the_same_anomaly() -> None:
    anomaly = make_anomaly(session="regular", ts_local="2025-05-05T09:30:03.063638070-04:00",
                           context=(Print(TS - 5_000, 113.71, 100, "B"), Print(TS - 1_000, 113.72, 7, "N")))
    doc = json.loads(json.dumps(to_document(anomaly, INGESTED)))
    assert doc["ts_event"] == "2025-05-05T13:30:03.063638070Z"
    assert doc["ts_event_ns"] == TS
    assert doc["ingested_at"] == "2025-05-05T13:30:04.120+00:00"
    assert from_document(doc) == anomaly


def test_template_maps_every_field_explicitly() -> None:
    body = index_template("stockanomaly-anomalies", replicas=0)
    props = body["template"]["mappings"]["properties"]
    assert body["index_patterns"] == ["stockanomaly-anomalies-*"]
    assert body["template"]["settings"]["number_of_replicas"] == 0
    assert body["template"]["mappings"]["dynamic"] is False
    assert {k: v["type"] for k, v in props.items()} == {
        "id": "keyword", "detector": "keyword", "symbol": "keyword", "ts_event": "date_nanos",
        "ts_event_ns": "long", "price": "double", "size": "long", "score": "double", "severity": "keyword",
        "reason": "text", "publisher_id": "integer", "instrument_id": "long", "sequence": "long",
        "details": "flattened", "session": "keyword", "ts_local": "keyword", "context": "object",
        "ingested_at": "date"}
    assert props["context"]["enabled"] is False  # the tape around it: kept to show, not indexed
    assert props["reason"]["fields"]["keyword"]["type"] == "keyword"
    assert set(to_document(make_anomaly(), INGESTED)) == set(props)


@pytest.mark.parametrize("prefix", ["Upper", "_hidden", "has space", ""], ids=repr)
def test_invalid_index_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid Elasticsearch index prefix"):
        check_prefix(prefix)


# -- retry decisions ------------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_cap_and_stops_at_the_budget() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=4.0, total=10.0, jitter=0.0)
    assert [policy.delay(n, elapsed=0.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(3, elapsed=8.5) == 1.5  # cut so the last attempt lands on the deadline
    assert policy.delay(4, elapsed=10.0) is None


def test_jitter_spreads_the_delay_around_its_base() -> None:
    policy = RetryPolicy(initial_delay=1.0, jitter=0.2)
    assert (policy.delay(0, 0.0, rand=0.0), policy.delay(0, 0.0, rand=1.0)) == pytest.approx((0.8, 1.2))


@pytest.mark.parametrize(("ok", "info", "kind"), [
    (True, {"_id": "a", "status": 201}, WRITTEN),
    (True, {"_id": "a", "status": 200}, WRITTEN),
    (False, {"_id": "a", "status": 429, "error": {"type": "es_rejected_execution_exception"}}, RETRY),
    (False, {"_id": "a", "status": 503, "error": "unavailable_shards_exception"}, RETRY),
    (False, {"_id": "a", "status": 400, "error": {"type": "document_parsing_exception", "reason": "bad"}}, FAILED),
    (False, {"_id": "a", "status": 401, "error": "unauthorized", "exception": api_error(401)}, FATAL),
    (False, {"_id": "a", "status": 502, "error": "bad gateway", "exception": api_error(502)}, RETRY),
], ids=["created", "updated", "429", "503", "mapping-error", "request-401", "request-502"])
def test_bulk_results_are_written_retried_failed_or_fatal(ok: bool, info: dict, kind: str) -> None:
    assert outcome(ok, {"index": info})[0] == kind


# -- the sync sink, with a fake bulk function and no sleeping --------------------------------------
class FakeIndices:
    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.templates: dict[str, dict] = {}
        self.failures = list(failures or [])

    def put_index_template(self, name: str, **body: Any) -> dict:
        if self.failures:
            raise self.failures.pop(0)
        self.templates[name] = body
        return {"acknowledged": True}


class FakeClient:
    def __init__(self, template_failures: list[Exception] | None = None) -> None:
        self.indices = FakeIndices(template_failures)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeBulk:
    """streaming_bulk's contract: raises on connection errors, else one (ok, item) per action.
    `script` holds, per call, an exception to raise or a function id -> status."""

    def __init__(self, *script: Exception | Any) -> None:
        self.script = list(script)
        self.calls: list[list[dict]] = []
        self.stored: dict[str, dict] = {}

    def results(self, actions: list[dict]) -> Iterator[tuple[bool, dict]]:
        actions = list(actions)
        self.calls.append(actions)
        step = self.script.pop(0) if self.script else (lambda _id: 201)
        if isinstance(step, Exception):
            raise step
        for action in actions:
            status = step(action["_id"])
            if 200 <= status < 300:
                self.stored[action["_id"]] = action
                yield True, {"index": {"_id": action["_id"], "_index": action["_index"], "status": status}}
            else:
                yield False, {"index": {"_id": action["_id"], "status": status,
                                        "error": {"type": "document_parsing_exception", "reason": "bad symbol"}}}

    def __call__(self, client: Any, actions: list[dict], **options: Any) -> Iterator[tuple[bool, dict]]:
        assert options["raise_on_error"] is False and options["raise_on_exception"] is False
        return self.results(actions)


class Clock:
    """A fake monotonic clock that sleeping advances; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


POLICY = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=8.0, total=120.0, jitter=0.0)


def sync_sink(bulk: Any, client: FakeClient | None = None, clock: Clock | None = None,
              **kw: Any) -> ElasticsearchAnomalySink:
    clock = clock or Clock()
    fake_client: Any = client or FakeClient()
    return ElasticsearchAnomalySink(fake_client, index_prefix="t", retry=kw.pop("retry", POLICY), bulk=bulk,
                                    sleep=clock.sleep, clock=clock, now=lambda: INGESTED, **kw)


def test_connection_errors_are_retried_with_backoff_until_everything_is_written() -> None:
    bulk = FakeBulk(EsConnectionError("refused"), EsConnectionError("refused"), EsConnectionError("refused"))
    clock = Clock()
    sink = sync_sink(bulk, clock=clock)
    anomalies = [make_anomaly(sequence=i) for i in range(10)]
    sink.publish(anomalies)
    sink.flush()
    assert set(bulk.stored) == {a.id for a in anomalies}
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert (sink.counters.written, sink.counters.retries, sink.counters.failed, sink.pending) == (10, 3, 0, 0)


def test_every_document_is_indexed_by_its_anomaly_id_into_its_day() -> None:
    bulk = FakeBulk()
    sink = sync_sink(bulk)
    today, tomorrow = make_anomaly(sequence=1), make_anomaly(sequence=2, ts_event=TS + 86_400 * NS)
    sink.publish([today, tomorrow])
    sink.flush()
    assert [(a["_op_type"], a["_index"], a["_id"]) for a in bulk.calls[0]] == [
        ("index", "t-2025.05.05", today.id), ("index", "t-2025.05.06", tomorrow.id)]


def test_template_is_installed_once_before_the_first_write_and_retried_when_unreachable() -> None:
    client = FakeClient(template_failures=[EsConnectionError("refused"), api_error(503)])
    bulk = FakeBulk()
    sink = sync_sink(bulk, client=client)
    sink.publish([make_anomaly()])
    sink.flush()
    sink.publish([make_anomaly(sequence=2)])
    sink.flush()
    assert list(client.indices.templates) == ["t"]
    assert client.indices.templates["t"]["index_patterns"] == ["t-*"]
    assert sink.counters.retries == 2 and len(bulk.calls) == 2


def test_a_mapping_error_goes_to_failed_with_its_reason_and_is_not_retried() -> None:
    bad = make_anomaly(sequence=2)
    bulk = FakeBulk(lambda _id: 400 if _id == bad.id else 201)
    sink = sync_sink(bulk)
    sink.publish([make_anomaly(sequence=1), bad, make_anomaly(sequence=3)])
    sink.flush()
    assert len(bulk.calls) == 1
    assert [(f.anomaly, f.status) for f in sink.failed] == [(bad, 400)]
    assert "document_parsing_exception: bad symbol" in sink.failed[0].reason
    assert (sink.counters.written, sink.counters.failed, sink.pending) == (2, 1, 0)
    assert len(sink.drain_failed()) == 1 and sink.failed == [] and sink.counters.failed == 1


def test_only_documents_answered_429_are_sent_again() -> None:
    hot = make_anomaly(sequence=2)
    bulk = FakeBulk(lambda _id: 429 if _id == hot.id else 201)
    sink = sync_sink(bulk)
    sink.publish([make_anomaly(sequence=1), hot])
    sink.flush()
    assert [[a["_id"] for a in call] for call in bulk.calls] == [[make_anomaly(sequence=1).id, hot.id], [hot.id]]
    assert (sink.counters.written, sink.counters.retries) == (2, 1)


def test_when_the_budget_is_spent_the_batch_stays_buffered_for_the_next_flush() -> None:
    down = [EsConnectionError("refused")] * 50
    bulk = FakeBulk(*down)
    clock = Clock()
    sink = sync_sink(bulk, clock=clock, retry=RetryPolicy(initial_delay=1, max_delay=4, total=20, jitter=0))
    sink.publish([make_anomaly(sequence=i) for i in range(3)])
    with pytest.raises(ElasticsearchUnavailable, match="3 anomalies not written") as raised:
        sink.flush()
    assert raised.value.pending == 3 and sink.pending == 3
    assert sum(clock.sleeps) == 20 and clock.sleeps[:4] == [1, 2, 4, 4]
    bulk.script.clear()
    sink.flush()
    assert sink.pending == 0 and len(bulk.stored) == 3


def test_a_refused_request_raises_at_once_and_keeps_the_batch() -> None:
    def unauthorized(client: Any, actions: list[dict], **options: Any) -> Iterator[tuple[bool, dict]]:
        for action in actions:
            yield False, {"index": {"_id": action["_id"], "status": 401, "error": "unauthorized",
                                    "exception": api_error(401)}}

    clock = Clock()
    sink = sync_sink(unauthorized, clock=clock)
    sink.publish([make_anomaly()])
    with pytest.raises(ElasticsearchRejected) as raised:
        sink.flush()
    assert raised.value.status == 401 and sink.pending == 1 and clock.sleeps == []


def test_republishing_an_anomaly_sends_it_once_and_publish_flushes_a_full_buffer() -> None:
    bulk = FakeBulk()
    sink = sync_sink(bulk, flush_size=3)
    sink.publish([make_anomaly(sequence=1), make_anomaly(sequence=1), make_anomaly(sequence=2)])
    assert bulk.calls == [] and sink.pending == 2
    sink.publish([make_anomaly(sequence=3)])
    assert len(bulk.calls) == 1 and len(bulk.calls[0]) == 3 and sink.pending == 0


def test_close_flushes_then_closes_the_client() -> None:
    bulk, client = FakeBulk(), FakeClient()
    sink = sync_sink(bulk, client=client)
    sink.publish([make_anomaly()])
    sink.close()
    assert len(bulk.stored) == 1 and client.closed


# -- the async sink -------------------------------------------------------------------------------
class AsyncFakeClient(FakeClient):
    def __init__(self) -> None:
        super().__init__()
        sync_put = self.indices.put_index_template

        async def put_index_template(name: str, **body: Any) -> dict:
            return sync_put(name, **body)

        self.indices.put_index_template = put_index_template  # type: ignore[method-assign]

    async def close(self) -> None:  # type: ignore[override]
        self.closed = True


def async_bulk_of(fake: FakeBulk) -> Any:
    async def bulk(client: Any, actions: list[dict], **options: Any) -> Any:
        for result in fake(client, actions, **options):
            yield result
    return bulk


@pytest.mark.asyncio
async def test_async_sink_retries_connection_errors_and_loses_nothing() -> None:
    fake = FakeBulk(EsConnectionError("refused"), EsConnectionError("refused"))
    clock, client = Clock(), AsyncFakeClient()
    fake_client: Any = client
    sink = AsyncElasticsearchAnomalySink(fake_client, index_prefix="t", retry=POLICY, bulk=async_bulk_of(fake),
                                         sleep=clock.async_sleep, clock=clock, now=lambda: INGESTED)
    anomalies = [make_anomaly(sequence=i) for i in range(5)]
    await sink.publish(anomalies)
    await sink.close()
    assert set(fake.stored) == {a.id for a in anomalies}
    assert clock.sleeps == [0.5, 1.0] and sink.counters.retries == 2 and sink.counters.written == 5
    assert client.closed and list(client.indices.templates) == ["t"]


@pytest.mark.asyncio
async def test_the_write_that_ends_an_outage_says_so_once(logs_of: Any) -> None:
    """An outage was a warning per retry and then silence: nothing said the indexer was writing again."""
    fake = FakeBulk(EsConnectionError("refused"), EsConnectionError("refused"))
    clock = Clock()
    fake_client: Any = AsyncFakeClient()
    sink = AsyncElasticsearchAnomalySink(fake_client, index_prefix="t", retry=POLICY, bulk=async_bulk_of(fake),
                                         sleep=clock.async_sleep, clock=clock, now=lambda: INGESTED)
    logs = logs_of(sink_module, async_sink_module)
    await sink.publish([make_anomaly(sequence=i) for i in range(5)])
    await sink.flush()
    await sink.publish([make_anomaly(sequence=9)])
    await sink.flush()  # no outage: nothing to say
    assert [e["event"] for e in logs] == ["elasticsearch_template_installed", "elasticsearch_bulk_retry",
                                          "elasticsearch_bulk_retry", "elasticsearch_recovered"]
    assert {k: logs[-1][k] for k in ("kind", "attempts", "seconds", "written", "log_level")} == {
        "kind": "anomalies", "attempts": 3, "seconds": 1.5, "written": 5, "log_level": "info"}


def test_the_sync_sink_says_when_its_writes_went_through_after_retries(logs_of: Any) -> None:
    clock = Clock()
    sink = sync_sink(FakeBulk(EsConnectionError("refused")), clock=clock)
    sink.publish([make_anomaly(sequence=i) for i in range(3)])
    logs = logs_of(sink_module)
    sink.flush()
    assert [(e["event"], e.get("written")) for e in logs if e["event"] != "elasticsearch_template_installed"] == [
        ("elasticsearch_bulk_retry", None), ("elasticsearch_recovered", 3)]


# -- settings and secrets -------------------------------------------------------------------------
def test_settings_come_from_the_environment_and_never_show_secrets() -> None:
    settings = ElasticsearchSettings.from_env({"ELASTICSEARCH_URL": "https://es:9200",
                                               "ELASTICSEARCH_USERNAME": "elastic",
                                               "ELASTICSEARCH_PASSWORD": "s3cret-pw",
                                               "ELASTICSEARCH_API_KEY": "k3y-value"})
    assert "s3cret-pw" not in repr(settings) and "k3y-value" not in repr(settings)
    assert settings.client_options()["api_key"] == "k3y-value"  # an API key wins over basic auth
    assert "basic_auth" not in settings.client_options()
    assert ElasticsearchSettings.from_env({}, url="http://x:1").url == "http://x:1"
    assert redact_url("http://elastic:s3cret@es.local:9200/") == "http://***@es.local:9200/"


# -- the query use case and its search -------------------------------------------------------------
@pytest.mark.parametrize(("text", "ns"), [
    ("2025-05-05T13:30:03.063638070Z", TS),
    ("2025-05-05T09:30:03.063638070-04:00", TS),
    ("2025-05-05T13:30:03", TS // NS * NS),
    ("2025-05-05", 1_746_403_200 * NS),
    (str(TS), TS),
    ("1h", TS - 3600 * NS),
    ("30m", TS - 1800 * NS),
    ("7d", TS - 7 * 86_400 * NS),
    ("now", TS),
], ids=lambda v: str(v))
def test_times_are_read_as_iso_ns_or_an_age(text: str, ns: int) -> None:
    assert parse_time(text, now_ns=TS) == ns


@pytest.mark.parametrize("text", ["99999999999999999999999", "9999-12-31", "100000d", "1969-12-31"])
def test_a_time_outside_what_event_times_hold_is_refused_here(text: str) -> None:
    # Not handed on: Elasticsearch answered HTTP 400, and a huge integer broke the date conversion.
    with pytest.raises(InvalidQuery, match="outside what event times hold"):
        parse_time(text, now_ns=TS)


@pytest.mark.parametrize(("text", "said"), [
    ("1746451800", "reads as seconds since the epoch; integers are nanoseconds (1746451800000000000)"),
    ("1746451800123", "reads as milliseconds since the epoch; integers are nanoseconds (1746451800123000000)"),
    ("174645180012345", "reads as microseconds since the epoch; integers are nanoseconds (174645180012345000)"),
])
def test_an_integer_too_short_for_nanoseconds_is_named_for_the_unit_it_looks_like(text: str, said: str) -> None:
    # It read as no time at all ("use ISO 8601 ... or integer ns") though it was an integer.
    with pytest.raises(InvalidQuery, match=re.escape(said)):
        parse_time(text, now_ns=TS)
    assert parse_time("20250505", now_ns=TS) == 1_746_403_200 * NS  # eight digits: a date


class FakeAnomalyQuery:
    """`matching` anomalies match whatever is asked; search gives the first `limit` of them."""

    def __init__(self, matching: int = 1) -> None:
        self.matching = matching
        self.asked: dict[str, Any] = {}
        self.counted: list[dict[str, Any]] = []

    def search(self, **criteria: Any) -> list[Anomaly]:
        self.asked = criteria
        return [make_anomaly(sequence=k + 1) for k in range(min(self.matching, criteria["limit"]))]

    def count(self, **criteria: Any) -> int:
        self.counted.append(criteria)
        return self.matching


def test_query_resolves_relative_times_against_the_clock() -> None:
    store = FakeAnomalyQuery()
    matches = QueryAnomalies(store, clock=lambda: TS)(symbols=["NVDA"], since="1h", min_score=2.0, limit=5)
    assert matches.found == [make_anomaly()] and matches.total == 1 and not matches.cut
    assert store.asked == {"symbols": ("NVDA",), "detectors": (), "since_ns": TS - 3600 * NS, "until_ns": None,
                           "min_score": 2.0, "limit": 5, "order": "time"}
    assert store.counted == []  # fewer than the limit: all of them are there, nothing to count


@pytest.mark.parametrize(("matching", "total", "cut"), [(5, 5, False), (1_234, 1_234, True)])
def test_query_counts_the_matches_when_the_limit_is_reached(matching: int, total: int, cut: bool) -> None:
    # "more match" said that the list was cut, not by how much: 1 of 2 and 50 of 80,000 read the same.
    store = FakeAnomalyQuery(matching)
    matches = QueryAnomalies(store, clock=lambda: TS)(symbols=["NVDA"], since="1h", limit=5)
    assert len(matches.found) == 5 and matches.total == total and matches.cut == cut
    assert store.counted == [{"symbols": ("NVDA",), "detectors": (), "since_ns": TS - 3600 * NS, "until_ns": None,
                              "min_score": None}]  # the search's filters, without its page


@pytest.mark.parametrize("criteria", [{"since": "yesterday-ish"}, {"since": "1h", "until": "2h"}, {"limit": 0},
                                      {"detectors": ["high_volume", "highvolume"]}],
                         ids=["unreadable", "empty-range", "zero-limit", "unknown-detector"])
def test_query_refuses_requests_it_cannot_run(criteria: dict) -> None:
    with pytest.raises(InvalidQuery):
        QueryAnomalies(FakeAnomalyQuery(), clock=lambda: TS)(**criteria)


def test_query_takes_detectors_in_any_case_as_replay_does() -> None:
    store = FakeAnomalyQuery()
    QueryAnomalies(store, clock=lambda: TS)(detectors=["HIGH_VOLUME", " Trade_Burst"])
    assert store.asked["detectors"] == ("high_volume", "trade_burst")


def test_query_names_the_detectors_when_one_is_unknown() -> None:
    # A misspelt detector matched nothing: "no anomalies match" read as all quiet (replay and suppress refuse it).
    with pytest.raises(InvalidQuery, match=r"^unknown detector 'highvolume'; choose from high_volume, "):
        QueryAnomalies(FakeAnomalyQuery(), clock=lambda: TS)(detectors=["highvolume"])


def test_search_body_filters_and_sorts_newest_first() -> None:
    body = search_body(symbols=["nvda"], detectors=["high_volume"], since_ns=TS, until_ns=TS + NS, min_score=2.0,
                       limit=7)
    filters = body["query"]["bool"]["filter"]
    assert filters[0]["bool"]["should"] == [{"term": {"symbol": {"value": "nvda", "case_insensitive": True}}}]
    assert filters[1:] == [{"terms": {"detector": ["high_volume"]}},
                           {"range": {"ts_event": {"gte": "2025-05-05T13:30:03.063638070Z",
                                                   "lt": "2025-05-05T13:30:04.063638070Z"}}},
                           {"range": {"score": {"gte": 2.0}}}]
    assert body["sort"][0] == {"ts_event": {"order": "desc"}} and body["size"] == 7
    assert search_body()["query"] == {"bool": {"filter": []}}


def test_query_command_explains_an_unreachable_elasticsearch_without_a_traceback() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = CliRunner().invoke(main, ["query", "--es-url", f"http://127.0.0.1:{port}", "--json"])
    assert result.exit_code == 1
    assert f"Elasticsearch is not reachable at http://127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


class Answering(http.server.BaseHTTPRequestHandler):
    """A quiet test server: every GET and POST (its body read) gets `answer`'s reply."""

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        raise NotImplementedError

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body, headers = self.answer()
        self.send_response(status)
        for name, value in (headers | {"Content-Length": str(len(body))}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


class RecordingElasticsearch(Answering):
    """Answers every request as an empty Elasticsearch would, and records the paths asked."""

    paths: list[str] = []

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        self.paths.append(self.path)
        body = json.dumps({"hits": {"total": {"value": 0}, "hits": []}, "version": {"number": "9.0.0"}}).encode()
        return 200, body, {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"}


def test_query_command_takes_its_url_and_index_prefix_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no flag, `query` reads what the worker and the indexer read: ELASTICSEARCH_URL and
    STOCKANOMALY_ES_INDEX_PREFIX; a prefix Elasticsearch cannot use is one line naming it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingElasticsearch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ELASTICSEARCH_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("STOCKANOMALY_ES_INDEX_PREFIX", "desk-a")
        result = CliRunner().invoke(main, ["query", "--json"])
        assert result.exit_code == 0 and json.loads(result.output) == [], result.output
        assert any(path.startswith("/desk-a-*/_search") for path in RecordingElasticsearch.paths)
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("STOCKANOMALY_ES_INDEX_PREFIX", "Desk A")
    result = CliRunner().invoke(main, ["query"])
    assert result.exit_code == 1 and "STOCKANOMALY_ES_INDEX_PREFIX" in result.output.splitlines()[-1]


class NotElasticsearch(Answering):
    """Another server on the port: plain text without a content type (a metrics endpoint: 9100 is
    one digit off 9200), or an HTML error page."""

    html = False

    def answer(self) -> tuple[int, bytes, dict[str, str]]:
        if self.html:
            page = b"<!DOCTYPE html>\n<html>\n<head><title>404</title></head>\n<body>\n<h1>Not Found</h1>\n" * 3
            return 404, page, {"Content-Type": "text/html"}
        return 200, b"# HELP stockanomaly_trades_processed_total\nstockanomaly_trades_processed_total 5.0\n", {}


@pytest.mark.parametrize("html", [False, True], ids=["metrics_port", "html_404"])
@pytest.mark.parametrize("command", [["query"], ["query", "--incidents"], ["show", "0" * 32]])
def test_a_server_that_is_not_elasticsearch_is_one_line(command: list[str], html: bool) -> None:
    """query and show printed a 70-line traceback (a SerializationError) when the URL named a server
    answering with something other than JSON, and pasted a whole HTML page into the error."""
    handler = type("Server", (NotElasticsearch,), {"html": html})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = CliRunner().invoke(main, [*command, "--es-url", f"http://127.0.0.1:{server.server_port}"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"127.0.0.1:{server.server_port}" in lines[0] and len(lines[0]) < 400
