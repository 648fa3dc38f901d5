"""The compose stack run for real: docker-compose.yml with docker-compose.host.yml (the images
`scripts/services.sh images` builds, host networking), the project's image built from its
Dockerfile, `ingest` -> two scaled workers -> indexer -> Elasticsearch equal to the embedded
replay of the same files (a real NVDA day and a small generated market, so that both workers get
partitions with trades), topics of the workers' partition count, Prometheus scraping both workers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NASDAQ = REPO.parent / "shared" / "data" / "nasdaq"
DAY = NASDAQ / "xnas-itch-20250505.trades.csv.zst"
PARTITIONS = 4
ARTIFACTS = REPO / "test-artifacts"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


# The host ports of docker-compose.host.yml (its variables, same defaults).
KAFKA = f"127.0.0.1:{_port('STOCKANOMALY_COMPOSE_KAFKA_PORT', 29092)}"
ES = f"http://127.0.0.1:{_port('STOCKANOMALY_COMPOSE_ES_PORT', 29200)}"
PROMETHEUS = f"http://127.0.0.1:{_port('STOCKANOMALY_COMPOSE_PROMETHEUS_PORT', 29090)}"
STACK_PORTS = [19092, _port("STOCKANOMALY_COMPOSE_KAFKA_PORT", 29092),
               _port("STOCKANOMALY_COMPOSE_KAFKA_CONTROLLER_PORT", 29093),
               _port("STOCKANOMALY_COMPOSE_ES_PORT", 29200), _port("STOCKANOMALY_COMPOSE_ES_TRANSPORT_PORT", 29300),
               _port("STOCKANOMALY_COMPOSE_PROMETHEUS_PORT", 29090),
               _port("STOCKANOMALY_COMPOSE_ALERTMANAGER_PORT", 29094),
               *range(_port("STOCKANOMALY_COMPOSE_WORKER_METRICS_PORT", 29100),
                      _port("STOCKANOMALY_COMPOSE_WORKER_METRICS_PORT", 29100) + 4),
               _port("STOCKANOMALY_COMPOSE_INDEXER_METRICS_PORT", 29110)]


def run(argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion within `timeout`; its output is kept for the failure message."""
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    print(f"[compose-test] {' '.join(argv[:6])}... exit {proc.returncode} in {took:.1f}s", file=sys.stderr)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def port_taken(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def trades_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real day (copied into a temporary folder: the stack mounts one folder) and a generated
    market of 6 symbols on other partitions than NVDA's, ingested and replayed together."""
    if not DAY.exists():
        pytest.skip(f"{DAY} is not beside the repository")
    folder = tmp_path_factory.mktemp("compose-trades")
    shutil.copy(DAY, folder / DAY.name)
    run([str(REPO / ".venv" / "bin" / "stockanomaly"), "generate", str(folder / "generated.dbn.zst"),
         "--symbols", "6", "--trades", "60000", "--date", "2025-05-05", "--seed", "7"], timeout=300)
    (folder / "generated.labels.json").unlink()  # only trade files in the folder ingest reads
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def embedded(trades_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("compose-replay") / "anomalies.jsonl"
    env = dict(os.environ, STOCKANOMALY_PARTITIONS=str(PARTITIONS), STOCKANOMALY_THRESHOLDS="")
    run([str(REPO / ".venv" / "bin" / "stockanomaly"), "replay", str(trades_dir), "--out", str(out)],
        timeout=600, env=env)
    anomalies = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert any(a["symbol"] == "NVDA" for a in anomalies), "the real day gives anomalies"
    return anomalies


@pytest.fixture(scope="module")
def stack(docker_engine: str, trades_dir: Path) -> Iterator[dict[str, str]]:
    """Images built (cached), then the stack up with two workers; logs kept when a test failed,
    everything (containers, volumes) removed at the end."""
    busy = [p for p in STACK_PORTS if port_taken(p)]
    assert not busy, f"ports {busy} are taken: another compose stack or service runs (docker ps)"
    project = f"stockanomaly-it-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, COMPOSE_PROJECT_NAME=project, STOCKANOMALY_TRADES_DIR=str(trades_dir),
               STOCKANOMALY_INGEST_ARGS="/data", STOCKANOMALY_PARTITIONS=str(PARTITIONS))
    compose = ["docker-compose", "-f", "docker-compose.yml", "-f", "docker-compose.host.yml"]
    timings: dict[str, float] = {}
    started = time.monotonic()
    run(["bash", "scripts/services.sh", "images"], timeout=1800)
    timings["infra_images_s"] = time.monotonic() - started
    started = time.monotonic()
    run([*compose, "build", "worker"], timeout=1200, env=env)  # the project's Dockerfile
    timings["app_image_s"] = time.monotonic() - started
    try:
        started = time.monotonic()
        run([*compose, "up", "-d", "--no-build", "--scale", "worker=2"], timeout=600, env=env)
        timings["up_s"] = time.monotonic() - started
        yield {"project": project, "env": env, "timings": timings}  # type: ignore[misc]
    finally:
        logs = subprocess.run([*compose, "logs", "--no-color", "--tail=200"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "compose-stack.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([*compose, "down", "-v", "--remove-orphans", "--timeout", "20"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)


def containers(project: str) -> dict[str, dict]:
    """The project's containers by name: state and exit code (docker inspect)."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                         capture_output=True, text=True, check=True).stdout.split()
    found = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                      check=True).stdout)
    return {c["Name"].lstrip("/"): c["State"] for c in found}


def es_ids() -> list[str]:
    try:
        body = get_json(f"{ES}/stockanomaly-anomalies-*/_search?size=10000&_source=false"
                        "&ignore_unavailable=true&allow_no_indices=true")
    except urllib.error.HTTPError as exc:
        if exc.code == 503:  # an index the indexer has just created: its shard is still starting
            return []
        raise
    return [hit["_id"] for hit in body["hits"]["hits"]]


async def partition_counts() -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        described = await admin.describe_topics(["trades", "anomalies", "incidents", "trades.dlq"])
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


@pytest.mark.asyncio
async def test_the_stack_streams_a_real_day_through_two_workers_into_elasticsearch(stack, embedded) -> None:
    project = stack["project"]
    # The topics service created every topic with the partition count the workers expect.
    topics_job = next(s for name, s in containers(project).items() if "_topics_" in name)
    assert (topics_job["Status"], topics_job["ExitCode"]) == ("exited", 0)
    assert await partition_counts() == {"trades": PARTITIONS, "anomalies": PARTITIONS,
                                        "incidents": PARTITIONS, "trades.dlq": PARTITIONS}

    # ingest -> workers -> anomalies topic -> indexer -> Elasticsearch: exactly the replay's ids.
    want = sorted(a["id"] for a in embedded)
    started = time.monotonic()
    found: list[str] = []

    def indexed_all() -> bool:
        found[:] = es_ids()
        # As many as the replay's (or more) is the end: the assertions below name any difference.
        return len(found) >= len(want)

    try:
        eventually(indexed_all, timeout=600, interval=2, what="Elasticsearch holding the replay's anomalies")
    finally:
        print(f"[compose-test] {len(found)} of {len(want)} anomalies searchable "
              f"{time.monotonic() - started:.1f}s after up", file=sys.stderr)
    assert len(found) == len(set(found)), "one document per anomaly id"
    assert sorted(found) == want, (f"missing {sorted(set(want) - set(found))}, "
                                   f"extra {sorted(set(found) - set(want))}")
    nvda = sorted(a["id"] for a in embedded if a["symbol"] == "NVDA")
    assert set(nvda) <= set(found) and len(nvda) >= 5, "the real day's anomalies are all there"

    state = containers(project)
    ingest = next(s for name, s in state.items() if "_ingest_" in name)
    assert (ingest["Status"], ingest["ExitCode"]) == ("exited", 0)
    workers = [s for name, s in state.items() if "_worker_" in name]
    assert len(workers) == 2 and all(w["Status"] == "running" for w in workers)

    # Prometheus scrapes both workers (each on its own port of the span); the trades partitions are
    # split between them (each reports the lag of the partitions it owns, disjoint, all four
    # covered, all caught up), and together they processed every trade. Which worker processed how
    # many is not asserted: a worker that joins the group late may find its partitions already
    # drained by the first one, which is correct behaviour.
    def both_scraped() -> list[dict] | None:
        targets = get_json(f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        up = [t for t in targets if t["labels"]["job"] == "stockanomaly-worker" and t["health"] == "up"]
        return up if len(up) == 2 else None

    up = eventually(both_scraped, timeout=120, interval=2, what="Prometheus scraping two workers")
    total_trades = stack_trades(stack)

    def query(expr: str) -> list[dict]:
        return get_json(f"{PROMETHEUS}/api/v1/query?query={urllib.request.quote(expr)}")["data"]["result"]

    latest: list[dict] = []

    def shared_and_done() -> bool:
        processed = {r["metric"]["instance"]: float(r["value"][1])
                     for r in query('stockanomaly_trades_processed_total{job="stockanomaly-worker"}')}
        owned: dict[str, dict[int, float]] = {}
        for r in query('stockanomaly_consumer_lag{job="stockanomaly-worker"}'):
            owned.setdefault(r["metric"]["instance"], {})[int(r["metric"]["partition"])] = float(r["value"][1])
        partitions = [p for lags in owned.values() for p in lags]
        latest[:] = [{"processed": processed, "lag": owned}]
        return (len(processed) == 2 and sum(processed.values()) >= total_trades and len(owned) == 2
                and sorted(partitions) == list(range(PARTITIONS))
                and not any(lag for lags in owned.values() for lag in lags.values()))

    try:
        eventually(shared_and_done, timeout=120, interval=2,
                   what="both workers sharing the partitions and every trade processed (Prometheus)")
    finally:
        print(f"[compose-test] {total_trades} trades ingested; last seen in Prometheus {latest}", file=sys.stderr)
    seen = latest[0]
    assert {t["labels"]["instance"] for t in up} == set(seen["processed"]) == set(seen["lag"])
    print(f"[compose-test] timings {stack['timings']}", file=sys.stderr)
    # Both workers ran on the kernels compiled into the image: neither compiled (and so restarted) at start.
    worker_logs = service_logs(stack, "worker")
    assert '"anomaly"' in worker_logs and "kernels_compiled" not in worker_logs


def service_logs(stack: dict, service: str) -> str:
    compose = ["docker-compose", "-f", "docker-compose.yml", "-f", "docker-compose.host.yml"]
    return subprocess.run([*compose, "logs", "--no-color", service], cwd=REPO, env=stack["env"],
                          capture_output=True, text=True, timeout=60).stdout


def stack_trades(stack: dict) -> int:
    """The trades ingest reported sending (its last log line: `ingested N trades ...`)."""
    logs = service_logs(stack, "ingest")
    line = next(line for line in reversed(logs.splitlines()) if "ingested " in line)
    return int(line.split("ingested ", 1)[1].split()[0].replace(",", ""))
