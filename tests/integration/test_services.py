"""The local services talk: Kafka via aiokafka, Elasticsearch, Prometheus (Faust: see
test_faust_worker.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from integration_support import eventually, eventually_async, read_all, topic_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


# -- Kafka with aiokafka ---------------------------------------------------------------------
@pytest.mark.asyncio
async def test_consumer_group_receives_every_message_and_commits_offsets(
        kafka_bootstrap, kafka_admin, new_topic, suffix):
    topic = await new_topic("group", partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(60):
            await producer.send(topic, key=f"SYM{i % 6}".encode(), value=str(i).encode())
    finally:
        await producer.stop()

    group = f"it-group-{suffix}"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[ConsumerRecord] = []
    try:
        async def all_received() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            seen.extend(r for rs in batch.values() for r in rs)
            return len(seen) >= 60

        await eventually_async(all_received, timeout=60, what="60 messages through the group")
        await consumer.commit()
    finally:
        await consumer.stop()

    assert sorted(int(r.value) for r in seen) == list(range(60))
    partitions_per_key = {}
    for r in seen:
        partitions_per_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in partitions_per_key.values())
    offsets = await kafka_admin.list_consumer_group_offsets(group)
    assert sum(meta.offset for meta in offsets.values()) == 60


@pytest.mark.asyncio
async def test_compacted_topic_keeps_only_the_latest_value_per_key(
        kafka_bootstrap, kafka_admin, new_topic):
    # Tiny segments and no compaction lag let the broker's cleaner run within seconds.
    topic = await new_topic("compact", config={
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0", "delete.retention.ms": "100"})
    assert (await topic_config(kafka_admin, topic))["cleanup.policy"] == "compact"

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            for key in (b"NVDA", b"AAPL"):
                await producer.send(topic, key=key, value=f"{key.decode()}-{i}".encode())
        await producer.send_and_wait(topic, key=b"GONE", value=b"soon deleted")
        await producer.send_and_wait(topic, key=b"GONE", value=None)

        async def compacted() -> dict[bytes, list[bytes | None]] | None:
            # Only closed segments are cleaned: each probe appends a record that rolls one.
            await producer.send_and_wait(topic, key=b"roll", value=b"")
            by_key: dict[bytes, list[bytes | None]] = {}
            for record in await read_all(kafka_bootstrap, topic):
                by_key.setdefault(record.key, []).append(record.value)
            done = len(by_key[b"NVDA"]) == 1 and len(by_key[b"AAPL"]) == 1
            return by_key if done else None

        by_key = await eventually_async(compacted, timeout=90, interval=0.5,
                                        what="log cleaner compacting the topic")
    finally:
        await producer.stop()

    assert by_key[b"NVDA"] == [b"NVDA-9"]
    assert by_key[b"AAPL"] == [b"AAPL-9"]
    assert by_key.get(b"GONE", [None])[-1] is None  # the tombstone, or nothing once removed


@pytest.mark.asyncio
async def test_idempotent_producer_writes_each_message_exactly_once(kafka_bootstrap, new_topic):
    topic = await new_topic("idempotent", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True,
                                acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic, key=str(i % 7).encode(), value=str(i).encode())
                for i in range(500)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    records = await read_all(kafka_bootstrap, topic, partition_count=2)
    assert sorted(int(r.value) for r in records) == list(range(500))


@pytest.mark.asyncio
async def test_read_committed_consumer_sees_only_committed_transactions(
        kafka_bootstrap, new_topic, suffix):
    topic = await new_topic("txn")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"it-txn-{suffix}")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, value=f"committed-{i}".encode())
        await producer.begin_transaction()
        await producer.send(topic, value=b"aborted-0")
        await producer.send(topic, value=b"aborted-1")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, value=b"committed-3")
    finally:
        await producer.stop()

    committed = await read_all(kafka_bootstrap, topic, isolation_level="read_committed")
    everything = await read_all(kafka_bootstrap, topic, isolation_level="read_uncommitted")
    assert [r.value for r in committed] == [f"committed-{i}".encode() for i in range(4)]
    assert {b"aborted-0", b"aborted-1"} <= {r.value for r in everything}


@pytest.mark.asyncio
async def test_transaction_commits_consumed_offsets_with_its_output(
        kafka_bootstrap, kafka_admin, new_topic, suffix):
    source = await new_topic("eos-in", partitions=2)
    output = await new_topic("eos-out")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(20):
            await producer.send(source, partition=i % 2, value=str(i).encode())
    finally:
        await producer.stop()

    group = f"it-eos-{suffix}"
    txn = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"it-eos-{suffix}")
    consumer = AIOKafkaConsumer(source, bootstrap_servers=kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await txn.start()
    await consumer.start()
    processed = 0
    try:
        async def transform_batch() -> bool:
            nonlocal processed
            batch = await consumer.getmany(timeout_ms=500)
            if batch:
                async with txn.transaction():
                    for records in batch.values():
                        for r in records:
                            await txn.send(output, value=str(int(r.value) * 10).encode())
                    await txn.send_offsets_to_transaction(
                        {tp: records[-1].offset + 1 for tp, records in batch.items()}, group)
                processed += sum(len(records) for records in batch.values())
            return processed >= 20

        await eventually_async(transform_batch, timeout=60, what="20 records transformed")
    finally:
        await consumer.stop()
        await txn.stop()

    async def offsets_committed() -> int:
        offsets = await kafka_admin.list_consumer_group_offsets(group)
        total = sum(meta.offset for meta in offsets.values())
        return total if total == 20 else 0

    await eventually_async(offsets_committed, timeout=30, what="transactional offset commit")
    out = await read_all(kafka_bootstrap, output, isolation_level="read_committed")
    assert sorted(int(r.value) for r in out) == [i * 10 for i in range(20)]


# -- Elasticsearch ---------------------------------------------------------------------------
ANOMALY_TEMPLATE = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "symbol": {"type": "keyword"},
            "detector": {"type": "keyword"},
            "score": {"type": "double"},
            "reason": {"type": "text"},
            "ts_event": {"type": "date_nanos"},
        },
    },
}


def anomaly_actions(index: str, n: int) -> list[dict]:
    return [{"_index": index, "_id": f"XNAS-NVDA-{i}", "symbol": "NVDA",
             "detector": "high_volume" if i % 2 else "price_jump", "score": float(i),
             "reason": f"size {i * 1000} is {i}x NVDA's p99.9",
             "ts_event": 1_746_450_000_000_000_000 + i} for i in range(n)]


def test_index_template_maps_bulk_indexed_documents_that_search_finds(es, es_prefix):
    from elasticsearch import helpers

    es.indices.put_index_template(name=f"{es_prefix}-anomalies",
                                  index_patterns=[f"{es_prefix}-anomalies-*"],
                                  template=ANOMALY_TEMPLATE, priority=500)
    index = f"{es_prefix}-anomalies-2025.05.05"
    indexed, errors = helpers.bulk(es, anomaly_actions(index, 10), refresh="wait_for")

    assert (indexed, errors) == (10, [])
    mapping = es.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["ts_event"]["type"] == "date_nanos"
    found = es.search(index=f"{es_prefix}-anomalies-*", query={"bool": {"filter": [
        {"term": {"detector": "high_volume"}}, {"range": {"score": {"gte": 5}}}]}},
        sort=[{"score": "asc"}])
    assert [hit["_id"] for hit in found["hits"]["hits"]] == [
        "XNAS-NVDA-5", "XNAS-NVDA-7", "XNAS-NVDA-9"]


def test_bulk_writes_with_the_same_ids_never_duplicate(es, es_prefix):
    from elasticsearch import helpers

    index = f"{es_prefix}-replay"
    es.indices.create(index=index, settings=ANOMALY_TEMPLATE["settings"],
                      mappings=ANOMALY_TEMPLATE["mappings"])
    for _ in range(2):  # a replay writes the same anomalies again
        helpers.bulk(es, anomaly_actions(index, 25), refresh="wait_for")

    assert es.count(index=index)["count"] == 25


# -- Prometheus ------------------------------------------------------------------------------
def prometheus_query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def test_prometheus_scrapes_a_target_registered_through_file_sd(
        prometheus_url, prometheus_target, suffix):
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    anomalies = Counter("stockanomaly_anomalies", "Anomalies emitted", ["detector"],
                        registry=registry)
    anomalies.labels(detector=f"probe_{suffix}").inc(3)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        prometheus_target([f"127.0.0.1:{server.server_port}"],
                          labels={"__scrape_interval__": "1s", "__scrape_timeout__": "1s",
                                  "suite": suffix})
        result = eventually(
            lambda: prometheus_query(
                prometheus_url, f'stockanomaly_anomalies_total{{detector="probe_{suffix}"}}'),
            timeout=90, interval=0.5, what="Prometheus scraping the test target")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    assert float(result[0]["value"][1]) == 3.0
    assert result[0]["metric"]["job"] == "stockanomaly"
    assert result[0]["metric"]["suite"] == suffix


def test_prometheus_loaded_the_anomaly_alert_rules(prometheus_url):
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/rules", timeout=5) as response:
        groups = json.load(response)["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]
              if rule["type"] == "alerting"}
    assert {"StockanomalyAnomalyRateHigh", "StockanomalyAnomalySpike",
            "StockanomalyDeadLettersHigh"} <= alerts


def test_alert_rules_pass_their_promtool_unit_tests(prometheus_url):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (it comes with Debian's prometheus package)")
    tests = sorted(str(p) for p in (REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))
    result = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- Alertmanager ----------------------------------------------------------------------------
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("amtool")
    assert found, "amtool comes with Debian's prometheus-alertmanager, which services.sh installs"
    return subprocess.run([found, *args], capture_output=True, text=True)


def test_alertmanager_config_passes_amtool_and_routes_pages_and_warnings_apart(alertmanager_url):
    checked = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for labels, receiver in ((["severity=page", "alertname=StockanomalyTradesStopped"], "pager"),
                             (["severity=warning", "alertname=StockanomalyAnomalyRateHigh"], "warnings"),
                             (["alertname=SomethingElse"], "warnings")):
        routed = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
        assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)


def test_a_page_silences_the_warning_it_explains(alertmanager_url, suffix):
    def post(alerts: list[dict]) -> None:
        request = urllib.request.Request(f"{alertmanager_url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def state(alertname: str) -> dict | None:
        query = urllib.parse.urlencode({"filter": [f'it="{suffix}"', f'alertname="{alertname}"']}, doseq=True)
        with urllib.request.urlopen(f"{alertmanager_url}/api/v2/alerts?{query}", timeout=5) as response:
            found = json.load(response)
        return found[0]["status"] if found else None

    # A deployment of its own (`project`, as Prometheus's external label sets it): no other
    # test's alerts can inhibit these, or be inhibited by them.
    labels = {"it": suffix, "project": f"it-{suffix}", "reason": "bad_price"}
    # Another deployment's page first: it does not silence this one's warning.
    post([{"labels": dict(labels, it=f"{suffix}-other", project=f"it-{suffix}-other",
                          alertname="StockanomalyOnlyDeadLetters", severity="page")}])
    post([{"labels": dict(labels, alertname="StockanomalyDeadLettersHigh", severity="warning")}])
    assert eventually(lambda: state("StockanomalyDeadLettersHigh"), timeout=30, what="the warning")["state"] == "active"
    post([{"labels": dict(labels, alertname="StockanomalyOnlyDeadLetters", severity="page")}])
    inhibited = eventually(lambda: (s := state("StockanomalyDeadLettersHigh")) and s["inhibitedBy"] and s,
                           timeout=30, what="the warning inhibited by the page")
    assert inhibited["state"] == "suppressed"
    assert state("StockanomalyOnlyDeadLetters")["state"] == "active"


@pytest.mark.parametrize("cause", ["StockanomalyWebhookFailing", "StockanomalyNotifierStuck"])
def test_a_notifiers_trouble_silences_its_own_lag_warning_not_another_notifiers(alertmanager_url, suffix, cause):
    """A receiver down for 10 minutes of a busy day raised both the webhook warning and the lag
    warning, whose advice (another notifier, a higher --min-severity) does not help then."""
    def post(alerts: list[dict]) -> None:
        request = urllib.request.Request(f"{alertmanager_url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def state(alertname: str, instance: str) -> dict | None:
        query = urllib.parse.urlencode({"filter": [f'it="{suffix}-{cause}"', f'alertname="{alertname}"',
                                                   f'instance="{instance}"']}, doseq=True)
        with urllib.request.urlopen(f"{alertmanager_url}/api/v2/alerts?{query}", timeout=5) as response:
            found = json.load(response)
        return found[0]["status"] if found else None

    labels = {"it": f"{suffix}-{cause}", "project": f"it-{suffix}-{cause}", "job": "stockanomaly", "topic": "anomalies"}
    lag = [{"labels": dict(labels, alertname="StockanomalyNotifierLagGrowing", severity="warning", instance=i)}
           for i in ("n1", "n2")]
    post(lag)
    for instance in ("n1", "n2"):
        assert eventually(lambda: state("StockanomalyNotifierLagGrowing", instance), timeout=30,
                          what="the lag warning")["state"] == "active"
    post(lag + [{"labels": dict(labels, alertname=cause, severity="warning", instance="n1")}])
    inhibited = eventually(lambda: (s := state("StockanomalyNotifierLagGrowing", "n1")) and s["inhibitedBy"] and s,
                           timeout=30, what="n1's lag warning inhibited")
    assert inhibited["state"] == "suppressed"
    assert state("StockanomalyNotifierLagGrowing", "n2")["state"] == "active"
