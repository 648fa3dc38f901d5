"""The Faust worker on the real Kafka: same anomalies as the embedded replay, across kills and rebalances."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from elasticsearch import ApiError

from adapters.kafka.codec import encode_batch, encode_multi
from adapters.kafka.keys import partition_of
from adapters.kafka.producer import KafkaTradePublisher
from application.incidents import INCIDENT_GAP_NS
from application.ingest import IngestTrades
from adapters.memory import InMemoryTradeSource
from adapters.synthetic import generate_market
from click.testing import CliRunner

from entrypoints.cli import main
from entrypoints.container import build_container
from integration_support import (ConditionTimeout, GatedProxy, as_messages, eventually, eventually_async,
                                 free_port, read_all, scrape, stop_processes, topic_config)

pytestmark = pytest.mark.integration
PARTITIONS = 4


@pytest.fixture(scope="module")
def market() -> np.ndarray:
    return generate_market(symbols=4, trades=80_000, seed=11).trades


@pytest.fixture(scope="module")
def embedded_ids(market: np.ndarray) -> set[str]:
    container = build_container()
    container.replay()(InMemoryTradeSource(market, chunk_size=10_000))
    # What a replay reports because its input ended (a burst within its measure) a worker reports
    # when the symbol trades on: not in a stream that ends there.
    ids = {a.id for a in container.collected_anomalies().anomalies if "input_ended" not in a.details}
    assert len(ids) >= 10
    return ids


@pytest.fixture(scope="module")
def embedded_incidents(market: np.ndarray) -> set[tuple[str, tuple[str, ...]]]:
    """(id, member ids) of the embedded replay's incidents that its symbol's own tape closed (a worker
    keeps a symbol's last incident open until the symbol trades on: a replay closes it at the end)."""
    container = build_container()
    summary = container.replay(top_n=100_000)(InMemoryTradeSource(market, chunk_size=10_000))
    lateness = container.engine().report_lateness_ns
    symbols = market["symbol"].astype(str)
    last = {s: int(market["ts_event"][symbols == s].max()) for s in set(symbols.tolist())}
    closed = {(i.id, i.members) for i in summary.ranked_incidents()
              if last[i.symbol] > i.end_ns + INCIDENT_GAP_NS + lateness}
    assert len(closed) >= 5 and summary.incidents > len(closed) - 1
    return closed


@pytest.fixture(scope="module")
def embedded_records(market: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """The embedded replay's anomalies and incidents by id (with the tape around each)."""
    container = build_container()
    summary = container.replay(top_n=100_000)(InMemoryTradeSource(market, chunk_size=10_000))
    return ({a.id: a for a in container.collected_anomalies().anomalies if "input_ended" not in a.details},
            {i.id: i for i in summary.ranked_incidents()})


class Stream:
    """Topics, a producer and worker processes for one test."""

    def __init__(self, bootstrap: str, topics: dict[str, str], workdir: Path, suffix: str,
                 es: Any, es_url: str, es_prefix: str) -> None:
        self.bootstrap, self.topics, self.workdir = bootstrap, topics, workdir
        self.es, self.es_prefix = es, es_prefix
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, STOCKANOMALY_APP_ID=f"it-worker-{suffix}",
                        STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
                        STOCKANOMALY_DLQ_TOPIC=topics["dlq"], STOCKANOMALY_INCIDENTS_TOPIC=topics["incidents"],
                        STOCKANOMALY_PARTITIONS=str(PARTITIONS),
                        STOCKANOMALY_LOG_LEVEL="DEBUG", ELASTICSEARCH_URL=es_url,
                        STOCKANOMALY_ES_INDEX_PREFIX=es_prefix,
                        # Out of the anomalies' pattern (<prefix>-*), inside the fixture's cleanup (<prefix>*).
                        STOCKANOMALY_ES_INCIDENTS_PREFIX=f"{es_prefix}.incidents",
                        # Several workers per host: each serves /metrics on a port of its own.
                        STOCKANOMALY_METRICS_ADDR="127.0.0.1", STOCKANOMALY_METRICS_PORT="0")
        self.workers: list[subprocess.Popen] = []

    def start_worker(self, name: str, port: int, metrics_port: int = 0) -> subprocess.Popen:
        env = dict(self.env, STOCKANOMALY_DATA_DIR=str(self.workdir / f"{name}-data"),
                   STOCKANOMALY_WORKER_WEB_PORT=str(port), STOCKANOMALY_METRICS_PORT=str(metrics_port))
        return self._start("entrypoints.worker", name, env)

    def start_indexer(self, port: int, es_url: str | None = None, **settings: str) -> subprocess.Popen:
        env = dict(self.env, STOCKANOMALY_INDEXER_WEB_PORT=str(port), STOCKANOMALY_INDEXER_METRICS_PORT="0",
                   **settings)
        if es_url is not None:
            env["ELASTICSEARCH_URL"] = es_url
        return self._start("entrypoints.indexer", "indexer", env)

    def _start(self, module: str, name: str, env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", module, "worker", "-l", "warn"],
                                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    async def offsets_committed_to_the_end(self) -> bool:
        """Whether the workers' committed offsets of every trades partition reached its end offset."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await admin.start()
        await consumer.start()
        try:
            tps = [TopicPartition(self.topics["trades"], p) for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(self.env["STOCKANOMALY_APP_ID"], partitions=tps)
            self.committed = {tp.partition: (committed[tp].offset if tp in committed else None, ends[tp])
                              for tp in tps}
            # An empty partition has nothing to commit (the group then reports -1).
            done = all(c == end or (end == 0 and c in (None, -1)) for c, end in self.committed.values())
            if not done:
                print(f"committed vs end offsets per partition: {self.committed}")  # shown if the wait fails
            return done
        finally:
            await consumer.stop()
            await admin.close()

    async def produce(self, pairs: list[tuple[bytes, bytes]], partition: int | None = None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for key, value in pairs:
                await producer.send(self.topics["trades"], key=key, value=value, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()

    async def ingest(self, trades: np.ndarray) -> None:
        """As `stockanomaly ingest` sends: each partition's symbols together in `STB2` messages."""
        async with KafkaTradePublisher(self.bootstrap, self.topics["trades"], self.topics["dlq"],
                                       partitions=PARTITIONS, anomalies_topic=self.topics["anomalies"],
                                       incidents_topic=self.topics["incidents"]) as publisher:
            await IngestTrades(publisher, batch_trades=500)(InMemoryTradeSource(trades, chunk_size=5_000))

    async def anomaly_ids(self) -> list[str]:
        records = await read_all(self.bootstrap, self.topics["anomalies"], partition_count=PARTITIONS,
                                 isolation_level="read_committed")
        return [json.loads(r.value)["id"] for r in records]

    async def wait_for(self, expected: set[str], timeout: float = 240) -> list[str]:
        seen: list[str] = []

        async def complete() -> bool:
            seen[:] = await self.anomaly_ids()
            return set(seen) >= expected

        await self.wait(complete, timeout, f"{len(expected)} anomalies")
        return seen

    async def wait_searchable(self, expected: set[str], timeout: float = 120, index: str | None = None) -> list[str]:
        """Every id in Elasticsearch (the anomalies' indices, or `index`) once the indexer has caught up
        with `expected`."""
        found: list[str] = []

        async def caught_up() -> bool:
            found[:] = self.searchable_ids(index)
            return set(found) >= expected

        await self.wait(caught_up, timeout, f"{len(expected)} anomalies in Elasticsearch")
        return found

    async def wait(self, probe: Any, timeout: float, what: str) -> Any:
        """`eventually_async`, failing with what the processes left behind: CI keeps no log files."""
        try:
            return await eventually_async(probe, timeout=timeout, interval=1.0, what=what)
        except ConditionTimeout as exc:
            raise ConditionTimeout(f"{exc}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """Each process's exit status, and the last warnings and errors of each log."""
        lines = [f"process {proc.args[4]} pid {proc.pid}: "
                 f"{'running' if proc.poll() is None else f'exited {proc.returncode}'}" for proc in self.workers]
        for log in sorted(self.workdir.glob("*.log")):
            noted = [line[:300] for line in log.read_text(errors="replace").splitlines()
                     if any(mark in line for mark in ('"level": "error"', '"level": "warning"', "Crashed reason"))]
            lines += [f"{log.name}: {line}" for line in noted[-8:]]
        return "\n".join(lines)

    def committed_trades(self) -> int:
        """Valid trades judged in what the workers' runs left committed, from their `batch` lines
        (partition, offsets, accepted trades), in the order they were logged: a group reprocessed
        later (the take was not committed before a kill, or the partition moved) is superseded by
        the later one from where that starts. Also checks that the groups kept cover each
        partition's offsets without a gap, from 0."""
        groups: list[tuple[datetime, int, int, int, int]] = []
        for log in self.workdir.glob("w*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"event": "batch"' in line:
                    d = json.loads(line)
                    first, last = (int(x) for x in d["offsets"].rsplit("@", 1)[1].split("-"))
                    # by time, not by the stamp's text: one on a whole second has no fraction and
                    # would sort after the later stamps of that second
                    at = datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00"))
                    groups.append((at, d["partition"], first, last, d["accepted"]))
        kept: dict[int, list[tuple[int, int, int]]] = {}
        for _, partition, first, last, accepted in sorted(groups):
            mine = [g for g in kept.get(partition, []) if g[0] < first]  # anything from `first` on: redone
            kept[partition] = [*mine, (first, last, accepted)]
        for partition, mine in kept.items():
            starts = [first for first, _, _ in mine]
            assert starts == [0] + [last + 1 for _, last, _ in mine[:-1]], f"gap in partition {partition}: {mine}"
        return sum(accepted for mine in kept.values() for _, _, accepted in mine)

    async def incidents(self) -> list[tuple[str, tuple[str, ...]]]:
        records = await read_all(self.bootstrap, self.topics["incidents"], partition_count=PARTITIONS,
                                 isolation_level="read_committed")
        return [(d["id"], tuple(d["members"])) for d in (json.loads(r.value) for r in records)]

    async def assert_all_processed_once(self, expected: set[str], trades: int,
                                        incidents: set[tuple[str, tuple[str, ...]]] | None = None) -> None:
        """The anomalies topic (read committed) and Elasticsearch hold exactly `expected`, each once,
        the workers' committed offsets reached the end of every trades partition, and exactly
        `trades` valid trades were committed as judged (none lost, none judged twice). With
        `incidents`: the incidents topic (read committed) holds exactly those, each once."""
        seen = await self.wait_for(expected)
        twice = sorted({i for i in seen if seen.count(i) > 1})
        extra = set(seen) - expected
        if extra or twice:
            records = await read_all(self.bootstrap, self.topics["anomalies"], partition_count=PARTITIONS,
                                     isolation_level="read_committed")
            detail = [(r.partition, r.offset, json.loads(r.value)) for r in records
                      if json.loads(r.value)["id"] in extra | set(twice)]
            raise AssertionError(f"not in the embedded run: {sorted(extra)}; written twice: {twice}; {detail}")
        await self.wait(self.offsets_committed_to_the_end, 60, "committed offsets at the end offsets")
        assert self.committed_trades() == trades
        if incidents is not None:
            got = await self.incidents()  # committed with the offsets just seen at their end
            assert len(got) == len(set(got)), f"incidents written twice: {sorted(i for i in got if got.count(i) > 1)}"
            assert set(got) == incidents
        assert sorted(await self.wait_searchable(expected)) == sorted(expected)
        if incidents is not None:
            ids = {i for i, _ in incidents}
            found = await self.wait_searchable(ids, index=f"{self.es_prefix}.incidents-*")
            assert sorted(found) == sorted(ids)

    def searchable_ids(self, index: str | None = None) -> list[str]:
        """Every document id in the anomalies' indices (or `index`) (one per document: ids are unique
        per index)."""
        index = index or f"{self.es_prefix}-*"

        def search() -> list[str] | None:
            try:
                self.es.indices.refresh(index=index, allow_no_indices=True, ignore_unavailable=True)
                hits = self.es.search(index=index, query={"match_all": {}}, size=10_000, source=False,
                                      allow_no_indices=True, ignore_unavailable=True)["hits"]["hits"]
            except ApiError as exc:
                if exc.meta.status == 503:  # an index the indexer just created: its shard is starting
                    return None
                raise
            return [h["_id"] for h in hits] or [""]

        return [i for i in eventually(search, timeout=30, interval=0.5, what=f"a search of {index}") if i]

    def stop(self) -> None:
        stop_processes(self.workers)


@pytest_asyncio.fixture
async def stream(kafka_bootstrap, new_topic, suffix, tmp_path, es, es_url,  # type: ignore[no-untyped-def]
                 es_prefix) -> AsyncIterator[Stream]:
    topics = {"trades": await new_topic("trades", partitions=PARTITIONS),
              "anomalies": await new_topic("anomalies", partitions=PARTITIONS),
              "dlq": await new_topic("dlq", partitions=PARTITIONS),
              "incidents": await new_topic("incidents", partitions=PARTITIONS)}
    s = Stream(kafka_bootstrap, topics, tmp_path, suffix, es, es_url, es_prefix)
    yield s
    s.stop()


@pytest_asyncio.fixture
async def bare_stream(kafka_bootstrap, new_topic, suffix, tmp_path, es, es_url,  # type: ignore[no-untyped-def]
                      es_prefix) -> AsyncIterator[Stream]:
    """A Stream whose topics do not exist yet (`new_topic` still deletes whatever carries the suffix)."""
    topics = {name: f"it-{name}-{suffix}" for name in ("trades", "anomalies", "dlq", "incidents")}
    s = Stream(kafka_bootstrap, topics, tmp_path, suffix, es, es_url, es_prefix)
    yield s
    s.stop()


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    present = set(await admin.list_topics())
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([n for n in names if n in present])}


@pytest.mark.asyncio
async def test_streamed_anomalies_equal_the_embedded_replay(stream: Stream, market, embedded_ids,
                                                            embedded_incidents, embedded_records, es_url) -> None:
    stream.start_worker("w1", 16066)
    stream.start_indexer(16166)
    await stream.ingest(market)
    await stream.assert_all_processed_once(embedded_ids, trades=len(market), incidents=embedded_incidents)
    # What an analyst asks for: the top incidents, from Elasticsearch.
    result = await asyncio.to_thread(CliRunner().invoke, main, [
        "query", "--incidents", "--order", "score", "--limit", "3", "--json", "--es-url", es_url,
        "--index", f"{stream.es_prefix}.incidents"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert result.stderr.startswith(f"3 of {len(embedded_incidents)} incidents (the first 3 by --order score")
    assert [d["id"] for d in top] == [i for i, _ in sorted(((d["id"], d["score"]) for d in top),
                                                          key=lambda t: -t[1])]
    assert {d["id"] for d in top} <= {i for i, _ in embedded_incidents} and len(top) == 3
    # The tape around the top incident's peak member, from Elasticsearch: the embedded replay's.
    result = await asyncio.to_thread(CliRunner().invoke, main, ["show", top[0]["id"], "--json", "--es-url", es_url],
                                     env={"STOCKANOMALY_ES_INDEX_PREFIX": stream.es_prefix,
                                          "STOCKANOMALY_ES_INCIDENTS_PREFIX": f"{stream.es_prefix}.incidents"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    anomalies, incidents = embedded_records
    incident = incidents[top[0]["id"]]
    assert shown["kind"] == "incident" and shown["incident"]["members"] == list(incident.members)
    peak = anomalies[shown["anomaly"]["id"]]
    assert shown["before"] == [p.to_dict() for p in peak.context] and peak.id in incident.members
    assert shown["after"] == [p.to_dict() for p in incident.after[peak.id]] and shown["after"]
    # SIGTERM: both stop on their own, closing what they opened (aiohttp warns of any session left).
    stream.stop()
    assert [p.returncode for p in stream.workers] == [0, 0]
    for name in ("w1", "indexer"):
        output = (stream.workdir / f"{name}.log").read_text(errors="replace")
        assert "Unclosed" not in output and "Traceback" not in output, name


@pytest.mark.asyncio
async def test_worker_killed_mid_stream_resumes_without_loss_or_duplicates(stream: Stream, market,
                                                                           embedded_ids, embedded_incidents) -> None:
    pairs = as_messages(market)
    first = stream.start_worker("w1", 16067)
    stream.start_indexer(16167)
    await stream.produce(pairs[: len(pairs) // 2])

    async def some_output() -> bool:
        return len(await stream.anomaly_ids()) >= 3

    await eventually_async(some_output, timeout=180, interval=1.0, what="first anomalies before the kill")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    await stream.produce(pairs[len(pairs) // 2:])
    stream.start_worker("w1", 16067)  # same data directory, as a restarted container would have
    await stream.assert_all_processed_once(embedded_ids, trades=len(market), incidents=embedded_incidents)


@pytest.mark.asyncio
async def test_the_broker_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
        stream: Stream, market, embedded_ids, broker) -> None:
    pairs = as_messages(market)
    worker = stream.start_worker("w1", 16076)
    stream.start_indexer(16176)
    await stream.produce(pairs[: len(pairs) // 2])

    async def some_output() -> bool:
        return len(await stream.anomaly_ids()) >= 3

    await eventually_async(some_output, timeout=180, interval=1.0, what="first anomalies before the broker is killed")
    broker.kill()
    await asyncio.sleep(5.0)  # the broker stays down a while: clients retry against a closed port
    await asyncio.to_thread(broker.start)
    await stream.produce(pairs[len(pairs) // 2:])
    await stream.assert_all_processed_once(embedded_ids, trades=len(market))
    assert worker.poll() is None, f"the worker exited (code {worker.returncode}); log in {stream.workdir}"


STOP_BOUND_SECONDS = 30  # generous for CI: here it stops in 3-4 s (it took 64 s before the fix)


async def stopped_by_sigterm(worker: subprocess.Popen, log: Path) -> tuple[int, float, str]:
    """SIGTERM to `worker`: its exit code, the seconds it took to exit (within STOP_BOUND_SECONDS), its log."""
    worker.send_signal(signal.SIGTERM)
    started = asyncio.get_running_loop().time()
    try:
        rc = await asyncio.to_thread(worker.wait, STOP_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not stop within {STOP_BOUND_SECONDS} s of SIGTERM") from None
    return rc, asyncio.get_running_loop().time() - started, log.read_text(errors="replace")


@pytest.mark.asyncio
async def test_a_worker_stopped_while_the_broker_is_down_exits_at_once_and_its_successor_loses_nothing(
        stream: Stream, market, embedded_ids, broker) -> None:
    """SIGTERM during a broker outage (a rolling restart, a node drained): the worker used to wait
    mode's 60 s shutdown timeout for its consumer thread (aiokafka's consumer stop re-raised a
    cancelled fetch retry: adapters.faust.shutdown) and log two tracebacks; an orchestrator SIGKILLs
    long before (docker after 10 s, Kubernetes 30 s). Now it exits cleanly at once, saying in one line
    what it could not do."""
    half = len(market) // 2  # a multiple of as_messages' chunk: the same messages as the whole market's
    worker = stream.start_worker("w1", 16079)
    await stream.produce(as_messages(market[:half]))
    await stream.wait(stream.offsets_committed_to_the_end, 240, "the first half committed")
    assert stream.committed_trades() == half
    log = stream.workdir / "w1.log"
    broker.kill()
    # The worker's fetches fail (the retry the stop used to trip over).
    eventually(lambda: "Failed fetch messages" in log.read_text(errors="replace"), timeout=60, interval=0.5,
               what="the worker noticing the broker is gone")
    rc, took, output = await stopped_by_sigterm(worker, log)
    assert rc == 0, output[-3000:]  # as a stop with the broker up
    assert "Traceback" not in output, output[-5000:]
    [said] = [json.loads(line) for line in output.splitlines()
              if line.startswith("{") and '"event": "stopped_without_broker"' in line]
    assert said["level"] == "warning" and said["offsets"] == "every take processed was committed before the stop"
    print(f"stopped {took:.1f} s after SIGTERM")
    await asyncio.to_thread(broker.start)
    await stream.produce(as_messages(market[half:]))
    stream.start_worker("w1", 16079)  # the same data directory, as a restarted container would have
    seen = await stream.wait_for(embedded_ids)
    assert sorted(seen) == sorted(embedded_ids)  # each anomaly once (read committed), none missing or extra
    await stream.wait(stream.offsets_committed_to_the_end, 60, "committed offsets at the end offsets")
    assert stream.committed_trades() == len(market)  # the first half once, the rest once: nothing judged twice


@pytest.mark.asyncio
async def test_two_workers_share_partitions_and_state_follows_the_partition(stream: Stream, market,
                                                                          embedded_ids) -> None:
    pairs = as_messages(market)
    stream.start_worker("w1", 16068)
    stream.start_indexer(16168)
    await stream.produce(pairs[: len(pairs) // 3])

    async def some_output() -> bool:
        return len(await stream.anomaly_ids()) >= 2

    await eventually_async(some_output, timeout=180, interval=1.0, what="first anomalies before the rebalance")
    stream.start_worker("w2", 16069)
    # The rest a little at a time, so that w1 has takes in flight while the group rebalances.
    rest = pairs[len(pairs) // 3:]
    step = max(1, len(rest) // 30)
    for start in range(0, len(rest), step):
        await stream.produce(rest[start:start + step])
        await asyncio.sleep(1.0)  # pacing the producer, not waiting for a condition
    await stream.assert_all_processed_once(embedded_ids, trades=len(market))
    # Neither worker stopped on the rebalance, and both judged trades: the partitions were shared.
    assert all(p.poll() is None for p in stream.workers), f"a process exited; logs in {stream.workdir}"
    shares = {name: partitions_processed(stream.workdir / f"{name}.log") for name in ("w1", "w2")}
    assert all(shares.values()), f"the partitions were not shared: {shares} (logs in {stream.workdir})"


def partitions_processed(log: Path) -> set[int]:
    """Trades partitions a worker's log shows batches of."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return {json.loads(ln)["partition"] for ln in lines if ln.startswith("{") and '"event": "batch"' in ln}


@pytest.mark.asyncio
async def test_the_worker_owning_partitions_killed_its_state_comes_back_from_the_changelog(
        stream: Stream, market, embedded_ids, embedded_incidents) -> None:
    pairs = as_messages(market)
    workers = {"w1": stream.start_worker("w1", 16074), "w2": stream.start_worker("w2", 16075)}
    stream.start_indexer(16174)

    def owners() -> dict[str, set[int]]:
        return {name: partitions_processed(stream.workdir / f"{name}.log") for name in workers}

    # A little at a time until the group has settled and each worker judged trades of its partitions
    # (whoever joined first takes everything until the second one is in).
    sent, step = 0, len(pairs) // 40
    while sent < len(pairs) // 2 and not (all(owners().values()) and len(await stream.anomaly_ids()) >= 3):
        await stream.produce(pairs[sent:sent + step])
        sent += step
        await asyncio.sleep(2.0)  # pacing the producer, not waiting for a condition
    assert all(owners().values()), f"one worker never got a partition: {owners()} (logs in {stream.workdir})"
    victim = max(owners(), key=lambda name: len(owners()[name]))
    workers[victim].send_signal(signal.SIGKILL)
    workers[victim].wait(timeout=30)
    await stream.produce(pairs[sent:])
    # The survivor judges the rest of the victim's partitions against the state it restored: any
    # state lost would change which trades are anomalous (the ids), or miss them; open incidents lost
    # would split or drop incidents.
    await stream.assert_all_processed_once(embedded_ids, trades=len(market), incidents=embedded_incidents)
    survivor = next(name for name in workers if name != victim)
    assert partitions_processed(stream.workdir / f"{survivor}.log") == set().union(*owners().values())


def with_symbol(trades: np.ndarray, symbol: str) -> np.ndarray:
    out = trades.copy()
    out["symbol"] = symbol
    return out


def bad_records(like: np.ndarray) -> tuple[list[tuple[bytes | None, bytes]], set[str]]:
    """One malformed record of every kind, on a symbol of its own, and the reasons they must get."""
    def batch(**values: object) -> np.ndarray:
        rows = like[:1].copy()
        rows["symbol"] = "ZZZ"
        for k, v in values.items():
            rows[k] = v
        if "ts_event" in values:  # received as it happened (a print dated over a minute after is refused)
            rows["ts_recv"] = rows["ts_event"]
        return rows

    good = batch(ts_event=like["ts_event"][-1] + 10)
    older = batch(ts_event=like["ts_event"][0], sequence=99)
    records: list[tuple[bytes | None, bytes]] = [
        (b"ZZZ", b"{not json"),
        (b"ZZZ", json.dumps({"ts_event": 1, "size": 5}).encode()),  # no price
        (None, encode_batch("ZZZ", good)[1]),  # binary batch without its symbol key
        (b"ZZZ", b"STB1\x05\x00\x00\x00truncated"),
        encode_batch("ZZZ", batch(price=float("nan"))),
        encode_batch("ZZZ", batch(price=float("inf"))),
        encode_batch("ZZZ", batch(price=-1.0)),
        encode_batch("ZZZ", batch(size=0)),
        encode_batch("ZZZ", good),
        encode_batch("ZZZ", good),  # the same trade again
        encode_batch("ZZZ", older),  # earlier than what the symbol already had
        (b"ZZZ", b"[]"),
        (b"ZZZ", b"\x00" * 1_040_000),  # over the producer's 1,000,000-byte limit: dead-lettered cut short
    ]
    reasons = {"bad_json", "missing_field", "missing_key", "bad_encoding", "bad_price", "bad_size",
               "duplicate", "out_of_order", "empty_batch"}
    return records, reasons


@pytest.mark.asyncio
async def test_malformed_records_go_to_the_dead_letter_topic_and_the_rest_is_processed(
        stream: Stream, market, embedded_ids) -> None:
    bad, reasons = bad_records(market)
    metrics_port = free_port()
    stream.start_worker("w1", 16070, metrics_port)
    # The bad records ahead of the market's messages, on partitions they share: a bad one that cost
    # its neighbours would show in the ids and in the count of trades judged.
    await stream.produce(bad + as_messages(market))
    # And a message of two symbols sent where only one of them belongs (as a producer partitioning
    # by something else than the symbol would): the stray trade is a dead letter, its neighbour judged.
    home = partition_of("ZZZ", PARTITIONS)
    stray = next(s for s in (f"ZZ{c}" for c in "ABCDEFGHIJ") if partition_of(s, PARTITIONS) != home)
    later = market[:1].copy()
    later["ts_event"] = later["ts_recv"] = market["ts_event"][-1] + 20
    await stream.produce([(b"ZZZ", encode_multi([("ZZZ", with_symbol(later, "ZZZ")),
                                                (stray, with_symbol(later, stray))]))], partition=home)
    reasons = reasons | {"wrong_partition"}
    seen = await stream.wait_for(embedded_ids)
    assert sorted(seen) == sorted(embedded_ids)
    await eventually_async(stream.offsets_committed_to_the_end, timeout=60, interval=1.0,
                           what="committed offsets at the end offsets")
    assert stream.committed_trades() == len(market) + 2  # and ZZZ's two good trades
    letters: list = []

    async def all_reasons() -> bool:
        letters[:] = await read_all(stream.bootstrap, stream.topics["dlq"], partition_count=PARTITIONS,
                                    isolation_level="read_committed")
        return {dict(r.headers)["reason"].decode() for r in letters} >= reasons

    await eventually_async(all_reasons, timeout=60, interval=1.0, what=f"dead letters {sorted(reasons)}")
    assert len(letters) == len(bad) - 1 + 1  # every bad record once (the first `good` is fine), the stray
    # Each carries its own message: key, topic[partition]@offset (all different), and its bytes.
    origins = [dict(r.headers)["origin"].decode() for r in letters]
    assert len(set(origins)) == len(letters) and all(o.startswith(f"{stream.topics['trades']}[") for o in origins)
    assert {r.key for r in letters} == {b"ZZZ", None, stray.encode()}
    by_reason = {dict(r.headers)["reason"].decode(): r for r in letters}
    assert by_reason["bad_json"].value == b"{not json"
    assert dict(by_reason["bad_encoding"].headers).get("truncated") in (None, b"1040000")
    oversized = [r for r in letters if dict(r.headers).get("truncated") == b"1040000"]
    assert len(oversized) == 1 and 0 < len(oversized[0].value) < 1_000_000
    refused_trade = by_reason["bad_price"]  # refused by the engine: the trade alone, re-encoded
    assert refused_trade.value.startswith(b"STB1\x01\x00\x00\x00")
    assert by_reason["wrong_partition"].key == stray.encode()  # the stray trade alone, keyed by its symbol
    assert dict(by_reason["wrong_partition"].headers)["origin"].decode().startswith(f"{stream.topics['trades']}[{home}]@")
    # Every letter counted once under its reason, the stray included (what the dead-letter alerts read).
    counted = {dict(labels)["reason"]: value for (name, labels), value in scrape(metrics_port).items()
               if name == "stockanomaly_dead_letters_total"}
    published: dict[str, int] = {}
    for r in letters:
        reason = dict(r.headers)["reason"].decode()
        published[reason] = published.get(reason, 0) + 1
    assert {reason: n for reason, n in counted.items() if n} == published
    # And logged in one line per batch that had any, with the count (not a line per letter).
    events = [json.loads(line) for line in (stream.workdir / "w1.log").read_text().splitlines()
              if line.startswith("{")]
    batches = [e for e in events if e.get("event") == "dead_letters"]
    assert sum(e["count"] for e in batches) == len(letters) and len(batches) < len(letters)


def worker_gauges(port: int) -> dict[str, dict[str, float]]:
    """A worker's stockanomaly_* gauges on its /metrics: name -> partition label ('' without) -> value."""
    out: dict[str, dict[str, float]] = {}
    try:
        samples = scrape(port)
    except OSError:  # not serving yet (the worker is starting)
        return out
    for (name, labels), value in samples.items():
        if name in ("stockanomaly_consumer_lag", "stockanomaly_partition_stalled_seconds",
                    "stockanomaly_event_loop_blocked_seconds", "stockanomaly_trades_processed_total"):
            out.setdefault(name, {})[dict(labels).get("partition", "")] = value
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["await", "block"])
async def test_a_stuck_worker_says_so_on_its_metrics_while_its_partitions_wait(stream: Stream, market,
                                                                               how: str) -> None:
    """A worker alive but stuck in a take holds its partitions: no other worker takes them over and
    nothing it owns is judged. Its /metrics must show it (the alert StockanomalyWorkerStuck reads
    them): the lag growing with what is sent, the seconds its partitions have waited without
    progress, and, when the take blocks the event loop itself, how long that has been blocked."""
    metrics_port = free_port()
    env = dict(stream.env, STOCKANOMALY_DATA_DIR=str(stream.workdir / "w1-data"), STOCKANOMALY_WORKER_WEB_PORT="16078",
               STOCKANOMALY_METRICS_PORT=str(metrics_port), STUCK_SYMBOL="STUCK", STUCK_HOW=how,
               PYTHONPATH=str(Path(__file__).parent))
    worker = stream._start("stuck_worker_app", "w1", env)
    first, rest = market[:40_000], market[40_000:]
    await stream.produce(as_messages(first))

    def healthy() -> dict[str, dict[str, float]] | None:
        gauges = worker_gauges(metrics_port)
        lags = gauges.get("stockanomaly_consumer_lag", {})
        done = gauges.get("stockanomaly_trades_processed_total", {}).get("", 0)
        return gauges if done == len(first) and len(lags) == PARTITIONS and not any(lags.values()) else None

    gauges = eventually(healthy, timeout=240, interval=1.0, what="the first trades processed, every lag 0")
    await stream.wait(stream.offsets_committed_to_the_end, 60, "the first trades committed")
    assert set(gauges["stockanomaly_partition_stalled_seconds"].values()) == {0.0}
    assert gauges["stockanomaly_event_loop_blocked_seconds"][""] < 5

    stuck = with_symbol(rest[:1], "STUCK")
    await stream.produce([encode_batch("STUCK", stuck)])
    stuck_partition = str(partition_of("STUCK", PARTITIONS))
    try:
        if how == "await":
            def stalled_for(seconds: float) -> dict[str, dict[str, float]] | None:
                gauges = worker_gauges(metrics_port)
                waited = gauges.get("stockanomaly_partition_stalled_seconds", {}).get(stuck_partition, 0)
                return gauges if waited >= seconds else None

            before = sum(eventually(lambda: stalled_for(1), timeout=60, interval=1.0,
                                    what="the stuck take's partition stalled")["stockanomaly_consumer_lag"].values())
            # Sent once the worker is stuck: none of these can be processed, and the lag must count them.
            await stream.produce(later := as_messages(rest[1:]))

            def waiting() -> dict[str, dict[str, float]] | None:
                gauges = stalled_for(15)
                lag = sum(gauges["stockanomaly_consumer_lag"].values()) if gauges else 0
                return gauges if lag >= before + len(later) else None

            gauges = eventually(waiting, timeout=120, interval=1.0, what="the lag and the stall of a stuck worker")
            assert gauges["stockanomaly_event_loop_blocked_seconds"][""] < 5  # the loop itself is fine
        else:
            eventually(lambda: worker_gauges(metrics_port).get("stockanomaly_event_loop_blocked_seconds", {}).get("", 0)
                       >= 15, timeout=120, interval=1.0, what="the blocked seconds of a worker whose loop is blocked")
        assert worker.poll() is None  # stuck, not gone: its partitions are not handed to anyone
    finally:
        worker.kill()  # a stuck worker does not answer SIGTERM
        worker.wait(timeout=30)


OUTAGE_SECONDS = 200  # longer than any retry budget a sink could have had


@pytest.mark.asyncio
async def test_an_elasticsearch_outage_stalls_only_the_indexer_and_loses_nothing(stream: Stream, market,
                                                                                 embedded_ids, es_url) -> None:
    gate = GatedProxy(es_url)
    gate.open()
    try:
        pairs = as_messages(market)
        stream.start_worker("w1", 16071)
        stream.start_indexer(16171, es_url=gate.url)
        await stream.produce(pairs[: len(pairs) // 4])

        async def some_indexed() -> bool:
            return len(stream.searchable_ids()) >= 1

        await eventually_async(some_indexed, timeout=180, interval=1.0, what="first anomalies indexed")
        gate.cut()
        cut_at = asyncio.get_running_loop().time()
        await stream.produce(pairs[len(pairs) // 4:])
        # Elasticsearch unreachable: the worker still processes and commits everything.
        seen = await stream.wait_for(embedded_ids)
        assert sorted(seen) == sorted(embedded_ids)
        await eventually_async(stream.offsets_committed_to_the_end, timeout=60, interval=1.0,
                               what="worker offsets committed while Elasticsearch is down")
        assert stream.committed_trades() == len(market)
        assert set(stream.searchable_ids()) < embedded_ids  # the rest waits for Elasticsearch

        async def outage_over() -> bool:
            return asyncio.get_running_loop().time() - cut_at >= OUTAGE_SECONDS

        await eventually_async(outage_over, timeout=OUTAGE_SECONDS + 30, interval=5.0, what="the outage")
        assert all(p.poll() is None for p in stream.workers), "worker or indexer died during the outage"
        gate.open()
        assert sorted(await stream.wait_searchable(embedded_ids, timeout=180)) == sorted(embedded_ids)
    finally:
        gate.close()


@pytest.mark.asyncio
async def test_an_indexer_stopped_during_an_elasticsearch_outage_stops_at_once_and_commits_nothing(
        stream: Stream, embedded_records, kafka_admin, es_url) -> None:
    """docker stop (SIGTERM) while the indexer retries a take against an Elasticsearch that is down:
    it used to wait for the take until Elasticsearch came back (minutes, then SIGKILL)."""
    anomalies = sorted(embedded_records[0].values(), key=lambda a: a.id)[:3]
    producer = AIOKafkaProducer(bootstrap_servers=stream.bootstrap)
    await producer.start()
    try:
        for a in anomalies:
            await producer.send_and_wait(stream.topics["anomalies"], key=a.symbol.encode(),
                                         value=json.dumps(a.to_dict()).encode())
    finally:
        await producer.stop()
    gate = GatedProxy(es_url)  # refusing: Elasticsearch down from the start
    try:
        indexer = stream.start_indexer(16173, es_url=gate.url)
        log = stream.workdir / "indexer.log"
        eventually(lambda: "elasticsearch_bulk_retry" in log.read_text(errors="replace"), timeout=120,
                   interval=0.5, what=f"the indexer retrying its take ({log})")
        indexer.send_signal(signal.SIGTERM)
        assert indexer.wait(timeout=30) == 0, log.read_text(errors="replace")[-3000:]
        group = f"{stream.env['STOCKANOMALY_APP_ID']}-indexer"
        tps = [TopicPartition(stream.topics["anomalies"], p) for p in range(PARTITIONS)]
        committed = await kafka_admin.list_consumer_group_offsets(group, partitions=tps)
        assert all(committed[tp].offset in (-1, 0) for tp in committed)  # the take was not committed
        gate.open()
        stream.start_indexer(16174, es_url=gate.url)  # its successor indexes the take
        assert sorted(await stream.wait_searchable({a.id for a in anomalies}, timeout=120)) == [a.id for a in anomalies]
    finally:
        gate.close()


@pytest.mark.asyncio
async def test_two_workers_started_before_the_topics_exist_create_them_and_lose_nothing(
        bare_stream: Stream, kafka_admin, market, embedded_ids) -> None:
    """Both start on a broker without their topics or table changelogs: the changelogs exist before
    either consumer joins, so every assignment includes them and a partition that moves to the
    second worker is restored there from its changelog (before, Faust's assignor left the
    just-created changelogs out, and a moved partition started over from empty state)."""
    stream = bare_stream
    app_id = stream.env["STOCKANOMALY_APP_ID"]
    changelogs = [f"{app_id}-{table}-changelog" for table in ("symbol-state", "pool-state", "tape-state",
                                                              "incident-state")]
    names = [*stream.topics.values(), *changelogs]
    assert await partition_counts(kafka_admin, names) == {}  # the broker creates none on its own either
    stream.start_worker("w1", 16072)
    stream.start_worker("w2", 16077)
    stream.start_indexer(16172)

    async def created() -> bool:
        return await partition_counts(kafka_admin, names) == dict.fromkeys(names, PARTITIONS)

    await eventually_async(created, timeout=120, interval=0.5, what=f"{names} with {PARTITIONS} partitions each")
    for changelog in changelogs:
        assert (await topic_config(kafka_admin, changelog))["cleanup.policy"] == "compact"
    await stream.produce(as_messages(market))
    await stream.assert_all_processed_once(embedded_ids, trades=len(market))
    for name in ("w1", "w2"):
        log = (stream.workdir / f"{name}.log").read_text(errors="replace")
        assert "Ignoring missing topic" not in log, f"an assignment without a changelog ({name}.log)"


@pytest.mark.asyncio
async def test_a_worker_refuses_a_topic_with_another_partition_count_in_one_line(
        bare_stream: Stream, new_topic) -> None:
    stream = bare_stream
    stream.topics["trades"] = await new_topic("trades", partitions=1)  # as an auto-creating broker would
    worker = stream.start_worker("w1", 16073)
    assert worker.wait(timeout=120) != 0
    output = (stream.workdir / "w1.log").read_text()
    assert "Traceback" not in output
    [line] = [ln for ln in output.splitlines() if "partitions" in ln]
    assert line == (f"stockanomaly worker: topic partitions differ from the configured {PARTITIONS} "
                    f"(STOCKANOMALY_PARTITIONS, or a command's --partitions): '{stream.topics['trades']}' has 1; "
                    "configure that count, or recreate the topics")


@pytest.mark.asyncio
async def test_the_indexer_deletes_the_daily_indices_that_outlived_the_retention(stream: Stream) -> None:
    prefix = stream.es_prefix
    dated = [f"{prefix}-2024.01.02", f"{prefix}.incidents-2024.01.02"]
    kept = [f"{prefix}-archive", f"{prefix}x-2024.01.02"]  # not the daily names of its prefixes
    for name in dated + kept:
        stream.es.indices.create(index=name)
    # A retention of 3 seconds, checked every second: the indices above are older than that soon.
    indexer = stream.start_indexer(16177, STOCKANOMALY_ES_RETENTION_DAYS=str(3 / 86_400),
                                   STOCKANOMALY_ES_RETENTION_CHECK_SECONDS="1")
    eventually(lambda: not any(stream.es.indices.exists(index=name) for name in dated), timeout=90, interval=0.5,
               what=f"{dated} deleted")
    assert all(stream.es.indices.exists(index=name) for name in kept)
    assert indexer.poll() is None
    log = (stream.workdir / "indexer.log").read_text()
    assert "Traceback" not in log




def log_events(log: Path, *events: str) -> list[dict[str, Any]]:
    """The structured lines of these events in a worker's log, in order."""
    marks = tuple(f'"event": "{event}"' for event in events)
    written = log.read_text(errors="replace").split("\n")[:-1]  # the last one may be half written
    return [json.loads(line) for line in written if line.startswith("{") and any(mark in line for mark in marks)]


def take_in_delivery(log: Path) -> list[dict[str, Any]]:
    """The `batch` lines of the take in hand if it is still delivering (its groups' outputs and state
    sent, not all acknowledged: no `take_delivered` since the last `take_committed`), else none."""
    lines = log_events(log, "batch", "take_delivered", "take_committed")
    ends = [i for i, line in enumerate(lines) if line["event"] == "take_committed"]
    in_hand = lines[ends[-1] + 1:] if ends else lines
    if any(line["event"] == "take_delivered" for line in in_hand):
        return []
    return in_hand


STOP_GRACE_SECONDS = 5.0  # STOCKANOMALY_STOP_GRACE's default
PAUSE_ATTEMPTS = 8  # a pause lands in a take's commit about once in five (its work ~50 ms, its commit ~13 ms)


async def a_take_caught_delivering(log: Path, broker: Any) -> list[dict[str, Any]]:
    """Pause the broker (SIGSTOP) while a take of the worker writing `log` is delivering; the `batch`
    lines of that take. A take's `batch` line comes once its group's outputs and state were sent,
    before any of them is awaited: paused right then, what the take sent, and what it still has to
    send, waits on the broker. If the pause came too late (the take's `take_delivered` line is there:
    its commit is what waits), the broker goes on until the next take has sent something."""
    for _ in range(PAUSE_ATTEMPTS):
        committed_takes = len(log_events(log, "take_committed"))
        eventually(lambda: take_in_delivery(log), timeout=180, interval=0.005, what="a take sending")
        broker.pause()
        in_hand = take_in_delivery(log)
        if in_hand:
            return in_hand
        broker.resume()
        eventually(lambda: len(log_events(log, "take_committed")) > committed_takes, timeout=60,
                   what="the take caught committing committed")
    raise AssertionError(f"no pause in {PAUSE_ATTEMPTS} caught a take delivering")


async def a_worker_caught_delivering(stream: Stream, market: np.ndarray, broker: Any,
                                     port: int) -> tuple[subprocess.Popen, Path, list[dict[str, Any]], int]:
    """A worker on a backlog whose broker was paused while a take was delivering: the worker, its log,
    the take in hand and how many takes it had committed by then."""
    stream.env["STOCKANOMALY_TAKE_MAX"] = "16"  # a backlog of ~160 messages is 10 takes or more
    await stream.produce(as_messages(market))
    worker = stream.start_worker("w1", port)
    log = stream.workdir / "w1.log"
    in_hand = await a_take_caught_delivering(log, broker)
    return worker, log, in_hand, len(log_events(log, "take_committed"))


def the_take_given_up(log: Path, in_hand: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker's one `take_given_up` line, checked against the take `in_hand` when it was caught."""
    [given_up] = log_events(log, "take_given_up")
    assert given_up["level"] == "warning" and given_up["stage"] == "delivering", given_up
    assert given_up["successor"] == "processes it again from the last committed offsets"
    # What it gave up holds every group the log shows in hand (and any whose sends it was still making).
    assert {line["offsets"] for line in in_hand} <= set(given_up["offsets"])
    assert given_up["messages"] == sum(int(last) - int(first) + 1 for first, last in
                                       (r.rsplit("@", 1)[1].split("-") for r in given_up["offsets"]))
    return given_up


async def its_successor_redoes_the_take(stream: Stream, given_up: dict[str, Any], embedded_ids: set[str],
                                        trades: int, port: int) -> None:
    """With the broker back: nothing of the take given up was committed, and a successor on the same
    data directory judges it again, each trade once, each anomaly once."""
    # No committed offset of the group reaches into the take.
    async def group_offsets() -> tuple[dict[TopicPartition, Any]] | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stream.bootstrap)
        try:
            await admin.start()
            return (await admin.list_consumer_group_offsets(stream.env["STOCKANOMALY_APP_ID"]),)
        except KafkaError:  # a broker just resumed or restarted: no group coordinator for a moment
            return None
        finally:
            await admin.close()

    [committed] = await eventually_async(group_offsets, timeout=60, interval=0.5,
                                         what="the group's committed offsets, the broker back")
    firsts = {int(r.split("[", 1)[1].split("]", 1)[0]): int(r.rsplit("@", 1)[1].split("-")[0])
              for r in given_up["offsets"]}
    assert all(meta.offset <= firsts[tp.partition] for tp, meta in committed.items()
               if tp.topic == stream.topics["trades"] and tp.partition in firsts), committed
    stream.start_worker("w1", port)  # the same data directory, as a restarted container would have
    seen = await stream.wait_for(embedded_ids)
    assert sorted(seen) == sorted(embedded_ids)  # each anomaly once (read committed), none missing or extra
    await stream.wait(stream.offsets_committed_to_the_end, 60, "committed offsets at the end offsets")
    assert stream.committed_trades() == trades  # the take given up was judged again, and counted once


@pytest.mark.asyncio
async def test_a_worker_stopped_with_a_take_caught_mid_delivery_gives_it_up_and_its_successor_redoes_it(
        stream: Stream, market, embedded_ids, broker) -> None:
    """SIGTERM while a take's sends wait on a broker that is away: the stop waited for them (Faust
    waits for the messages in hand, the producer retries an idempotent batch for 20 minutes) until an
    orchestrator's SIGKILL. Now the take is given up once the stop's grace has passed, uncommitted,
    in one line; the worker exits, and its successor processes the take again."""
    worker, log, in_hand, committed_before = await a_worker_caught_delivering(stream, market, broker, 19611)
    broker.kill()  # then the broker is gone for good, as in an outage
    rc, took, output = await stopped_by_sigterm(worker, log)
    assert rc == 0, output[-3000:]
    assert "Traceback" not in output and "never retrieved" not in output, output[-5000:]
    assert len(log_events(log, "take_committed")) == committed_before  # the take in hand never committed
    given_up = the_take_given_up(log, in_hand)
    assert took >= STOP_GRACE_SECONDS  # the take had its grace
    print(f"stopped {took:.1f} s after SIGTERM, {given_up['messages']} messages given up")
    await asyncio.to_thread(broker.start)
    await its_successor_redoes_the_take(stream, given_up, embedded_ids, len(market), 19611)


HUNG_STOP_SLACK_SECONDS = 10.0  # past the grace, generous for CI: here it stops 9.7-10.2 s after the SIGTERM (97 s before)


@pytest.mark.asyncio
async def test_a_worker_stopped_with_the_broker_hung_mid_delivery_exits_after_its_grace_and_its_successor_redoes_the_take(
        stream: Stream, market, embedded_ids, broker) -> None:
    """SIGTERM while a take's sends wait on a broker that is hung (SIGSTOPped: it holds every
    connection open and answers nothing, as one cut off without a reset does). The take is given up
    after the grace as with a broker that is down, but then the consumer's and producers' stops
    waited on the broker too (their requests' 90 s timeout, cut by mode's 60 s for the consumer's
    thread, with a traceback). Now each gives up on the broker within the grace's rest, says so in
    one line, and the worker exits with code 0; the broker resumed, its successor redoes the take."""
    worker, log, in_hand, committed_before = await a_worker_caught_delivering(stream, market, broker, 19612)
    rc, took, output = await stopped_by_sigterm(worker, log)  # the broker still hung
    assert rc == 0, output[-3000:]
    assert "Traceback" not in output and "never retrieved" not in output, output[-5000:]
    assert STOP_GRACE_SECONDS <= took <= STOP_GRACE_SECONDS + HUNG_STOP_SLACK_SECONDS, took
    assert len(log_events(log, "take_committed")) == committed_before  # the take in hand never committed
    given_up = the_take_given_up(log, in_hand)
    # The consumer's stop (its LeaveGroup) waited on the broker too: abandoned, in one line.
    [said] = log_events(log, "stopped_without_broker")
    assert said["level"] == "warning" and said["abandoned_after_s"] <= HUNG_STOP_SLACK_SECONDS, said
    assert said["broker"].startswith("did not answer the consumer's stop"), said
    assert said["offsets"] == "the take in hand was given up (take_given_up): its successor processes it again"
    print(f"stopped {took:.1f} s after SIGTERM with the broker hung, {given_up['messages']} messages given up")
    broker.resume()
    await its_successor_redoes_the_take(stream, given_up, embedded_ids, len(market), 19612)
