"""What a rolling restart of two workers costs: each stopped gracefully (SIGTERM, as `docker compose
restart` does), started again on its own data directory, and waited for before the next.

Needs the local Kafka (`bash scripts/services.sh up kafka`). One run gets fresh topics, consumer group
and data directories (a uuid app id; the topics are deleted at the end). A generated market
(--symbols, --trades, --seed) goes into Kafka through `stockanomaly ingest --pace` while workers A and
B (`faust -A entrypoints.worker worker -l info`, as the Dockerfile runs it; DEBUG logs) share the
trades partitions. Once both have committed takes for --settle seconds, A gets SIGTERM, is started
again once it exited, and is waited for until it committed a take and the group committed every
partition again for --settle seconds; then the same for B. Then the input is let run out, and the
run waits until the group's committed offsets reach the end offsets.

From the workers' `take_committed` and `batch` lines it prints one JSON object:

  steps       per step: SIGTERM to exit, start to "Worker ready" and to the first committed take,
              whether the local store was kept (no `state_store_discarded`) and how many changelog
              records recovery read, which partitions each worker committed before and after, and
              per partition the longest time without a committed take over the step, the partitions
              that changed hands, the changelog records the restarted worker read back, the group
              generations any worker joined meanwhile and how often the other worker had partitions
              revoked (0 and none new: the step cost the other worker nothing)
  baseline    the same longest gap per partition over the --settle seconds before the first step
  correctness trades ingested, trades and accepted trades committed as judged (a take's `batch`
              lines superseded by a later run from the same offset), committed == end offsets,
              anomaly ids on the anomalies topic (read_committed): how many, how many more than once

With --kill A (or B) there is no rolling restart: once the group settles that worker is SIGKILLed
and never started again, and the one step says how long its partitions waited for the other to
take them over (the group's session timeout, then reading their state back: standby replicas,
STOCKANOMALY_TABLE_STANDBY_REPLICAS=1 through --worker-env, shorten the read): from the kill to the
survivor's assignment in a new generation, to its first committed take of each orphaned partition,
and the changelog records it read back.

With --static the workers join as static members (STOCKANOMALY_GROUP_INSTANCE_ID worker-a and
worker-b, the same on every start; the session timeout then defaults to 30 s). --logs DIR keeps
every run's logs and JSON line in DIR/<app id>/, a failed run's too.

Usage: .venv/bin/python benchmarks/rolling_restart.py [--pace x200] [--settle 10] [--label NAME]
           [--static] [--kill A|B] [--logs DIR] [--compare-embedded] [--worker-env KEY=VALUE]
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
import uuid
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kafka_runs import delete_topics, free_port, stop_all

BIN = Path(sys.executable).parent
PARTITIONS = 4
DEADLINE = 240.0  # seconds any one wait may take before the run is called failed


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def lines(log: Path) -> list[dict]:
    out = []
    if log.exists():
        decoder = json.JSONDecoder()
        for line in log.read_text(errors="replace").splitlines():
            # stdout's JSON lines and stderr's Faust lines share the file: one may run into the other
            at = line.find('{"')
            if at >= 0:
                try:
                    out.append(decoder.raw_decode(line, at)[0])
                except ValueError:
                    pass
    return out


def stamp(d: dict) -> float:
    return datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp()


def commits(log: Path) -> list[tuple[float, list[int]]]:
    return [(stamp(d), d["partitions"]) for d in lines(log) if d.get("event") == "take_committed"]


def poll(what: str, condition, timeout: float = DEADLINE, interval: float = 0.05):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        value = condition()
        if value:
            return value
        time.sleep(interval)  # polling logs and processes: there is no event to await
    raise SystemExit(f"rolling_restart: no {what} within {timeout:.0f} s")


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.app_id = f"rolling-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap, "STOCKANOMALY_APP_ID": self.app_id,
                    "STOCKANOMALY_TRADES_TOPIC": f"{self.app_id}-trades",
                    "STOCKANOMALY_ANOMALIES_TOPIC": f"{self.app_id}-anomalies",
                    "STOCKANOMALY_INCIDENTS_TOPIC": f"{self.app_id}-incidents",
                    "STOCKANOMALY_DLQ_TOPIC": f"{self.app_id}-dlq", "STOCKANOMALY_PARTITIONS": str(PARTITIONS),
                    "STOCKANOMALY_METRICS_ADDR": "127.0.0.1", "STOCKANOMALY_METRICS_PORT": "0",
                    "STOCKANOMALY_LOG_LEVEL": "DEBUG",
                    **dict(kv.split("=", 1) for kv in args.worker_env)}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports = {"A": free_port(), "B": free_port()}
        self.runs: dict[str, int] = {"A": 0, "B": 0}
        self.current: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = {}
        self.gap_found = False

    def spawn(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            self.processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                   cwd=self.workdir))
        return self.processes[-1]

    def start_worker(self, name: str) -> tuple[subprocess.Popen[bytes], Path, float]:
        self.runs[name] += 1
        log = self.workdir / f"w{name}{self.runs[name]}.log"
        env = {**self.env, "STOCKANOMALY_DATA_DIR": str(self.workdir / f"{name}-data"),
               "STOCKANOMALY_WORKER_WEB_PORT": str(self.ports[name])}
        if self.args.static:  # the same id on every start of the worker, as a deployment would give it
            env["STOCKANOMALY_GROUP_INSTANCE_ID"] = f"worker-{name.lower()}"
        started = time.time()
        proc = self.spawn([str(BIN / "faust"), "-A", "entrypoints.worker", "worker", "-l", "info"], log, env)
        self.current[name] = (proc, log, started)
        return self.current[name]

    def all_partitions_committed_since(self, since: float) -> bool:
        seen: set[int] = set()
        for _, log, _ in self.current.values():
            for t, parts in commits(log):
                if t >= since:
                    seen.update(parts)
        return seen == set(range(PARTITIONS))

    def committed_by(self, since: float, until: float) -> dict[str, list[int]]:
        out = {}
        for log in sorted(self.workdir.glob("w*.log")):
            parts = {p for t, ps in commits(log) if since <= t <= until for p in ps}
            name = log.stem[1]
            out[name] = sorted(set(out.get(name, [])) | parts)
        return out

    def settle(self, what: str) -> float:
        """Every partition committed, then --settle seconds of it; returns the time the wait began."""
        began = time.time()
        poll(f"commits of every partition ({what})", lambda: self.all_partitions_committed_since(began))
        time.sleep(self.args.settle)  # letting the group work, not awaiting a condition
        return began

    def restart(self, name: str) -> dict:
        proc, old_log, _ = self.current[name]
        before = self.committed_by(time.time() - self.args.settle, time.time())
        alive = proc.poll() is None  # a worker that crashed meanwhile is not stopped by this step
        term = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"rolling_restart: worker {name} still running 120 s after SIGTERM") from None
        exited = time.time()
        clean = bool(list((self.workdir / f"{name}-data").glob("**/clean-stop")))  # before the start removes it
        _, log, started = self.start_worker(name)
        new = self.current[name][0]

        def first_take() -> float | None:
            if new.poll() is not None:
                raise SystemExit(f"rolling_restart: worker {name} exited ({new.returncode}); see {log}")
            found = commits(log)
            return found[0][0] if found else None

        first = poll(f"first committed take of the restarted {name}", first_take)
        text = log.read_text(errors="replace")
        ready = [stamp(d) for d in lines(log) if "Worker ready" in d.get("event", "")]
        ready_at = self._plain_stamp(text, "Worker ready")
        settle_began = self.settle(f"after restarting {name}")
        end = time.time()
        after = self.committed_by(end - self.args.settle, end)
        return {"worker": name, "alive_at_sigterm": alive, "exit_code": proc.returncode, "sigterm_to_exit_s": round(exited - term, 2),
                "start_to_ready_s": round(ready_at - started, 2) if ready_at else (round(ready[0] - started, 2) if ready else None),
                "start_to_first_take_s": round(first - started, 2),
                "sigterm_to_first_take_s": round(first - term, 2),
                "local_store": "discarded" if "state_store_discarded" in text else "kept",
                "clean_marker_before_start": clean,
                "recovery": self._recovery(text), "old_log_tail_errors": self._errors(old_log),
                "committed_before": before, "committed_after": after,
                "assignments": self._assignments(text),
                "window": (term, end), "settle_began": settle_began}

    def kill(self, name: str) -> dict:
        """SIGKILL `name` and leave it dead: the other worker must take its partitions over."""
        proc, _, _ = self.current[name]
        other = "B" if name == "A" else "A"
        survivor, log, _ = self.current[other]
        before = self.committed_by(time.time() - self.args.settle, time.time())
        orphans = set(before.get(name, []))
        if not orphans:  # nothing would be taken over: the wait below could never end
            raise SystemExit(f"rolling_restart: worker {name} committed no partition in the last {self.args.settle} s")
        killed = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()

        def taken_over() -> dict[int, float] | None:
            if survivor.poll() is not None:
                raise SystemExit(f"rolling_restart: worker {other} exited ({survivor.returncode}); see {log}")
            first: dict[int, float] = {}
            for t, parts in commits(log):
                for p in parts:
                    if t >= killed and p in orphans:
                        first.setdefault(p, t)
            return first if set(first) == orphans else None

        first = poll(f"{other}'s first committed take of each of {name}'s partitions {sorted(orphans)}", taken_over)
        text = log.read_text(errors="replace")
        # Faust's line for each assignment it gets (aiokafka says "Joined group" only for a new member)
        joined = [at for line in text.splitlines() if re.search(r"generation id \d+ app consumers id", line)
                  and (at := self._line_stamp(line)) is not None and at >= killed]
        settle_began = self.settle(f"after killing {name}")
        end = time.time()
        since_kill = [r for r in self._recovery(text)
                      if datetime.strptime(r["at"], "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp() >= killed]
        return {"worker": name, "killed": True, "committed_before": before,
                "kill_to_joined_s": round(joined[0] - killed, 2) if joined else None,
                "kill_to_first_take_s": {p: round(t - killed, 2) for p, t in sorted(first.items())},
                "recovery": since_kill, "committed_after": self.committed_by(end - self.args.settle, end),
                "window": (killed, end), "settle_began": settle_began}

    @staticmethod
    def _plain_stamp(text: str, needle: str) -> float | None:
        for line in text.splitlines():
            if needle in line:
                m = re.search(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)", line)
                if m:
                    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
        return None

    @staticmethod
    def _table(rows: list[str]) -> dict[tuple[str, int], int]:
        """Faust's (topic, partition, number) table rows; a row's topic is `〃` for the one above."""
        out, topic = {}, ""
        for row in rows:
            if row.startswith("["):  # the next log line: the table ended
                break
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if len(cells) != 3 or not cells[1].isdigit():
                continue
            topic = topic if cells[0] == "〃" else cells[0]
            out[(topic, int(cells[1]))] = int(cells[2])
        return out

    @classmethod
    def _recovery(cls, text: str) -> list[dict]:
        """Per recovery (a rebalance's) of the active tables: per trades partition, the changelog records
        it had to read, and whether its local store had an offset for it (rocksdb) or none (scratch)."""
        rows = text.splitlines()
        found = []
        for i, line in enumerate(rows):
            if "Highwater for active changelog partitions" not in line:
                continue
            at = line[1:24]
            high = cls._table(rows[i + 1:i + 40])
            j = next((k for k in range(i + 1, min(i + 60, len(rows))) if "active offsets at start of reading" in rows[k]),
                     None)
            start = cls._table(rows[j + 1:j + 40]) if j is not None else {}
            per: dict[int, dict] = {}
            for (topic, p), hw in high.items():
                s0 = start.get((topic, p), -1)
                e = per.setdefault(p, {"records": 0, "from": "rocksdb"})
                e["records"] += max(0, hw - (s0 + 1))
                if s0 < 0 and hw > 0:
                    e["from"] = "scratch"
            found.append({"at": at, "partitions": per})
        return found

    def membership(self, name: str, since: float, until: float) -> dict:
        """What the group did in [since, until]: the generations any worker joined, and how often the
        worker that was not restarted had partitions revoked (a rebalance reached it)."""
        joined: set[int] = set()
        revoked = 0
        for log in self.workdir.glob("w*.log"):
            text = log.read_text(errors="replace")
            for line in text.splitlines():
                at = self._line_stamp(line)
                if at is None or not since <= at <= until:
                    continue
                m = re.search(r"Joined group '[^']*' \(generation (\d+)\)", line)
                if m:
                    joined.add(int(m.group(1)))
                if log.stem[1] != name and "Revoking previously assigned partitions" in line and "set()" not in line:
                    revoked += 1
        return {"generations_joined": sorted(joined), "other_worker_revocations": revoked}

    @staticmethod
    def _line_stamp(line: str) -> float | None:
        m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]", line)
        if not m:
            return None
        return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()

    @staticmethod
    def _assignments(text: str) -> list[str]:
        return [line.strip()[:120] for line in text.splitlines() if "Joined group" in line]

    @staticmethod
    def _errors(log: Path) -> list[str]:
        return [line[:300] for line in log.read_text(errors="replace").splitlines()
                if '"level": "error"' in line or "Traceback" in line or "Crashed" in line][-5:]

    def gaps(self, since: float, until: float) -> dict[int, float]:
        """Per partition, the longest time without a committed take that overlaps [since, until]."""
        times: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        for log in self.workdir.glob("w*.log"):
            for t, parts in commits(log):
                for p in parts:
                    times[p].append(t)
        out = {}
        for p, ts in times.items():
            ts.sort()
            longest = 0.0
            for a, b in zip(ts, ts[1:]):
                if b >= since and a <= until:
                    longest = max(longest, b - a)
            out[p] = round(longest, 2)
        return out

    def committed_trades(self) -> tuple[int, int, int, int]:
        """(trades, accepted, anomalies, dead letters) of the `batch` groups kept: a group redone later
        from the same offset supersedes the earlier; the kept groups must cover each partition from 0."""
        groups = []
        for log in self.workdir.glob("w*.log"):
            for d in lines(log):
                if d.get("event") == "batch":
                    first, last = (int(x) for x in d["offsets"].rsplit("@", 1)[1].split("-"))
                    # by time, not by the stamp's text: a stamp on a whole second has no fraction
                    # ("...:07Z" sorts after "...:07.07Z"), and a group then superseded later ones
                    groups.append((stamp(d), d["partition"], first, last, d["trades"], d["accepted"],
                                   d["anomalies"], d["dead_letters"]))
        kept: dict[int, list[tuple]] = {}
        for _, partition, first, last, *counts in sorted(groups):
            mine = [g for g in kept.get(partition, []) if g[0] < first]
            kept[partition] = [*mine, (first, last, *counts)]
        for partition, mine in kept.items():
            starts = [g[0] for g in mine]
            if starts != [0] + [g[1] + 1 for g in mine[:-1]]:
                say(f"rolling_restart: GAP in partition {partition}'s committed groups")
                self.gap_found = True
        return tuple(sum(g[i] for mine in kept.values() for g in mine) for i in (2, 3, 4, 5))  # type: ignore[return-value]

    async def offsets(self) -> dict[int, tuple[int | None, int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.args.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.args.bootstrap)
        await admin.start()
        await consumer.start()
        try:
            tps = [TopicPartition(f"{self.app_id}-trades", p) for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(self.app_id, partitions=tps)
            return {tp.partition: (committed[tp].offset if tp in committed else None, ends[tp]) for tp in tps}
        finally:
            await consumer.stop()
            await admin.close()

    async def anomaly_ids(self) -> list[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.args.bootstrap, isolation_level="read_committed",
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(f"{self.app_id}-anomalies", p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            ids: list[str] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    break
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    ids += [json.loads(r.value)["id"] for r in records]
            else:
                raise SystemExit("rolling_restart: the anomalies topic was not read to its end within 60 s")
            return ids
        finally:
            await consumer.stop()

    def go(self, market: Path) -> dict:
        ingest_log = self.workdir / "ingest.log"
        ingest = self.spawn([str(BIN / "stockanomaly"), "ingest", str(market), "--pace", self.args.pace, "--json"],
                            ingest_log, self.env)
        ingest_started = time.time()
        self.start_worker("A")
        self.start_worker("B")
        say(f"{self.app_id}: ingest and workers A, B started; workdir {self.workdir}")
        poll("commits of both workers", lambda: all(commits(log) for _, log, _ in self.current.values()))
        self.settle("both workers started")
        baseline_window = (time.time() - self.args.settle, time.time())
        steps = []
        for name in [self.args.kill] if self.args.kill else ["A", "B"]:
            if ingest.poll() is not None:
                raise SystemExit("rolling_restart: the input ended before the restarts: a slower --pace")
            if self.args.kill:
                say(f"SIGKILL {name}")
                step = self.kill(name)
                say(f"{name}'s partitions taken over: {step['kill_to_first_take_s']} s from the kill")
            else:
                say(f"SIGTERM {name}")
                step = self.restart(name)
                say(f"{name} back: {step['start_to_first_take_s']} s start to first take; "
                    f"before {step['committed_before']} after {step['committed_after']}")
            steps.append(step)
        input_running_after = ingest.poll() is None
        try:
            ingest.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            raise SystemExit("rolling_restart: ingest did not finish") from None
        ingest_seconds = time.time() - ingest_started
        summary = json.loads(ingest_log.read_text().strip().splitlines()[-1])
        final: dict = {}

        def caught_up() -> bool:
            final.update(asyncio.run(self.offsets()))
            return all(c == end for c, end in final.values())

        try:
            poll("committed offsets at the end offsets", caught_up, timeout=120, interval=1.0)
            at_end = True
        except SystemExit:
            at_end = False
        ids = asyncio.run(self.anomaly_ids())
        embedded: dict = {}
        if self.args.compare_embedded:  # the same market replayed in-process: the ids a stream must give
            out = self.workdir / "embedded.jsonl"
            subprocess.run([str(BIN / "stockanomaly"), "replay", str(market), "--out", str(out), "--top", "0",
                            "--no-suppressions"], check=True, capture_output=True, cwd=self.workdir)
            records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
            # what a replay reports because its input ended, a worker reports only when the symbol trades on
            expected = {r["id"] for r in records if "input_ended" not in json.dumps(r.get("details", {}))}
            embedded = {"embedded_ids": len(expected), "missing_from_stream": len(expected - set(ids)),
                        "not_in_embedded": len(set(ids) - expected)}
        if self.args.ids_out:
            Path(self.args.ids_out).write_text("".join(f"{i}\n" for i in sorted(ids)))
        trades, accepted, anomalies, dead = self.committed_trades()
        for step in steps:
            window = step.pop("window")
            step["gap_s_per_partition"] = self.gaps(*window)
            step.update(self.membership(step["worker"], *window))
            before, after = step["committed_before"], step["committed_after"]
            step["partitions_moved"] = sorted(p for name, parts in after.items() for p in parts
                                              if p not in before.get(name, []))
            step["records_restored"] = sum(e["records"] for r in step["recovery"] for e in r["partitions"].values())
            step.pop("settle_began")
        warnings: dict[str, int] = {}
        for log in sorted(self.workdir.glob("w*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if "[WARNING]" in line or "[ERROR]" in line or '"level": "warning"' in line or '"level": "error"' in line:
                    key = re.sub(r"^\[[^]]*\] \[\d+\] ", "", line)
                    key = re.sub(r"\d+", "N", key)[:110]
                    warnings[key] = warnings.get(key, 0) + 1
        crashes = [{"log": log.stem, "line": line[:260]} for log in sorted(self.workdir.glob("w*.log"))
                   for line in log.read_text(errors="replace").splitlines() if "Crashed reason" in line]
        recoveries = {log.stem: self._recovery(log.read_text(errors="replace"))
                      for log in sorted(self.workdir.glob("w*.log"))}
        return {"app_id": self.app_id, "pace": self.args.pace, "ingest_seconds": round(ingest_seconds, 1),
                "input_still_running_after_both_steps": input_running_after,
                "baseline_gap_s_per_partition": self.gaps(*baseline_window), "steps": steps,
                "recoveries": recoveries, "warnings": warnings, "crashes": crashes,
                "correctness": {"ingest_summary": summary, "trades_judged": trades, "accepted": accepted,
                                "anomalies_in_batches": anomalies, "dead_letters": dead,
                                "batch_groups_cover_every_offset": not self.gap_found,
                                "committed_vs_end": {p: list(v) for p, v in final.items()},
                                "committed_at_end": at_end, "anomaly_records": len(ids),
                                "anomaly_ids": len(set(ids)),
                                "ids_more_than_once": len(ids) - len(set(ids)), **embedded}}

    def stop(self) -> None:
        stop_all(self.processes)
        asyncio.run(delete_topics(self.args.bootstrap, self.app_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--trades", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--pace", default="x200", help="ingest's --pace (x200: the generated day in about two minutes)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds of every partition committing before each step and after it")
    parser.add_argument("--label", default="", help="a name for this run in the output (say, standby=1)")
    parser.add_argument("--compare-embedded", action="store_true",
                        help="also replay the market in-process and compare its anomaly ids with the stream's")
    parser.add_argument("--ids-out", metavar="FILE", help="write the anomaly ids read off the topic here")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data directories")
    parser.add_argument("--logs", metavar="DIR",
                        help="copy every run's logs (and its JSON line) to DIR/<app id>/, whether it ends well or not")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--kill", choices=("A", "B"),
                        help="instead of the rolling restart, SIGKILL this worker and never start it again")
    parser.add_argument("--static", action="store_true",
                        help="static group membership: workers A and B join as instances worker-a and worker-b")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rolling-"))
    run = Run(args, workdir)
    try:
        market = workdir / "market.dbn.zst"
        subprocess.run([str(BIN / "stockanomaly"), "generate", str(market), "--symbols", str(args.symbols),
                        "--trades", str(args.trades), "--seed", str(args.seed)], check=True, capture_output=True)
        result = run.go(market)
    except BaseException:
        say(f"rolling_restart: logs kept in {workdir}")
        raise
    finally:
        run.stop()
        if args.logs:  # every run's, a failed one's too: what a crash is diagnosed from
            kept = Path(args.logs) / run.app_id
            kept.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy2(log, kept / log.name)
    line = json.dumps({"benchmark": "rolling_restart", "label": args.label, "static": args.static, "kill": args.kill,
                       "symbols": args.symbols, "trades": args.trades, "seed": args.seed, "settle": args.settle,
                       "worker_env": args.worker_env, **result})
    if args.logs:
        (Path(args.logs) / run.app_id / "result.json").write_text(line + "\n")
    if args.keep:
        say(f"rolling_restart: logs kept in {workdir}")
    else:
        shutil.rmtree(workdir)
    print(line)


if __name__ == "__main__":
    main()
