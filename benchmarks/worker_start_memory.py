"""A worker's resident memory from its start: once it owns its partitions, after a small ingest, and idle
after it; with its numba kernels loaded from the cache, or compiled at start (--cold).

Needs the local Kafka (`bash scripts/services.sh up kafka`). Each run gets fresh topics, consumer group
and data directory (a uuid app id; the topics are deleted at the end), and starts one worker
(`faust -A entrypoints.worker worker -l info`, as the Dockerfile runs it). It is ready when its
/metrics show `stockanomaly_consumer_lag` for every partition; then a generated market (--symbols,
--trades, --seed) goes in through `stockanomaly ingest --pace max`, and the worker is measured again
once its lag is 0 everywhere, and after --idle seconds more. Memory is read from /proc/PID/status:
VmRSS, VmHWM, RssAnon, RssFile (MiB). With --cold every run gets an empty NUMBA_CACHE_DIR of its own,
so its kernels are compiled at start (the repository's own cache is left alone). A worker that
compiled execs itself once to run on the cache it wrote (`kernels_compiled`): its VmHWM is then the
new image's; STOCKANOMALY_RESTARTED_AFTER_COMPILING=1 (--worker-env) keeps the compiling process.

Prints one JSON line: every run's readings and the spread of the start-up VmRSS.

Usage: .venv/bin/python benchmarks/worker_start_memory.py [--repeat 2] [--cold] [--worker-env KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from kafka_runs import delete_topics, free_port

BIN = Path(sys.executable).parent
DEADLINE = 300.0  # seconds any one wait may take before the run is called failed
PARTITIONS = int(os.environ.get("STOCKANOMALY_PARTITIONS", "4"))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def memory(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+)", status, re.M).group(1)) // 1024  # type: ignore[union-attr]
            for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""  # not serving yet


def lags(metrics: str) -> dict[int, float]:
    return {int(p): float(v) for p, v in re.findall(r'stockanomaly_consumer_lag\{partition="(\d+)"\} (\S+)', metrics)}


def processed(metrics: str) -> float:
    found = re.search(r"^stockanomaly_trades_processed_total (\S+)", metrics, re.M)
    return float(found.group(1)) if found else 0.0


def wait(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path) -> float:
    """Seconds until `condition` holds (polled every 0.5 s: the worker offers no event to await)."""
    since = time.monotonic()
    while time.monotonic() - since < DEADLINE:
        if process.poll() is not None:
            raise SystemExit(f"worker_start_memory: the worker exited (code {process.returncode}) before {what}; "
                             f"see {log}")
        if condition():
            return time.monotonic() - since
        time.sleep(0.5)
    raise SystemExit(f"worker_start_memory: not {what} within {DEADLINE:.0f} s; see {log}")


def one_run(args: argparse.Namespace, market: Path, workdir: Path, k: int) -> dict[str, object]:
    app_id = f"bench-memory-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=args.bootstrap, STOCKANOMALY_APP_ID=app_id,
               STOCKANOMALY_TRADES_TOPIC=f"{app_id}-trades", STOCKANOMALY_ANOMALIES_TOPIC=f"{app_id}-anomalies",
               STOCKANOMALY_INCIDENTS_TOPIC=f"{app_id}-incidents", STOCKANOMALY_DLQ_TOPIC=f"{app_id}-dlq",
               STOCKANOMALY_DATA_DIR=str(workdir / f"data-{k}"), STOCKANOMALY_METRICS_ADDR="127.0.0.1",
               STOCKANOMALY_METRICS_PORT=str(port), STOCKANOMALY_WORKER_WEB_PORT=str(free_port()))
    if args.cold:
        env["NUMBA_CACHE_DIR"] = str(workdir / f"numba-{k}")
    env.update(dict(kv.split("=", 1) for kv in args.worker_env))
    log = workdir / f"worker-{k}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([str(BIN / "faust"), "-A", "entrypoints.worker", "worker", "-l", "info"],
                                   cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    run: dict[str, object] = {}
    try:
        run["ready_seconds"] = round(wait(lambda: len(lags(scrape(port))) == PARTITIONS, "owning every partition",
                                          process, log), 1)
        time.sleep(args.settle)
        run["started"] = memory(process.pid)
        before = processed(scrape(port))
        subprocess.run([str(BIN / "stockanomaly"), "ingest", str(market), "--pace", "max"], env=env, check=True,
                       capture_output=True, timeout=DEADLINE)

        def caught_up() -> bool:
            metrics = scrape(port)
            behind = lags(metrics)
            return processed(metrics) > before and len(behind) == PARTITIONS and not any(behind.values())

        wait(caught_up, "caught up", process, log)
        run["after_ingest"] = memory(process.pid)
        time.sleep(args.idle)
        run["idle"] = memory(process.pid)
        run["restarted_after_compiling"] = '"event": "kernels_compiled"' in log.read_text(errors="replace")
        return run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        asyncio.run(delete_topics(args.bootstrap, app_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--trades", type=int, default=600_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="an empty numba cache per run: kernels compiled at start")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds after owning its partitions")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle after the ingest")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="worker-memory-"))
    try:
        market = workdir / "market.dbn"
        subprocess.run([str(BIN / "stockanomaly"), "generate", str(market), "--symbols", str(args.symbols),
                        "--trades", str(args.trades), "--seed", str(args.seed)], check=True, capture_output=True)
        runs = [one_run(args, market, workdir, k) for k in range(args.repeat)]
    except BaseException:
        say(f"worker_start_memory: logs kept in {workdir}")
        raise
    shutil.rmtree(workdir)
    started = [r["started"]["VmRSS"] for r in runs]  # type: ignore[index]
    print(json.dumps({"benchmark": "worker_start_memory", "cold": args.cold, "symbols": args.symbols,
                      "trades": args.trades, "worker_env": args.worker_env, "runs": runs,
                      "started_vmrss_mib": {"min": min(started), "max": max(started)}}))


if __name__ == "__main__":
    main()
