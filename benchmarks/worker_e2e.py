"""Kafka -> Faust worker -> anomalies topic -> indexer -> Elasticsearch: latency and one worker's throughput.

Needs the local services (`bash scripts/services.sh up kafka elasticsearch`). Starts its own
processes as the Dockerfile and docker-compose.yml run them: `faust -A entrypoints.worker worker
-l info` (detection; writes only Kafka) and `faust -A entrypoints.indexer worker -l info` (the
anomalies topic into Elasticsearch). (`-l warn` would turn on Faust's spinner, which sets the root
logger to DEBUG: every debug record of aiokafka and Faust gets built, a few percent of the worker.)
Each phase gets fresh topics (created with --partitions partitions before anything starts),
consumer groups, data directory and Elasticsearch index prefix (a uuid), all removed at the end,
also on failure. Progress goes to stderr; stdout gets exactly one JSON line (with "error" and exit
code 1 on failure; the processes' logs are then kept and their directory printed).

Usage:
  .venv/bin/python benchmarks/worker_e2e.py                      # 500 symbols, 50,000 trades/s, then throughput
  .venv/bin/python benchmarks/worker_e2e.py --symbols 50 --rate 5000 --trades 50000 --skip-throughput
  .venv/bin/python benchmarks/worker_e2e.py --take-within 0.005 --take-max 64   # worker tuning, passed as env
  .venv/bin/python benchmarks/worker_e2e.py --worker-env STOCKANOMALY_PROCESSING_GUARANTEE=at_least_once

latency phase (target: p99 produce -> anomalies topic < 50 ms, produce -> searchable < 100 ms):
  A synthetic market (adapters.synthetic.generate_market) of --symbols symbols and --day-trades
  trades (default 8,000 per symbol), seed --seed, with its injected anomalies.
  1. Warm-up: the first --warmup trades (default: every trade before 10:02 ET event time, i.e.
     past the first Isolation Forest model, in force from 10:01) are produced at full speed, cut
     as `stockanomaly ingest` cuts a file (65,536-trade chunks, messages as below); then the
     worker's committed offsets must reach the end of the trades topic. The JSON says how many
     symbols got past the 300-trade warm-up of the size/price detectors in it.
  2. Paced part: the next --trades trades at --rate trades/s. Every --tick seconds (default
     5 ms, ingest's pace tick) the trades due in that tick are sent as ingest sends them:
     application.ingest.symbol_batches cuts them into per-symbol runs in event-time order, and
     (as KafkaTradePublisher.publish) the runs of each partition (keys.partition_of) are packed
     into STB2 messages of at most --batch-trades trades, sent to that partition: one message per
     partition and tick, about rate x tick / partitions trades each (--per-symbol-messages: one
     keyed STB1 message per symbol run instead, as ingest sent before STB2). Messages stay small,
     so nothing waits on the producer side. All are encoded before the clock starts.
  "Produce" time of a message = time.time() immediately before it is handed to the producer
  (`AIOKafkaProducer.send`, linger_ms=0, acks=all); the broker's acknowledgement is thus inside
  the latency (its share is reported as produce_to_ack_ms).
  An observer in its own process (so the producer's loop never delays its clock readings) reads
  the anomalies topic with a read_committed consumer from the start (fetch_max_wait 10 ms) and
  stamps time.time() when each record arrives; it polls Elasticsearch with an `ids` search (a
  search, not a GET: only refreshed documents count) for every id seen on the topic and not yet
  found, every --poll seconds (default 10 ms), stamping time.time() when the response arrives.
  Each anomaly of the paced part is matched to the message that held its trade by (sequence, symbol,
  ts_event) (the synthetic tape's sequence numbers are unique); latency = stamp - that message's
  produce time. A rate episode (trade_burst, volume_surge) is anchored at the print that crossed its
  threshold but reported at the first print of its symbol once its peak is known (its
  `measured_seconds`, at most one window, after the anchor): its latency counts from the message
  holding that later print, and the event-time delays are reported apart
  (rate_episode_report_delay_event_ms), since a benchmark that replays event time faster than the
  wall clock would otherwise fold them, compressed, into the pipeline's latency. All clocks are read
  on this host. Anomalies of the warm-up are left out. Reported: p50/p90/p99/max in ms and their
  counts, anomalies topic -> searchable (the indexer's share), the achieved send rate, the
  producer's ack latency, the worker's takes during the paced part (from its "batch" log lines:
  messages, trades and seconds per partition group, and the share of wall time spent in them) and
  how long after the last send the worker had committed everything (drain_seconds: far above 0 means
  it did not keep up), and the CPU used while sending (cpu_during_send, from /proc: the host's busy
  cores out of host_cores, and the worker's, indexer's, observer's and this process's, and Kafka's
  and Elasticsearch's when `scripts/services.sh` started them (their pid files); the rest is
  whatever else runs: a host near host_cores busy had no room, whatever the worker's code).
  Before the warm-up, a probe anomaly (id "<run>-probe") is written to the anomalies topic; the
  paced part starts only after the worker has committed the warm-up and the probe is searchable.

throughput phase (target: one worker sustains 200,000 trades/s over 500 symbols):
  A fresh synthetic day (seed --seed + 1) of --throughput-trades trades over --symbols symbols
  (the whole session: every warm-up and model fit included) is produced to a fresh topic first,
  cut as ingest cuts a file (as above; symbol_batches also cuts every 20 s of event time, which
  bounds the messages of a thin day); then a fresh worker (new group, empty state) is started. Its
  committed offsets are polled every 50 ms and mapped back to trades (the offsets of every
  message are known); trades/s = trades committed between the first poll that sees a commit and
  the first poll that sees every partition committed to its end, divided by the time between the
  two (start-up and the first take are left out; the error is about one poll interval).

Numbers are noisy on a machine shared with other work (Kafka, Elasticsearch, the worker, the
indexer, this producer and the observer all run on the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from adapters.kafka.codec import decode, encode_batch, encode_runs
from adapters.kafka.keys import partition_of
from adapters.synthetic import generate_market
from application.ingest import PACE_TICK_SECONDS, symbol_batches
from domain.model import Anomaly
from domain.symbols import SymbolRuns
from kafka_runs import free_port

INGEST_CHUNK = 65_536  # trades per chunk when `stockanomaly ingest` reads a file
INGEST_BATCH = 2_000  # ingest's --batch-trades default: trades per run and per message at most
Message = tuple[bytes | None, bytes, int, list[np.ndarray]]  # key, value, partition, the runs' trades
WARMUP_EVENT_MINUTES = 32  # auto warm-up: trades before 09:30 + 32 min ET (first forest model at 10:01)
WARM_TRADES = 300  # high_volume / price_change warm-up, trades per symbol
TARGETS = {"p99_to_topic_ms": 50.0, "p99_to_searchable_ms": 100.0, "worker_trades_per_second": 200_000}
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[worker_e2e {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def stats_ms(values: list[float] | np.ndarray) -> dict[str, Any]:
    v = np.asarray(values, float) * 1000.0
    if len(v) == 0:
        return {"n": 0}
    return {"n": int(len(v)), "p50": round(float(np.percentile(v, 50)), 1),
            "p90": round(float(np.percentile(v, 90)), 1), "p99": round(float(np.percentile(v, 99)), 1),
            "max": round(float(v.max()), 1)}


async def wait_until(probe: Callable[[], Awaitable[Any]], timeout: float, what: str,
                     interval: float = 0.05) -> Any:
    """Await probe until it returns something truthy; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(interval)


# -- the observer: its own process, so the producer's busy loop never delays its timestamps ----------
def observer_main(conn: Any, bootstrap: str, topic: str, partitions: int, es_url: str, index: str,
                  poll: float) -> None:
    asyncio.run(_observe(conn, bootstrap, topic, partitions, es_url, index, poll))


async def _observe(conn: Any, bootstrap: str, topic: str, partitions: int, es_url: str, index: str,
                   poll: float) -> None:
    from elasticsearch import ApiError, AsyncElasticsearch, TransportError

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, fetch_max_wait_ms=10, auto_offset_reset="earliest")
    es = AsyncElasticsearch(es_url, request_timeout=10)
    seen: dict[str, list[Any]] = {}  # id -> [time on topic, symbol, ts_event, sequence, detector, report delay s]
    found: dict[str, float] = {}  # id -> time a search first returned it
    pending: dict[str, None] = {}  # seen, not yet found (insertion-ordered)
    counts: Counter[str] = Counter()  # duplicates on the topic, search errors
    stop = asyncio.Event()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)

        async def consume() -> None:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=50)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        d = json.loads(r.value)
                        if d["id"] in seen:
                            counts["duplicates"] += 1
                            continue
                        seen[d["id"]] = [now, d["symbol"], int(d["ts_event"]), int(d.get("sequence", 0)),
                                         d["detector"], float(d.get("details", {}).get("measured_seconds", 0.0))]
                        pending[d["id"]] = None

        async def search() -> None:
            while not stop.is_set():
                if pending:
                    ids = list(pending)[:5_000]
                    try:
                        response = await es.search(index=index, query={"ids": {"values": ids}}, size=len(ids),
                                                   source=False, allow_no_indices=True, ignore_unavailable=True)
                        now = time.time()
                        for hit in response["hits"]["hits"]:
                            if hit["_id"] in pending:
                                found[hit["_id"]] = now
                                del pending[hit["_id"]]
                    except (ApiError, TransportError):  # a daily index whose shard is still starting
                        counts["search_errors"] += 1
                await asyncio.sleep(poll)

        tasks = [asyncio.create_task(consume()), asyncio.create_task(search())]
        conn.send("ready")
        while True:
            if any(t.done() for t in tasks):
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            if conn.poll():
                request = conn.recv()
                if request == "stop":
                    break
                conn.send({"seen": len(seen), "found": len(found), "pending": len(pending),
                           "found_ids": [i for i in request if i in found]})
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        conn.send({"seen": seen, "found": found, "counts": dict(counts)})
    finally:
        await consumer.stop()
        await es.close()


class Observer:
    def __init__(self, bootstrap: str, topic: str, partitions: int, es_url: str, index: str, poll: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=observer_main, args=(child, bootstrap, topic, partitions, es_url, index, poll),
                                daemon=True)
        self.proc.start()
        self.pid: int = self.proc.pid or 0  # set once started

    async def _recv(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not self.conn.poll():
            if not self.proc.is_alive():
                raise RuntimeError(f"the observer process died (exit code {self.proc.exitcode})")
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the observer process")
            await asyncio.sleep(0.01)
        return self.conn.recv()

    async def ready(self) -> None:
        if await self._recv(60) != "ready":
            raise RuntimeError("unexpected first message from the observer")

    async def status(self, ids: tuple[str, ...] = ()) -> dict[str, Any]:
        self.conn.send(list(ids))
        return await self._recv(30)

    async def finish(self) -> dict[str, Any]:
        self.conn.send("stop")
        result = await self._recv(60)
        self.proc.join(timeout=10)
        return result

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=10)


def service_pids(names: tuple[str, ...] = ("kafka", "elasticsearch")) -> dict[str, int]:
    """The pids of the services `scripts/services.sh` runs, read from its pid files (its own
    reader, which tells a recycled pid from the service's); none for a broker or cluster started
    otherwise."""
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "scripts"))
    try:
        from devservices.proc import read_pid
    finally:
        sys.path.pop(0)
    run_dir = Path(os.environ.get("STOCKANOMALY_RUN_DIR") or repo / ".services")
    records = {name: read_pid(run_dir / name / f"{name}.pid") for name in names}
    return {name: r.pid for name, r in records.items() if r is not None and r.alive()}


class CpuWindow:
    """CPU used over a stretch of wall time, from /proc (Linux): the host's busy cores and each named
    process's share, so a result says whether the host had room (a saturated host is a different
    finding from a slow worker). None where /proc is not there."""

    def __init__(self, pids: dict[str, int], trees: dict[str, int] | None = None) -> None:
        """`pids`: processes counted alone; `trees`: counted with their live descendants
        (Elasticsearch's launcher runs the server as a child; this process's children are the
        worker, indexer and observer, counted apart)."""
        self.pids = {**pids, **(trees or {})}
        self.trees = set(trees or ())
        self.start = self._read()

    @staticmethod
    def _process_seconds(pid: int, tree: bool = False) -> float | None:
        """CPU seconds of the process (and, with `tree`, of its live descendants)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                        for c in (task / "children").read_text().split()] if tree else []
        except (OSError, IndexError, ValueError):
            return None
        own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return own + sum(CpuWindow._process_seconds(c, tree=True) or 0.0 for c in children)

    def _read(self) -> tuple[float, float | None, dict[str, float | None]]:
        try:
            # user nice system idle iowait irq softirq steal: busy is all but idle and iowait
            ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            busy: float | None = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            busy = None
        return time.monotonic(), busy, {name: self._process_seconds(pid, tree=name in self.trees)
                                       for name, pid in self.pids.items()}

    def cores(self) -> dict[str, Any] | None:
        """Cores used since construction: the host's, and each process's (None if it was gone)."""
        (t0, busy0, proc0), (t1, busy1, proc1) = self.start, self._read()
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        used = {name: (round((proc1[name] - proc0[name]) / (t1 - t0), 2)  # type: ignore[operator]
                       if proc0[name] is not None and proc1[name] is not None else None) for name in self.pids}
        return {"host_cores": os.cpu_count(), "host_busy_cores": round((busy1 - busy0) / (t1 - t0), 2),
                "processes_cores": used}


# -- one phase's Kafka/Elasticsearch resources and processes ---------------------------------------
class Run:
    """Unique names (topics, app id = consumer group, index prefix, data dir) and the processes of one phase."""

    def __init__(self, args: argparse.Namespace, phase: str) -> None:
        self.args = args
        self.id = f"bench-e2e-{phase}-{uuid.uuid4().hex[:8]}"
        self.topics = {k: f"{self.id}-{k}" for k in ("trades", "anomalies", "dlq", "incidents")}
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        self.procs: list[tuple[str, subprocess.Popen, Any]] = []
        self.env = dict(
            os.environ, KAFKA_BOOTSTRAP_SERVERS=args.bootstrap, STOCKANOMALY_APP_ID=self.id,
            STOCKANOMALY_TRADES_TOPIC=self.topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=self.topics["anomalies"],
            STOCKANOMALY_DLQ_TOPIC=self.topics["dlq"], STOCKANOMALY_INCIDENTS_TOPIC=self.topics["incidents"],
            STOCKANOMALY_PARTITIONS=str(args.partitions),
            STOCKANOMALY_LOG_LEVEL="DEBUG", ELASTICSEARCH_URL=args.es_url, STOCKANOMALY_ES_INDEX_PREFIX=self.id,
            STOCKANOMALY_DATA_DIR=str(self.workdir / "worker-data"),
            STOCKANOMALY_WORKER_WEB_PORT=str(free_port()), STOCKANOMALY_INDEXER_WEB_PORT=str(free_port()),
            STOCKANOMALY_METRICS_ADDR="127.0.0.1", STOCKANOMALY_METRICS_PORT="0",
            STOCKANOMALY_INDEXER_METRICS_PORT="0", **worker_env(args))
        self.admin: AIOKafkaAdminClient | None = None
        self.offsets: AIOKafkaConsumer | None = None
        self.failed = False

    @property
    def group(self) -> str:
        return self.id

    async def open(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.args.bootstrap)
        await self.admin.start()
        await self.admin.create_topics([NewTopic(t, self.args.partitions, 1) for t in self.topics.values()])

        async def with_leaders() -> bool:
            described = await self.admin.describe_topics(list(self.topics.values()))  # type: ignore[union-attr]
            return all(t["error_code"] == 0 and len(t["partitions"]) == self.args.partitions
                       and all(p["leader"] >= 0 for p in t["partitions"]) for t in described)

        await wait_until(with_leaders, 30, "topics created with leaders")
        self.offsets = AIOKafkaConsumer(bootstrap_servers=self.args.bootstrap, enable_auto_commit=False)
        await self.offsets.start()

    def start(self, name: str, module: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", module, "worker", "-l", "info"],
                                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # a Ctrl-C reaches us only; we stop them
        self.procs.append((name, proc, log))
        return proc

    def check_alive(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                log = self.workdir / f"{name}.log"
                signalled = "Signal received: 15" in log.read_text(errors="replace")
                cause = " after a SIGTERM from outside this benchmark" if signalled else ""
                raise RuntimeError(f"the {name} exited with code {proc.returncode}{cause}; log: {log}")

    @property
    def trades_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.topics["trades"], p) for p in range(self.args.partitions)]

    async def committed_and_end(self) -> tuple[dict[int, int], dict[int, int]]:
        """The worker group's committed offset (0 when none) and the end offset of every trades partition."""
        tps = self.trades_partitions
        end = await self.offsets.end_offsets(tps)  # type: ignore[union-attr]
        try:
            got = await self.admin.list_consumer_group_offsets(self.group, partitions=tps)  # type: ignore[union-attr]
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            got = {}  # a fresh broker still creating __consumer_offsets: nothing committed yet (the caller polls)
        committed = {tp.partition: max(0, got[tp].offset) if tp in got else 0 for tp in tps}
        return committed, {tp.partition: end[tp] for tp in tps}

    async def wait_committed_to_end(self, what: str, stall: float = 90.0, cap: float = 1800.0,
                                    on_poll: Callable[[dict[int, int], float], None] | None = None) -> float:
        """Wait until the worker committed every trades partition to its end; returns when it saw it.

        Bounded: fails when the committed offsets do not move for `stall` seconds (start-up included)
        or after `cap` seconds in all. Reports the lag every 10 s."""
        started = last_move = last_report = time.monotonic()
        last: dict[int, int] | None = None
        while True:
            self.check_alive()
            committed, end = await self.committed_and_end()
            seen_at = time.time()
            if on_poll is not None:
                on_poll(committed, seen_at)
            if all(committed[p] >= end[p] for p in end):
                return seen_at
            now = time.monotonic()
            if committed != last:
                last, last_move = committed, now
            if now - last_move > stall or now - started > cap:
                raise TimeoutError(f"{what}: committed {committed} of {end} (no progress for "
                                   f"{now - last_move:.0f} s, {now - started:.0f} s in all)")
            if now - last_report >= 10:
                last_report = now
                say(f"  {what}: {sum(end.values()) - sum(committed.values()):,} messages still to commit")
            await asyncio.sleep(0.05)

    def worker_batches(self, since: float = 0.0, until: float = float("inf")) -> list[dict[str, Any]]:
        """The worker's "batch" log lines (one per partition group of a take) logged within [since, until]."""
        out: list[dict[str, Any]] = []
        path = self.workdir / "worker.log"
        if not path.exists():
            return out
        for line in path.read_text(errors="replace").splitlines():
            if '"event": "batch"' not in line:
                continue
            try:
                d = json.loads(line)
                d["t"] = datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError):
                continue
            if since <= d["t"] <= until:
                out.append(d)
        return out

    async def close(self, es: Any) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for name, proc, log in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within 30 s of SIGTERM: killing it")
                proc.kill()
                proc.wait(timeout=10)
            log.close()
        try:
            es.indices.delete(index=f"{self.id}*", ignore_unavailable=True, allow_no_indices=True,
                              expand_wildcards="all")
            from elasticsearch import NotFoundError

            try:
                for t in es.indices.get_index_template(name=f"{self.id}*")["index_templates"]:
                    es.indices.delete_index_template(name=t["name"])
            except NotFoundError:
                pass
        except Exception as exc:  # noqa: BLE001 - cleanup goes on with Kafka
            say(f"Elasticsearch cleanup failed: {exc}")
        if self.offsets is not None:
            await self.offsets.stop()
        if self.admin is not None:
            try:
                # Faust's changelog and assignor topics carry the run id too.
                doomed = [t for t in await self.admin.list_topics() if self.id in t]
                if doomed:
                    await self.admin.delete_topics(doomed)
            except Exception as exc:  # noqa: BLE001
                say(f"Kafka topic cleanup failed: {exc}")
            await self.admin.close()
        if self.failed or self.args.keep_logs:
            say(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    env = {}
    if args.take_within is not None:
        env["STOCKANOMALY_TAKE_WITHIN"] = str(args.take_within)
    if args.take_max is not None:
        env["STOCKANOMALY_TAKE_MAX"] = str(args.take_max)
    for item in args.worker_env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--worker-env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def to_messages(runs: SymbolRuns, partitions: int, message_trades: int, per_symbol: bool) -> list[Message]:
    """The messages ingest makes of runs due together (KafkaTradePublisher.publish): per partition
    (`partition_of`), runs packed into STB2 messages of at most `message_trades` trades
    (`encode_runs`), sent to that partition without a key; or, `per_symbol`, one keyed STB1 message
    per run. Each with the trades it holds (an STB2 message's decoded back, as the worker reads it)."""
    if per_symbol:
        return [(*encode_batch(symbol, rows), partition_of(symbol, partitions), [rows]) for symbol, rows in runs]
    if not len(runs):
        return []
    home = np.array([partition_of(name, partitions) for name in runs.names], np.int64)[runs.codes]
    home[runs.lengths == 0] = -1  # as the publisher: no message of no trades
    return [(None, value, partition, [decode(None, value, "bench")[0]])
            for partition, value, _ in encode_runs(runs, home, message_trades)]


def ingest_messages(trades: np.ndarray, args: argparse.Namespace) -> list[tuple[bytes | None, bytes, int, int]]:
    """(key, value, partition, trades) as `stockanomaly ingest` sends a file at full speed."""
    out = []
    for start in range(0, len(trades), INGEST_CHUNK):
        runs = symbol_batches(trades[start:start + INGEST_CHUNK], args.batch_trades)
        for key, value, partition, rows in to_messages(runs, args.partitions, args.batch_trades,
                                                       args.per_symbol_messages):
            out.append((key, value, partition, sum(len(r) for r in rows)))
    return out


async def produce_all(producer: AIOKafkaProducer, topic: str,
                      messages: list[tuple[bytes | None, bytes, int, int]]) -> list[tuple[int, int, int]]:
    """Send at full speed; (partition, offset, trades) of every message."""
    futures = [await producer.send(topic, key=k, value=v, partition=p) for k, v, p, _ in messages]
    await producer.flush()
    metas = await asyncio.gather(*futures)
    return [(m.partition, m.offset, n) for m, (_, _, _, n) in zip(metas, messages)]


def worker_takes(batches: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    if not batches:
        return {"batches": 0}
    secs = np.array([b["seconds"] for b in batches], float)
    msgs = np.array([b["messages"] for b in batches], float)
    trades = np.array([b["trades"] for b in batches], float)
    return {"batches": len(batches), "messages_p50": float(np.percentile(msgs, 50)), "messages_max": int(msgs.max()),
            "trades_p50": float(np.percentile(trades, 50)), "trades_max": int(trades.max()),
            "batch_ms": stats_ms(secs), "busy_fraction": round(float(secs.sum()) / seconds, 3) if seconds > 0 else None,
            "note": "one worker 'batch' log line per partition group of a take: decode, detect (state "
                    "included), outputs delivered; the take's commit and Faust's event handling are outside"}


# -- latency phase --------------------------------------------------------------------------------
def build_paced(paced: np.ndarray, args: argparse.Namespace
                ) -> tuple[list[tuple[bytes | None, bytes, int]], np.ndarray, np.ndarray]:
    """Messages in send order (key, value, partition), the first message index of every tick
    (len ticks + 1), and the message index holding every trade of `paced`."""
    seq = paced["sequence"].astype(np.int64)
    if len(seq) > 1 and not bool((np.diff(seq) > 0).all()):
        raise RuntimeError("the paced trades' sequence numbers are not strictly increasing: cannot match anomalies")
    per_tick = args.rate * args.tick
    ticks = int(np.ceil(len(paced) / per_tick))
    bounds = np.minimum(np.round(np.arange(ticks + 1) * per_tick).astype(np.int64), len(paced))
    bounds[-1] = len(paced)
    messages: list[tuple[bytes | None, bytes, int]] = []
    first = np.zeros(ticks + 1, np.int64)
    holder = np.full(len(paced), -1, np.int64)
    for k in range(ticks):
        first[k] = len(messages)
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        if hi <= lo:
            continue
        runs = symbol_batches(paced[lo:hi], args.batch_trades)
        for key, value, partition, rows in to_messages(runs, args.partitions, args.batch_trades,
                                                       args.per_symbol_messages):
            for r in rows:
                holder[np.searchsorted(seq, r["sequence"].astype(np.int64))] = len(messages)
            messages.append((key, value, partition))
    first[ticks] = len(messages)
    assert (holder >= 0).all()
    return messages, first, holder


async def latency_phase(args: argparse.Namespace, es: Any) -> dict[str, Any]:
    day_trades = args.day_trades or 8_000 * args.symbols
    say(f"latency: generating a market of {day_trades:,} trades over {args.symbols} symbols (seed {args.seed})")
    market = generate_market(symbols=args.symbols, trades=day_trades, seed=args.seed)
    trades = market.trades
    if args.warmup is None:
        warmup = int(np.searchsorted(trades["ts_event"], market.session.open_ns + WARMUP_EVENT_MINUTES * 60 * 10**9))
    else:
        warmup = args.warmup
    if warmup + args.trades > len(trades):
        raise SystemExit(f"--warmup {warmup:,} + --trades {args.trades:,} exceed the day's {len(trades):,} trades: "
                         f"raise --day-trades")
    warm, paced = trades[:warmup], trades[warmup:warmup + args.trades]
    per_symbol = Counter(warm["symbol"].tolist())
    warm_counts = np.array([per_symbol.get(s, 0) for s in market.symbols])
    warm_info = {"trades": int(warmup), "event_time_end_utc": _iso(int(paced["ts_event"][0])),
                 "symbols_past_300_trades": int((warm_counts >= WARM_TRADES).sum()),
                 "min_trades_per_symbol": int(warm_counts.min())}
    say(f"warm-up: {warmup:,} trades up to {warm_info['event_time_end_utc']} UTC; "
        f"{warm_info['symbols_past_300_trades']}/{args.symbols} symbols past {WARM_TRADES} trades")
    warm_messages = ingest_messages(warm, args)
    started = time.perf_counter()
    messages, tick_first, holder = build_paced(paced, args)
    say(f"paced part: {len(paced):,} trades in {len(messages):,} messages over {len(tick_first) - 1:,} ticks of "
        f"{args.tick * 1000:g} ms (encoded in {time.perf_counter() - started:.1f} s)")

    run = Run(args, "lat")
    observer: Observer | None = None
    producer: AIOKafkaProducer | None = None
    try:
        await run.open()
        observer = Observer(args.bootstrap, run.topics["anomalies"], args.partitions, args.es_url, f"{run.id}-*",
                            args.poll)
        run.start("worker", "entrypoints.worker")
        run.start("indexer", "entrypoints.indexer")
        launched = time.time()
        await observer.ready()
        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=0, acks="all",
                                    max_batch_size=1_048_576)
        await producer.start()
        probe = Anomaly(id=f"{run.id}-probe", detector="benchmark_probe", symbol="PROBE",
                        ts_event=int(trades["ts_event"][0]), price=1.0, size=1, score=0.0, severity="low",
                        reason="worker_e2e readiness probe")
        await producer.send_and_wait(run.topics["anomalies"], key=b"PROBE", value=json.dumps(probe.to_dict()).encode())

        say(f"warm-up: producing {len(warm_messages):,} messages at full speed")
        await produce_all(producer, run.topics["trades"], warm_messages)
        await run.wait_committed_to_end("worker committing the warm-up")
        warm_info["seconds_from_launch"] = round(time.time() - launched, 1)

        async def probe_searchable() -> bool:
            run.check_alive()
            return bool((await observer.status((probe.id,)))["found_ids"])  # type: ignore[union-attr]

        await wait_until(probe_searchable, 120, "indexer ready (probe anomaly searchable)", interval=0.2)
        # Every warm-up anomaly searchable too, so the paced part starts with an idle pipeline.
        await wait_until(_all_found(observer), 60, "warm-up anomalies searchable", interval=0.2)
        status = await observer.status()
        warm_info["anomalies"] = status["seen"] - 1
        say(f"warm-up done ({warm_info['seconds_from_launch']} s after launch, {warm_info['anomalies']} anomalies); "
            f"paced part: {len(paced):,} trades at {args.rate:,.0f} trades/s")

        sent = np.zeros(len(messages))
        acked = np.full(len(messages), np.nan)

        def on_ack(i: int, fut: asyncio.Future) -> None:
            if not fut.cancelled() and fut.exception() is None:
                acked[i] = time.time()

        topic = run.topics["trades"]
        cpu = CpuWindow({**{name: proc.pid for name, proc, _ in run.procs}, "benchmark": os.getpid(),
                         "observer": observer.pid}, trees=service_pids())
        t0 = time.time() + 0.05
        behind = 0
        for k in range(len(tick_first) - 1):
            delay = t0 + k * args.tick - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -args.tick:
                behind += 1
            for i in range(int(tick_first[k]), int(tick_first[k + 1])):
                key, value, partition = messages[i]
                sent[i] = time.time()
                fut = await producer.send(topic, key=key, value=value, partition=partition)
                fut.add_done_callback(partial(on_ack, i))
        await producer.flush()
        send_end = time.time()
        cpu_during_send = cpu.cores()
        send_seconds = float(sent[-1] - sent[0]) if len(sent) > 1 else 0.0
        say(f"sent in {send_seconds:.2f} s ({len(paced) / max(send_seconds, 1e-9):,.0f} trades/s); "
            f"waiting for the worker to commit everything")
        drained = await run.wait_committed_to_end("worker committing the paced part")
        await wait_until(_all_found(observer, settle=True), 120, "paced anomalies searchable", interval=0.2)
        result = await observer.finish()
        observer = None
        batches = run.worker_batches(since=float(sent[0]), until=drained)
    except BaseException:
        run.failed = True
        raise
    finally:
        if observer is not None:
            observer.kill()
        if producer is not None:
            await producer.stop()
        await run.close(es)

    # Match every anomaly of the paced part to the message that held its trade.
    seq = paced["sequence"].astype(np.int64)
    to_topic: list[float] = []
    to_search: list[float] = []
    indexing: list[float] = []
    detectors: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    delays: list[float] = []
    for anomaly_id, (t_topic, symbol, ts_event, sequence, detector, measured) in result["seen"].items():
        if anomaly_id == probe.id:
            continue
        j = int(np.searchsorted(seq, sequence))
        if j >= len(seq) or seq[j] != sequence:
            counts["warmup" if sequence < seq[0] else "unmatched"] += 1
            continue
        if str(paced["symbol"][j]) != symbol or int(paced["ts_event"][j]) != ts_event:
            counts["unmatched"] += 1
            continue
        if measured > 0:
            # A rate episode is reported at the first print of its symbol once its peak is known
            # (its measure ended): the pipeline's latency counts from the message holding that print.
            known = ts_event + round(measured * 1e9)
            later = np.flatnonzero((paced["ts_event"][j:] >= known) & (paced["symbol"][j:] == symbol))
            if not len(later):
                counts["unmatched"] += 1
                continue
            j += int(later[0])
            delays.append((int(paced["ts_event"][j]) - ts_event) / 1e9)
        counts["matched"] += 1
        detectors[detector] += 1
        t_send = sent[holder[j]]
        to_topic.append(t_topic - t_send)
        if anomaly_id in result["found"]:
            to_search.append(result["found"][anomaly_id] - t_send)
            indexing.append(result["found"][anomaly_id] - t_topic)
    topic_stats, search_stats = stats_ms(to_topic), stats_ms(to_search)
    ack = acked - sent
    return {
        "rate_target": args.rate, "achieved_rate": round(len(paced) / send_seconds) if send_seconds > 0 else None,
        "trades": len(paced), "messages": len(messages), "trades_per_message": round(len(paced) / len(messages), 2),
        "tick_ms": args.tick * 1000, "ticks_late": behind, "send_seconds": round(send_seconds, 2),
        "warmup": warm_info,
        "anomalies": {"on_topic": len(result["seen"]) - 1, "matched": counts["matched"],
                      "from_warmup": counts["warmup"], "unmatched": counts["unmatched"],
                      "searchable": len(to_search), "duplicates_on_topic": result["counts"].get("duplicates", 0),
                      "by_detector": dict(sorted(detectors.items()))},
        "produce_to_anomalies_topic_ms": topic_stats,
        "produce_to_searchable_ms": search_stats,
        "anomalies_topic_to_searchable_ms": stats_ms(indexing),
        "rate_episode_report_delay_event_ms": stats_ms(delays),
        "produce_to_ack_ms": stats_ms(ack[~np.isnan(ack)]),
        "unacked_messages": int(np.isnan(ack).sum()),
        "drain_seconds": round(drained - send_end, 2),
        "worker_takes": worker_takes(batches, drained - float(sent[0])),
        # The rest of the host's busy cores are Kafka's, Elasticsearch's and anything else running.
        "cpu_during_send": cpu_during_send,
        "targets": {"p99_to_topic_ms": TARGETS["p99_to_topic_ms"],
                    "p99_to_searchable_ms": TARGETS["p99_to_searchable_ms"],
                    "to_topic_met": bool(topic_stats.get("p99", float("inf")) < TARGETS["p99_to_topic_ms"]),
                    "to_searchable_met": bool(search_stats.get("p99", float("inf")) < TARGETS["p99_to_searchable_ms"])},
        "method": ("produce = time.time() just before AIOKafkaProducer.send (linger_ms=0, acks=all) of the message "
                   "holding the anomaly's trade (for a rate episode, the later print of its symbol at which it was "
                   "reported: its peak known); topic = time.time() when a read_committed consumer in a separate "
                   f"process received the record; searchable = time.time() when an ids search (every "
                   f"{args.poll * 1000:g} ms) first returned it; all on one host"),
    }


def _all_found(observer: Observer, settle: bool = False) -> Callable[[], Awaitable[bool]]:
    """Probe: every anomaly seen on the topic is searchable (with `settle`, and the count held for 0.5 s)."""
    last: list[Any] = [None, 0.0]

    async def probe() -> bool:
        s = await observer.status()
        if s["pending"]:
            return False
        if not settle:
            return True
        if s["seen"] != last[0]:
            last[:] = [s["seen"], time.monotonic()]
            return False
        return time.monotonic() - last[1] >= 0.5

    return probe


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


# -- throughput phase -----------------------------------------------------------------------------
async def throughput_phase(args: argparse.Namespace, es: Any) -> dict[str, Any]:
    n = args.throughput_trades
    say(f"throughput: generating a day of {n:,} trades over {args.symbols} symbols (seed {args.seed + 1})")
    trades = generate_market(symbols=args.symbols, trades=n, seed=args.seed + 1).trades
    messages = ingest_messages(trades, args)
    del trades
    run = Run(args, "tput")
    try:
        await run.open()
        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5, acks="all",
                                    max_batch_size=1_048_576)
        await producer.start()
        try:
            started = time.perf_counter()
            placed = await produce_all(producer, run.topics["trades"], messages)
            say(f"produced {n:,} trades in {len(messages):,} messages in {time.perf_counter() - started:.1f} s; "
                f"starting a fresh worker")
        finally:
            await producer.stop()
        # Trades before each offset, per partition: committed offset -> trades processed.
        cum: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for p in range(args.partitions):
            rows = sorted((o, k) for part, o, k in placed if part == p)
            offs = np.array([o for o, _ in rows], np.int64)
            cum[p] = (offs, np.concatenate(([0], np.cumsum([k for _, k in rows]))))

        def done_trades(committed: dict[int, int]) -> int:
            return int(sum(cum[p][1][np.searchsorted(cum[p][0], committed[p])] for p in committed))

        launched = time.time()
        run.start("worker", "entrypoints.worker")
        first: tuple[float, int] | None = None
        polls: list[tuple[float, int]] = []

        def on_poll(committed: dict[int, int], now: float) -> None:
            nonlocal first
            done = done_trades(committed)
            polls.append((now, done))
            if first is None and done > 0:
                first = (now, done)

        await run.wait_committed_to_end("worker committing the backlog", on_poll=on_poll)
        end_t, end_trades = polls[-1]
        assert first is not None and end_trades == n
        seconds = end_t - first[0]
        batches = run.worker_batches()
        busy = sum(b["seconds"] for b in batches)
        anomalies = sum(b.get("anomalies", 0) for b in batches)
    except BaseException:
        run.failed = True
        raise
    finally:
        await run.close(es)
    measured = n - first[1]
    rate = measured / seconds if seconds > 0 else None
    return {
        "trades": n, "messages": len(messages), "trades_per_message": round(n / len(messages), 1),
        "trades_measured": measured, "seconds": round(seconds, 2),
        "trades_per_second": round(rate) if rate else None,
        "startup_seconds": round(first[0] - launched, 1), "anomalies": anomalies,
        "worker_takes": worker_takes([b for b in batches if b["t"] >= first[0]], seconds),
        "detect_trades_per_second_busy": round(n / busy) if busy > 0 else None,
        "target": TARGETS["worker_trades_per_second"],
        "met": bool(rate and rate >= TARGETS["worker_trades_per_second"]),
        "method": ("backlog produced before a fresh worker starts; committed offsets polled every 50 ms and mapped "
                   "to trades; trades/s between the first poll seeing a commit and the first seeing every "
                   "partition at its end"),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--es-url", default=os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50_000, help="paced trades/s (default 50,000)")
    parser.add_argument("--trades", type=int, default=500_000, help="trades of the paced part (default 500,000)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="trades sent at full speed first (default: all before 10:02 ET event time)")
    parser.add_argument("--day-trades", type=int, default=None,
                        help="trades of the latency phase's synthetic day (default 8,000 x symbols)")
    parser.add_argument("--tick", type=float, default=PACE_TICK_SECONDS,
                        help="seconds between paced sends (default: ingest's 0.005)")
    parser.add_argument("--batch-trades", type=int, default=INGEST_BATCH,
                        help="ingest's --batch-trades: max trades per run and per message (default 2,000)")
    parser.add_argument("--per-symbol-messages", action="store_true",
                        help="one keyed STB1 message per symbol run (ingest before STB2) instead of one STB2 "
                             "message per partition and tick")
    parser.add_argument("--poll", type=float, default=0.01, help="Elasticsearch poll interval, seconds")
    parser.add_argument("--throughput-trades", type=int, default=2_000_000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--take-within", type=float, default=None, help="STOCKANOMALY_TAKE_WITHIN for the workers")
    parser.add_argument("--take-max", type=int, default=None, help="STOCKANOMALY_TAKE_MAX for the workers")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the worker and indexer (repeatable)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (kept on failure anyway)")
    args = parser.parse_args()

    from elasticsearch import Elasticsearch

    es = Elasticsearch(args.es_url, request_timeout=30)
    result: dict[str, Any] = {"benchmark": "worker_e2e", "symbols": args.symbols, "partitions": args.partitions,
                              "seed": args.seed, "wire": "STB1" if args.per_symbol_messages else "STB2",
                              "batch_trades": args.batch_trades, "worker_env": worker_env(args)}
    code = 0
    try:
        if not args.skip_latency:
            result["latency"] = await latency_phase(args, es)
        if not args.skip_throughput:
            result["throughput"] = await throughput_phase(args, es)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON line
        traceback.print_exc(file=sys.stderr)
        result["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        es.close()
    result["wall_seconds"] = round(time.monotonic() - STARTED, 1)
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
