"""The up / down / status / logs / env commands behind scripts/services.sh."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from .alertmanager import Alertmanager
from .base import Service
from .config import OPTIONAL, SERVICES, Settings, SettingsError, resolve_names
from .docker import DockerEngine
from .elasticsearch import Elasticsearch
from .images import Images
from .install import say
from .kafka import Kafka
from .prometheus import Prometheus
from .proc import PidRecord, ServiceError, stop, tail

KINDS: dict[str, type[Service]] = {"kafka": Kafka, "elasticsearch": Elasticsearch,
                                    "prometheus": Prometheus, "alertmanager": Alertmanager,
                                    "docker": DockerEngine}


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One services.sh at a time per run dir (parallel test runners call `up` together)."""
    settings.run.mkdir(parents=True, exist_ok=True)
    with open(settings.run / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _await(svc: Service, record: PidRecord, started: float, fresh: bool,
           deadline: float) -> float:
    """Wait until healthy; seconds from spawn to healthy. A failed fresh start is stopped."""
    try:
        svc.wait_healthy(record, deadline)
    except ServiceError:
        if fresh:
            stop(record)
            svc.pid_path.unlink(missing_ok=True)
        raise
    return time.monotonic() - started


def up(settings: Settings, services: list[Service]) -> int:
    """Install, start and health-check; each service starts as soon as it is installed."""
    errors: list[str] = []
    waits = []
    with _locked(settings), ThreadPoolExecutor(max_workers=len(services)) as pool:
        for svc in services:
            try:
                t0 = time.monotonic()
                cached = svc.install()
                installed = time.monotonic() - t0
                record = svc.running()
                fresh = record is None
                if record is None:
                    record = svc.start()
                else:
                    say(f"{svc.name}: already running (pid {record.pid})")
                started = time.monotonic()
                future = pool.submit(_await, svc, record, started, fresh,
                                     started + settings.timeout_s)
                waits.append((svc, future, installed, cached, fresh))
            except (ServiceError, OSError) as exc:
                errors.append(f"{svc.name}: {exc}")
        for svc, future, installed, cached, fresh in waits:
            try:
                took = future.result()
            except ServiceError as exc:
                errors.append(str(exc))
                continue
            source = "cached" if cached else "downloaded"
            state = f"started, healthy in {took:.1f}s" if fresh else "already healthy"
            say(f"{svc.name}: {state} at {svc.endpoint()} (install {installed:.1f}s, {source}; "
                f"log {svc.log_path})")
    for error in errors:
        print(f"[services] ERROR {error}", file=sys.stderr)
    return 1 if errors else 0


def down(settings: Settings, services: list[Service], purge: bool) -> int:
    with _locked(settings):
        for svc in reversed(services):
            record = svc.running()
            if record:
                stop(record)
                svc.pid_path.unlink(missing_ok=True)
                say(f"{svc.name}: stopped (pid {record.pid})")
            else:
                say(f"{svc.name}: not running")
            if purge:
                for path in svc.purge_paths():
                    shutil.rmtree(path, ignore_errors=True)
                say(f"{svc.name}: data removed")
    return 0


def status(services: list[Service]) -> int:
    ok = True
    for svc in services:
        record = svc.running()
        health = svc.healthy() if record else False
        ok = ok and health
        state = (f"running  pid={record.pid:<7} {'healthy' if health else 'UNHEALTHY'}"
                 if record else "stopped")
        print(f"{svc.name:<14} {state:<34} {svc.endpoint():<24} log={svc.log_path}")
    return 0 if ok else 3


def logs(services: list[Service], lines: int, follow: bool) -> int:
    paths = [p for svc in services for p in svc.log_paths() if p.exists()]
    if follow:
        if not paths:
            print("[services] no logs yet", file=sys.stderr)
            return 1
        os.execvp("tail", ["tail", "-n", str(lines), "-F", *map(str, paths)])
    for path in paths:
        print(f"==> {path} <==")
        print(tail(path, lines))
    return 0


def images(settings: Settings) -> int:
    """The Docker engine up (started if needed), then the local images for docker-compose.host.yml."""
    if up(settings, [DockerEngine(settings)]) != 0:
        return 1
    try:
        outcomes = Images(settings).build_all()
    except (ServiceError, OSError) as exc:
        print(f"[services] ERROR images: {exc}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        state = "built" if outcome.built else "up to date"
        say(f"images: {outcome.tag} {state} ({outcome.seconds:.1f}s)")
    return 0


def env(settings: Settings) -> int:
    for key, value in (("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap),
                       ("ELASTICSEARCH_URL", settings.es_url),
                       ("PROMETHEUS_URL", settings.prometheus_url),
                       ("ALERTMANAGER_URL", settings.alertmanager_url),
                       ("STOCKANOMALY_ALERT_WEBHOOK_PORT", str(settings.alert_webhook_port)),
                       ("STOCKANOMALY_PROMETHEUS_TARGETS_DIR",
                        str(settings.prometheus_targets_dir)),
                       ("STOCKANOMALY_PROMETHEUS_RULES_DIR",
                        str(settings.prometheus_rules_dir))):
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/services.sh", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument("services", nargs="*", help="kafka, elasticsearch, prometheus, alertmanager "
                                                   "(the default), docker, or all")
        if name == "down":
            p.add_argument("--purge", action="store_true", help="also delete data and logs")
    p = sub.add_parser("logs")
    p.add_argument("services", nargs="*")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("env")
    sub.add_parser("images", help="the Docker engine and the local images of docker-compose.host.yml")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.cmd == "env":
            return env(settings)
        if args.cmd == "images":
            return images(settings)
        # `down` stops the optional services too (when this script started them).
        default = SERVICES + OPTIONAL if args.cmd == "down" else SERVICES
        services = [KINDS[n](settings) for n in resolve_names(args.services, default)]
    except SettingsError as exc:
        parser.error(str(exc))
    if args.cmd == "up":
        return up(settings, services)
    if args.cmd == "down":
        return down(settings, services, args.purge)
    if args.cmd == "status":
        return status(services)
    return logs(services, args.lines, args.follow)
