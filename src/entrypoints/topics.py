"""Before a streaming process starts: its topics exist with the configured partition count, and what
else it needs is there (data directory, metrics endpoint, Elasticsearch, suppressions file)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka.errors import KafkaError

from adapters.faust.settings import StreamingSettings
from adapters.kafka.errors import said
from adapters.kafka.topics import ensure_topics
from adapters.metrics.server import MetricsServer
from domain.errors import ConfigError

if TYPE_CHECKING:
    from adapters.files.suppressions import SuppressionsFile

log = structlog.get_logger()


def require_topics(settings: StreamingSettings, who: str,
                   changelogs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create `trades`, `anomalies`, `incidents` and `trades.dlq` when missing, and the worker's
    table changelogs (`changelogs`: name -> topic configs); exit with one line when a topic has
    another partition count or Kafka cannot be reached. Runs before Faust's event loop starts (in a
    thread of its own, so that loop is left as Faust set it up)."""
    changelogs = changelogs or {}
    names = [settings.trades_topic, settings.anomalies_topic, settings.incidents_topic, settings.dlq_topic,
             *changelogs]
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, ensure_topics(settings.bootstrap, names, settings.partitions,
                                                   replication_factor=settings.replication_factor,
                                                   client_id=f"{settings.app_id}-{who}",
                                                   configs=changelogs)).result()
    except ConfigError as exc:
        sys.exit(f"stockanomaly {who}: {exc}")
    except KafkaError as exc:
        sys.exit(f"stockanomaly {who}: Kafka at {settings.bootstrap}: {said(exc)}")


def changelog_topics(app: Any) -> dict[str, dict[str, str]]:
    """The app's table changelogs and the topic configs Faust would create them with.

    They are created before the consumer starts, with the other topics: Faust creates them itself
    only as the worker starts, and the group leader's assignment, made from metadata fetched before
    that, then leaves them out ("Ignoring missing topic"). A partition handed to another worker in
    such an assignment starts there with empty state instead of its changelog's: two workers started
    together on a new broker detected differently from one (the compose test caught it)."""
    topics = {}
    for table in app.tables.values():
        topic = table.changelog_topic
        policy = ",".join(flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        config = {"cleanup.policy": policy} if policy else {}
        config.update({key: str(value) for key, value in (topic.config or {}).items()})
        if topic.retention:  # a windowed table's (none here yet): seconds, or a timedelta
            retention = topic.retention
            seconds = retention.total_seconds() if isinstance(retention, timedelta) else float(retention)
            config["retention.ms"] = str(int(seconds * 1000))
        topics[topic.get_topic_name()] = config
    return topics


# Faust's options before its command that take a value (`-A entrypoints.worker`, `-l info`, ...).
FAUST_VALUE_OPTIONS = frozenset({"-A", "--app", "-W", "--workdir", "-D", "--datadir", "-L", "--loop", "-f",
                                 "--logfile", "-l", "--loglevel", "--blocking-timeout", "--console-port"})


def starts_worker(argv: Sequence[str]) -> bool:
    """Whether Faust's command line runs its `worker` command, not `--help` or another command: Faust
    prepares the app (and sends on_worker_init) for any of them, `worker --help` included."""
    if "--help" in argv:
        return False
    args = list(argv[1:])
    i = 0
    while i < len(args):
        if args[i] in FAUST_VALUE_OPTIONS:
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i] == "worker"
    return False


# Set in the environment of a worker that restarted itself after compiling its kernels: once only.
RESTARTED_AFTER_COMPILING = "STOCKANOMALY_RESTARTED_AFTER_COMPILING"


def warm_up_kernels(steps: Sequence[Callable[[], object]], environ: Mapping[str, str], cached: bool = True) -> float:
    """Run the warm-up `steps` (loading the compiled kernels, or compiling them) and return the
    seconds they took, saying first what is happening: a first start on a machine compiled for 110 s
    with two workers starting at once, and their logs stayed empty all that time. `cached`: whether
    numba's cache has the kernels (else `compiling_kernels`, for sure; a cache there but stale, for
    edited sources, still compiles, as `kernels_loading` says). Not said again by the process
    started again after compiling (its `kernels_compiled` line said it)."""
    if environ.get(RESTARTED_AFTER_COMPILING):
        pass
    elif not cached:
        log.info("compiling_kernels", action="none in numba's cache yet (a first start on this machine): 30-60 s, "
                 "minutes with several workers starting at once; then the worker starts itself again once")
    else:
        log.info("kernels_loading", action="from numba's cache, about a second; a first start on this machine "
                 "or after the sources changed compiles them instead (30-60 s, minutes with several workers "
                 "starting at once), then starts itself again once")
    started = time.monotonic()
    for step in steps:
        step()
    return time.monotonic() - started


def say_compiled(compiled: int, seconds: float, restarting: bool) -> None:
    """After a warm-up that compiled `compiled` kernels: how long it took (the start's line before it
    said it would), and whether the worker now starts itself again."""
    if compiled:
        log.info("kernels_compiled", kernels=compiled, seconds=round(seconds, 1),
                 **({"action": "starting again to load them from the cache (a process that compiled keeps "
                               "~200 MiB more)"} if restarting else {}))


def restart_after_compiling(compiled: int, argv: Sequence[str], orig_argv: Sequence[str], executable: str,
                            environ: Mapping[str, str]) -> list[str] | None:
    """The command line to exec the worker again with, when its warm-up compiled kernels instead of
    loading them from numba's cache (`compiled`), else None. Compiling leaves ~200 MiB of LLVM's in
    the process for good (648 against 451 MiB at start, measured): the same command started again
    loads what was just cached and runs without it. Only for Faust's `worker` command, and once (a
    cache that cannot be written would compile again: that process then keeps the memory and runs)."""
    if compiled <= 0 or not starts_worker(argv) or environ.get(RESTARTED_AFTER_COMPILING):
        return None
    return [executable, *orig_argv[1:]]  # orig_argv: the interpreter's own options and `-m faust` kept


def before_start(app: Any, settings: StreamingSettings, who: str, prepare: Callable[[], None]) -> None:
    """When `faust -A ... worker` prepares the app (not when a test imports it, nor for `--help` or
    another Faust command): check the topics, then `prepare` (the data directory, the metrics
    endpoint), and exit with one line on a problem rather than Faust's crash report. Once: Faust's
    command line finds (and prepares) the app twice, sending on_worker_init each time, and the indexer
    said `elasticsearch_unreachable` twice in a row for one outage."""
    checked = False

    @app.on_worker_init.connect
    def check_topics(sender: Any, **kwargs: Any) -> None:
        nonlocal checked
        if checked or not starts_worker(sys.argv):
            return
        checked = True
        require_topics(settings, who, changelog_topics(app))
        try:
            prepare()
        except ConfigError as exc:
            sys.exit(f"stockanomaly {who}: {exc}")


def require_directory(path: str, variable: str) -> None:
    """`path` is a directory this process can write, created when missing; ConfigError otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{variable} {path!r}: cannot create it: {exc.strerror or exc}") from None
    # Every folder of it, not only the top: the worker writes in the ones a previous run made (its
    # tables' RocksDB files, the clean-stop marker), maybe as another user.
    for folder, _, _ in os.walk(path):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{variable} {path!r}: this user cannot write in {folder!r}")


def serve_metrics(server: MetricsServer, variables: str) -> None:
    """Bind the /metrics endpoint now, so a taken port or an address that does not resolve stops
    the start in one line (naming the variables to change) instead of crashing the running app."""
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(f"cannot serve /metrics on {server.addr}:{server.port} ({variables}): "
                          f"{exc.strerror or exc}") from None


def faust_web_address(argv: Sequence[str], bind: str, port: int) -> tuple[str, int] | None:
    """Where `faust -A ... worker` will serve its web pages: the app's bind and port unless the
    command line says otherwise (`--web-port/-p`, `--web-bind/-b`; Faust applies a worker's flags
    after the app is prepared, so app.conf does not know them yet when the start is checked); None
    with `--without-web`. A value that is not a port is left for Faust to refuse."""
    if "--without-web" in argv:
        return None
    for i, arg in enumerate(argv):
        for names in (("--web-port", "-p"), ("--web-bind", "-b")):
            name, _, inline = arg.partition("=")
            if name not in names:
                continue
            value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else "")
            if names[0] == "--web-bind":
                bind = value or bind
            elif value.isdigit():
                port = int(value)
    return bind, port


def require_port(host: str, port: int, variable: str) -> None:
    """The Faust web server's port is free: taken (a second worker on a host with the first one's
    port), Faust would stop with a crash report of a hundred lines once it had joined the group."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server binds it
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{variable} {port}: cannot listen on {host}:{port}: {exc.strerror or exc} "
                              "(another worker or indexer on this host? give each its own port)") from None


def check_elasticsearch(url: str) -> None:
    """Elasticsearch at `url` answers, or cannot be reached yet (a warning: the indexer waits for it,
    the anomalies wait on their topic); a server that refuses for good is a ConfigError, rather
    than the indexer stopping at its first anomaly, which may come hours after a deploy."""
    from adapters.elasticsearch import ElasticsearchRejected, ElasticsearchSettings, probe

    settings = ElasticsearchSettings.from_env(url=url)
    try:
        problem = probe(settings)
    except ElasticsearchRejected as exc:
        raise ConfigError(f"ELASTICSEARCH_URL: {exc}") from None
    if problem is not None:
        log.warning("elasticsearch_unreachable", url=settings.safe_url, error=problem,
                    action="indexing starts once it answers; the anomalies wait on their topic")


def describe_suppressions(rules_file: SuppressionsFile | None) -> int | None:
    """Say at start which suppressions file is honoured (the one the container already read), and
    return how many rules it holds (None: no file). A missing one is read once it appears, which a
    mistyped path looks just like, so it is a warning."""
    if rules_file is None:
        return None
    path = str(rules_file.path.resolve())
    if not rules_file.path.exists():
        log.warning("suppressions_file_missing", path=path,
                    action="no rules until it is created; it is read as soon as it is")
        return None
    rules = len(rules_file().rules)
    log.info("suppressions_in_force", path=path, rules=rules)
    return rules
