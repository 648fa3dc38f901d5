"""Kafka -> Faust worker -> detectors -> Elasticsearch, one worker: throughput and latency.

Needs the local services (`scripts/services.sh up kafka elasticsearch`). Prints one JSON line.
  throughput: COPIES x both real NVDA days (each copy under its own symbol) produced at full
              speed; trades/s from the first send until the worker's committed offsets reach
              the end of the topic (Faust commits every 2.8 s, so short runs read low).
  latency:    a synthetic market with injected anomalies: 100,000 trades at full speed as a
              warm-up (every symbol past its warm-up and first forest fit), then 400,000 at
              --rate trades/s; for each anomaly of the paced part, the time from sending the message holding its trade to the document
              being searchable in Elasticsearch (polled every 20 ms).
Usage: python benchmarks/worker_e2e.py [--copies 4] [--rate 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from elasticsearch import ApiError, Elasticsearch

from adapters.databento import DatabentoFileSource
from adapters.kafka.codec import encode_batch
from adapters.synthetic import generate_market
from application.ingest import symbol_batches

NASDAQ = Path(__file__).resolve().parents[1].parent / "shared/data/nasdaq"
PARTITIONS = 4


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def lag(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = None
    try:
        committed = await admin.list_consumer_group_offsets(group)
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        end = await consumer.end_offsets(parts)
        return sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in parts)
    finally:
        await admin.close()
        if consumer is not None:
            await consumer.stop()


def start_worker(env: dict[str, str], workdir: Path) -> subprocess.Popen:
    log = open(workdir / "worker.log", "ab")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen([sys.executable, "-m", "faust", "-A", "entrypoints.worker", "worker", "-l", "warn"],
                            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_lag_zero(bootstrap: str, group: str, topic: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await lag(bootstrap, group, topic) == 0:
                return
        except Exception:  # noqa: BLE001 - the group may not exist yet
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"worker did not catch up on {topic} within {timeout}s")


async def throughput(bootstrap: str, env: dict[str, str], workdir: Path, copies: int) -> dict:
    day = np.concatenate([c.trades for c in DatabentoFileSource([str(NASDAQ)]).chunks()])
    topic, group = env["STOCKANOMALY_TRADES_TOPIC"], env["STOCKANOMALY_APP_ID"]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1_048_576)
    await producer.start()
    worker = start_worker(env, workdir)
    try:
        warm = day[:10].copy()
        warm["symbol"] = "WARMUP"
        await producer.send_and_wait(topic, *reversed(encode_batch("WARMUP", warm)))
        await wait_lag_zero(bootstrap, group, topic, 120)
        started = time.perf_counter()
        sent = 0
        for copy in range(copies):
            trades = day.copy()
            trades["symbol"] = f"NVDA{copy}"
            for symbol, rows in symbol_batches(trades, 2_000):
                key, value = encode_batch(symbol, rows)
                await producer.send(topic, key=key, value=value)
                sent += len(rows)
        await producer.flush()
        produced = time.perf_counter() - started
        await wait_lag_zero(bootstrap, group, topic, 600)
        seconds = time.perf_counter() - started
        return {"trades": sent, "seconds": round(seconds, 2), "trades_per_second": round(sent / seconds),
                "produce_seconds": round(produced, 2)}
    finally:
        await producer.stop()
        worker.terminate()
        worker.wait(timeout=60)


async def latency(bootstrap: str, env: dict[str, str], workdir: Path, es: Elasticsearch, rate: float) -> dict:
    market = generate_market(symbols=8, trades=500_000, seed=3).trades
    warmup = 100_000
    topic, index = env["STOCKANOMALY_TRADES_TOPIC"], f"{env['STOCKANOMALY_ES_INDEX_PREFIX']}-*"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    worker = start_worker(env, workdir)
    sent_at: dict[str, tuple[list[int], list[float]]] = {}  # symbol -> (last ts of message, send time)
    seen: dict[str, float] = {}
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set() or len(seen) == 0:
            try:
                hits = es.search(index=index, size=10_000, source=["symbol", "ts_event_ns"], allow_no_indices=True,
                                 ignore_unavailable=True)["hits"]["hits"]
            except ApiError:  # a new daily index whose shard is not started yet
                hits = []
            now = time.perf_counter()
            for h in hits:
                seen.setdefault(h["_id"], now)
                seen_src[h["_id"]] = h["_source"]
            await asyncio.sleep(0.02)

    seen_src: dict[str, dict] = {}
    try:
        # Warm-up at full speed: every symbol gets past its warm-up and first forest fit, so the
        # paced part measures the steady state rather than start-up.
        for symbol, rows in symbol_batches(market[:warmup], 2_000):
            await producer.send(topic, *reversed(encode_batch(symbol, rows)))
        await producer.flush()
        await wait_lag_zero(bootstrap, env["STOCKANOMALY_APP_ID"], topic, 300)
        market = market[warmup:]
        poller = asyncio.create_task(poll())
        tick, per_tick = 0.01, int(rate * 0.01)
        started = time.perf_counter()
        for n, start in enumerate(range(0, len(market), per_tick)):
            chunk = market[start:start + per_tick]
            now = time.perf_counter()
            for symbol, rows in symbol_batches(chunk, 2_000):
                key, value = encode_batch(symbol, rows)
                await producer.send(topic, key=key, value=value)
                last, when = sent_at.setdefault(symbol, ([], []))
                last.append(int(rows["ts_event"][-1]))
                when.append(now)
            await asyncio.sleep(max(0.0, started + (n + 1) * tick - time.perf_counter()))
        await producer.flush()
        produce_seconds = time.perf_counter() - started
        first_ts = {sym: int(market["ts_event"][market["symbol"] == sym][0]) for sym in sent_at}
        await wait_lag_zero(bootstrap, env["STOCKANOMALY_APP_ID"], topic, 300)
        await asyncio.sleep(0.5)  # let the last poll see the last documents
        done.set()
        await poller
    finally:
        await producer.stop()
        worker.terminate()
        worker.wait(timeout=60)
    lat = []
    for doc_id, first_seen in seen.items():
        src = seen_src[doc_id]
        last, when = sent_at[src["symbol"]]
        if int(src["ts_event_ns"]) < first_ts[src["symbol"]]:
            continue  # found during the warm-up
        i = bisect.bisect_left(last, int(src["ts_event_ns"]))
        lat.append((first_seen - when[i]) * 1000)
    lat_ms = np.array(lat)
    return {"rate": rate, "trades": len(market), "achieved_rate": round(len(market) / produce_seconds),
            "anomalies": len(lat), "p50_ms": round(float(np.percentile(lat_ms, 50)), 1),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 1), "max_ms": round(float(lat_ms.max()), 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--es-url", default=os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--rate", type=float, default=50_000)
    args = parser.parse_args()
    es = Elasticsearch(args.es_url, request_timeout=30)
    result: dict = {"benchmark": "worker_e2e"}
    for phase in ("latency",) if args.skip_throughput else ("throughput", "latency"):
        run = uuid.uuid4().hex[:8]
        topics = {k: f"bench-{k}-{run}" for k in ("trades", "anomalies", "dlq")}
        await create_topics(args.bootstrap, list(topics.values()))
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=args.bootstrap, STOCKANOMALY_APP_ID=f"bench-{run}",
                       STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
                       STOCKANOMALY_DLQ_TOPIC=topics["dlq"], STOCKANOMALY_PARTITIONS=str(PARTITIONS),
                       STOCKANOMALY_LOG_LEVEL="WARNING", ELASTICSEARCH_URL=args.es_url,
                       STOCKANOMALY_ES_INDEX_PREFIX=f"bench-{run}", STOCKANOMALY_DATA_DIR=f"{tmp}/data",
                       STOCKANOMALY_WORKER_WEB_PORT="16099", STOCKANOMALY_METRICS_PORT="0")
            try:
                if phase == "throughput":
                    result["throughput"] = await throughput(args.bootstrap, env, Path(tmp), args.copies)
                else:
                    result["latency"] = await latency(args.bootstrap, env, Path(tmp), es, args.rate)
            finally:
                es.indices.delete(index=f"bench-{run}*", ignore_unavailable=True, allow_no_indices=True)
                admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
                await admin.start()
                await admin.delete_topics(list(topics.values()))
                await admin.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
