"""The indexer alone, fed anomalies as the workers write them: many small transactions a second.

Needs the local services (`bash scripts/services.sh up kafka elasticsearch`). Uses worker_e2e's
`Run` (fresh topics, group, index prefix and data directory, removed at the end) and starts only
`faust -A entrypoints.indexer worker -l info` (log level INFO, as deployed). A worker commits one
transaction per take (tens of ms), with whatever anomalies the take found: each transaction leaves a
commit marker on every partition it wrote to, an offset no record is delivered at, and the indexer
checks every such jump in the offsets against the log (`adapters.faust.sequence`).

--producers transactional producers (transactional ids of their own, as workers) together commit
--transactions-per-second transactions for --seconds, each of 1 to --max-per-transaction anomalies
(uniform, seed --seed) keyed by symbol (--symbols of them) and so spread over the partitions as the
worker's are. A probe transaction with an anomaly on every partition goes first, and sending starts
once the indexer has it in Elasticsearch. With --backlog everything is written before the indexer
starts, and its catch-up is timed instead.

Every --sample seconds the documents in Elasticsearch are counted (the indexer refreshes per bulk),
and the lag is the anomalies committed to the topic so far less that count. Reported: the achieved
offered rate (records/s, transactions/s), the indexed rate over the sending (records/s: equal to
the offered rate when the indexer keeps up, its capacity when it does not), the lag's p50/max over
the sending and at its end, drain_seconds (from the last commit until every anomaly is indexed) and
the indexed rate while draining, whether Elasticsearch ends with exactly the anomalies committed, and
the CPU used while sending (worker_e2e.CpuWindow). stdout gets exactly one JSON line.

Usage:
  .venv/bin/python benchmarks/indexer_transactions.py --producers 4 --transactions-per-second 100
  .venv/bin/python benchmarks/indexer_transactions.py --producers 1 --transactions-per-second 20 --backlog
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import traceback
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from domain.model import Anomaly, anomaly_id
from worker_e2e import CpuWindow, Run, service_pids, wait_until

TS = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York: every document in one daily index
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[indexer_transactions {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def anomaly(run_id: str, n: int, symbols: int) -> Anomaly:
    symbol = f"S{n % symbols}"
    ts = TS + n * 1_000_000
    return Anomaly(id=f"{run_id}-{anomaly_id('high_volume', symbol, 2, 7, ts, n)}", detector="high_volume",
                   symbol=symbol, ts_event=ts, price=113.0, size=50_000, score=5.0, severity="high",
                   reason=f"size 50,000 is large ({n})", sequence=n)


class Writers:
    """`producers` transactional producers committing transactions of 1..`most` anomalies at `rate`
    transactions/s in all, each on its own schedule (a late one catches up rather than drifting)."""

    def __init__(self, args: argparse.Namespace, run: Run) -> None:
        self.args, self.run = args, run
        self.random = random.Random(args.seed)
        self.next = 0  # anomaly number
        self.committed = 0  # anomalies in committed transactions
        self.transactions = 0
        self.producers: list[AIOKafkaProducer] = []

    async def start(self) -> None:
        for i in range(self.args.producers):
            producer = AIOKafkaProducer(bootstrap_servers=self.args.bootstrap, transactional_id=f"{self.run.id}-tx{i}")
            await producer.start()
            self.producers.append(producer)

    async def transaction(self, producer: AIOKafkaProducer, anomalies: list[Anomaly],
                          partitions: list[int | None] | None = None) -> None:
        async with producer.transaction():
            for a, p in zip(anomalies, partitions or [None] * len(anomalies)):
                await producer.send(self.run.topics["anomalies"], json.dumps(a.to_dict()).encode(),
                                    key=a.symbol.encode(), partition=p)
        self.committed += len(anomalies)
        self.transactions += 1

    def take(self, count: int) -> list[Anomaly]:
        out = [anomaly(self.run.id, n, self.args.symbols) for n in range(self.next, self.next + count)]
        self.next += count
        return out

    async def probe(self) -> int:
        """One transaction with an anomaly on every partition: every partition assigned and indexed."""
        partitions = list(range(self.args.partitions))
        await self.transaction(self.producers[0], self.take(len(partitions)), partitions)  # type: ignore[arg-type]
        return self.committed

    async def write(self, seconds: float) -> None:
        interval = len(self.producers) / self.args.transactions_per_second
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(i: int, producer: AIOKafkaProducer) -> None:
            due = start + i * interval / len(self.producers)
            while due < start + seconds:
                await asyncio.sleep(max(0.0, due - loop.time()))  # pacing the sends, not awaiting a condition
                await self.transaction(producer, self.take(self.random.randint(1, self.args.max_per_transaction)))
                due += interval

        await asyncio.gather(*(one(i, p) for i, p in enumerate(self.producers)))

    async def close(self) -> None:
        for producer in self.producers:
            await producer.stop()


async def indexed(es: Any, run: Run) -> int:
    """The anomalies' documents in Elasticsearch; asked again while the daily index's shard is starting."""
    from elasticsearch import ApiError

    while True:
        try:
            response = await es.count(index=f"{run.id}-*", allow_no_indices=True, ignore_unavailable=True)
            return int(response["count"])
        except ApiError as exc:
            if exc.meta.status != 503:
                raise
            await asyncio.sleep(0.05)  # the shard is starting: nothing to await but asking again


def lag_stats(samples: list[tuple[float, int, int]]) -> dict[str, Any]:
    lags = np.array([c - i for _, c, i in samples], float)
    if not len(lags):
        return {"n": 0}
    return {"n": int(len(lags)), "p50": float(np.percentile(lags, 50)), "p90": float(np.percentile(lags, 90)),
            "max": int(lags.max())}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from elasticsearch import AsyncElasticsearch, Elasticsearch

    run = Run(args, "idx")
    run.env["STOCKANOMALY_LOG_LEVEL"] = "INFO"
    es = AsyncElasticsearch(args.es_url, request_timeout=30)
    writers = Writers(args, run)
    out: dict[str, Any] = {}
    try:
        await run.open()
        await writers.start()
        await writers.probe()
        if args.backlog:
            say(f"backlog: {args.transactions_per_second:g} transactions/s from {args.producers} producers "
                f"for {args.seconds:g} s, before the indexer starts")
            t0 = time.monotonic()
            await writers.write(args.seconds)
            out["offered_seconds"] = round(time.monotonic() - t0, 2)
        run.start("indexer", "entrypoints.indexer")

        async def probe_indexed() -> bool:
            run.check_alive()
            return await indexed(es, run) >= args.partitions

        await wait_until(probe_indexed, 180, "indexer ready (probe anomalies indexed)", interval=0.2)
        samples: list[tuple[float, int, int]] = []  # (time, committed, indexed)
        sending = asyncio.Event()

        async def sample() -> None:
            while True:
                samples.append((time.monotonic(), writers.committed, await indexed(es, run)))
                if not sending.is_set() and samples[-1][2] >= writers.committed:
                    return
                run.check_alive()
                await asyncio.sleep(args.sample)  # the sampling period, not a wait for a condition

        t_start = time.monotonic()
        base = await indexed(es, run)
        cpu = CpuWindow({"indexer": run.procs[0][1].pid, "benchmark": os.getpid()},
                        trees={name: pid for name, pid in service_pids().items()})
        if not args.backlog:
            say(f"sending: {args.transactions_per_second:g} transactions/s of 1-{args.max_per_transaction} anomalies "
                f"from {args.producers} producers for {args.seconds:g} s")
            sending.set()
            sampler = asyncio.create_task(sample())
            await writers.write(args.seconds)
            sending.clear()
        else:
            sampler = asyncio.create_task(sample())
        t_sent = time.monotonic()
        cores = cpu.cores()
        at_end = await indexed(es, run)
        lag_at_end = writers.committed - at_end
        await asyncio.wait_for(sampler, args.drain_cap)
        if args.backlog:
            cores = cpu.cores()  # over the catch-up
        t_done = samples[-1][0]
        final = samples[-1][2]
        sent_seconds = t_sent - t_start
        total = writers.committed
        during = [s for s in samples if s[0] <= t_sent]
        out.update({
            "anomalies": total - args.partitions, "transactions": writers.transactions - 1,
            "offered_per_second": round((total - args.partitions) / args.seconds, 1) if not args.backlog else None,
            "transactions_per_second": round((writers.transactions - 1) / args.seconds, 1),
            "indexed_per_second_while_sending": round((at_end - base) / sent_seconds, 1) if not args.backlog else None,
            "lag_while_sending": lag_stats(during) if not args.backlog else None,
            "lag_at_end_of_sending": lag_at_end if not args.backlog else None,
            "drain_seconds": round(t_done - t_sent, 2),
            "indexed_per_second_while_draining": round((final - at_end) / (t_done - t_sent), 1)
            if t_done > t_sent and final > at_end else None,
            "exact": final == total,
            "cpu_while_sending" if not args.backlog else "cpu_while_indexing": cores,
        })
        if args.backlog:
            out["indexed_per_second_catching_up"] = round((final - base) / max(t_done - t_start, 1e-9), 1)
        return out
    except Exception:
        run.failed = True
        raise
    finally:
        await writers.close()
        await es.close()
        sync_es = Elasticsearch(args.es_url, request_timeout=30)
        try:
            await run.close(sync_es)
        finally:
            sync_es.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--es-url", default=os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--producers", type=int, default=4, help="transactional producers (workers)")
    parser.add_argument("--transactions-per-second", type=float, default=100.0, help="in all")
    parser.add_argument("--max-per-transaction", type=int, default=10, help="anomalies per transaction: 1 to this")
    parser.add_argument("--seconds", type=float, default=30.0, help="of sending")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between counts of the indexed documents")
    parser.add_argument("--drain-cap", type=float, default=600.0, help="seconds the drain may take at most")
    parser.add_argument("--backlog", action="store_true", help="write everything first, then time the catch-up")
    parser.add_argument("--keep-logs", action="store_true", help="keep the indexer's log (kept on failure anyway)")
    args = parser.parse_args()
    args.take_within = args.take_max = None  # worker_e2e.Run's worker settings: the defaults
    args.worker_env = []
    result: dict[str, Any] = {"benchmark": "indexer_transactions", "producers": args.producers,
                              "transactions_per_second_asked": args.transactions_per_second,
                              "max_per_transaction": args.max_per_transaction, "seconds": args.seconds,
                              "partitions": args.partitions, "backlog": args.backlog}
    code = 0
    try:
        result.update(await measure(args))
    except Exception as exc:  # noqa: BLE001 - reported in the JSON line
        traceback.print_exc(file=sys.stderr)
        result["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    result["wall_seconds"] = round(time.monotonic() - STARTED, 1)
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
