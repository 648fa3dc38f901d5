"""How long a SIGKILLed worker's partitions go unjudged when it is restarted at once (a container's
restart policy): from the restart to its first committed take, and where that time goes.

Needs the local Kafka (`bash scripts/services.sh up kafka`). Each run gets fresh topics, consumer
group and data directory (a uuid app id; the topics are deleted at the end). A generated market
(--symbols, --trades, --seed) goes into Kafka through `stockanomaly ingest --pace` while one
worker (`faust -A entrypoints.worker worker -l info`, as the Dockerfile runs it) judges it; once
the worker has committed takes for --run-for seconds it is SIGKILLed and started again on the same
data directory, and this script stamps, from that restart, the first log line of each phase:

  joined     the consumer group gave it partitions ("Joined group"): a killed member holds its
             partitions until its session times out (STOCKANOMALY_KAFKA_SESSION_TIMEOUT)
  recovered  its tables restored from their changelogs ("Worker ready")
  first_take its first take committed (the `take_committed` log line)

Prints one JSON line: every run's seconds per phase and the spread of `first_take`. Pass worker
settings with --worker-env (say STOCKANOMALY_KAFKA_SESSION_TIMEOUT=60 for Faust's own default).

Usage: .venv/bin/python benchmarks/failover.py [--repeat 3] [--worker-env KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka_runs import delete_topics, stop_all

BIN = Path(sys.executable).parent
PHASES = {"joined": "Joined group", "recovered": "[^---Recovery]: Worker ready", "first_take": '"event": "take_committed"'}
DEADLINE = 300.0  # seconds any one wait may take before the run is called failed


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wait_for_line(log: Path, needle: str, since: float, process: subprocess.Popen[bytes]) -> float:
    """Seconds from `since` until `needle` first shows in `log` (polled every 20 ms)."""
    while time.monotonic() - since < DEADLINE:
        if log.exists() and needle in log.read_text(errors="replace"):
            return time.monotonic() - since
        if process.poll() is not None:
            raise SystemExit(f"failover: the worker exited (code {process.returncode}) before {needle!r}; see {log}")
        time.sleep(0.02)  # polling a log file: there is no event to await
    raise SystemExit(f"failover: no {needle!r} in {log} within {DEADLINE:.0f} s")


def one_run(args: argparse.Namespace, market: Path, workdir: Path) -> dict[str, float]:
    app_id = f"failover-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap, "STOCKANOMALY_APP_ID": app_id,
           "STOCKANOMALY_TRADES_TOPIC": f"{app_id}-trades", "STOCKANOMALY_ANOMALIES_TOPIC": f"{app_id}-anomalies",
           "STOCKANOMALY_INCIDENTS_TOPIC": f"{app_id}-incidents", "STOCKANOMALY_DLQ_TOPIC": f"{app_id}-dlq",
           "STOCKANOMALY_DATA_DIR": str(workdir / app_id), "STOCKANOMALY_METRICS_PORT": "0",
           "STOCKANOMALY_LOG_LEVEL": "DEBUG",  # the `take_committed` line the first take is timed by
           **dict(kv.split("=", 1) for kv in args.worker_env)}
    worker = [str(BIN / "faust"), "-A", "entrypoints.worker", "worker", "-l", "info", "--without-web"]
    processes: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir))
        return processes[-1]

    try:
        ingest = start([str(BIN / "stockanomaly"), "ingest", str(market), "--pace", args.pace],
                       workdir / f"{app_id}-ingest.log")
        first = start(worker, workdir / f"{app_id}-first.log")
        committed = wait_for_line(workdir / f"{app_id}-first.log", PHASES["first_take"], time.monotonic(), first)
        say(f"{app_id}: first worker committing {committed:.1f} s after its start; killing it in {args.run_for:.0f} s")
        time.sleep(args.run_for)  # letting it work (and leave a transaction open), not awaiting a condition
        if ingest.poll() is not None:  # the restarted worker would have nothing left to take
            raise SystemExit("failover: the input ended before the kill: a slower --pace or a shorter --run-for")
        first.send_signal(signal.SIGKILL)
        first.wait()
        restarted_at = time.monotonic()
        second = start(worker, log := workdir / f"{app_id}-restarted.log")
        phases = {name: round(wait_for_line(log, needle, restarted_at, second), 2) for name, needle in PHASES.items()}
        say(f"{app_id}: {phases}")
        return phases
    finally:
        stop_all(processes)
        asyncio.run(delete_topics(args.bootstrap, app_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--trades", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--pace", default="x200", help="ingest's --pace (x200: the generated day in about two minutes)")
    parser.add_argument("--run-for", type=float, default=5.0, help="seconds of committed takes before the kill")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="failover-"))
    try:
        market = workdir / "market.dbn.zst"
        subprocess.run([str(BIN / "stockanomaly"), "generate", str(market), "--symbols", str(args.symbols),
                        "--trades", str(args.trades), "--seed", str(args.seed)], check=True, capture_output=True)
        runs = [one_run(args, market, workdir) for _ in range(args.repeat)]
    except BaseException:
        say(f"failover: logs kept in {workdir}")
        raise
    shutil.rmtree(workdir)
    takes = [r["first_take"] for r in runs]
    print(json.dumps({"benchmark": "failover", "symbols": args.symbols, "trades": args.trades, "pace": args.pace,
                      "worker_env": args.worker_env, "runs": runs,
                      "first_take_seconds": {"min": min(takes), "median": round(statistics.median(takes), 2), "max": max(takes)}}))


if __name__ == "__main__":
    main()
