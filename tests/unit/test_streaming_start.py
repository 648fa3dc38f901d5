"""What stops a worker or an indexer at its start, in one line, rather than as Faust's crash report."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

import entrypoints.topics as topics
from adapters.metrics.server import MetricsServer
from domain.errors import ConfigError
from entrypoints.topics import (RESTARTED_AFTER_COMPILING, check_elasticsearch, describe_suppressions,
                                faust_web_address, require_directory, require_port, restart_after_compiling,
                                say_compiled, serve_metrics, warm_up_kernels)

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_data_directory_is_created_and_must_be_writable(tmp_path: Path) -> None:
    require_directory(str(tmp_path / "a" / "b"), "STOCKANOMALY_DATA_DIR")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^STOCKANOMALY_DATA_DIR '.*file/sub': cannot create it: Not a directory$"):
        require_directory(str(tmp_path / "file" / "sub"), "STOCKANOMALY_DATA_DIR")
    with pytest.raises(ConfigError, match="cannot create it: File exists"):
        require_directory(str(tmp_path / "file"), "STOCKANOMALY_DATA_DIR")


def test_a_data_directory_with_a_folder_this_user_cannot_write_is_refused(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder a previous run made as another user (root writes anywhere, so the check is faked)."""
    tables = tmp_path / "v1" / "tables"
    tables.mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != str(tables) and real_access(p, mode))
    with pytest.raises(ConfigError, match=rf"^STOCKANOMALY_DATA_DIR '{tmp_path}': this user cannot write in "
                                          rf"'{tables}'$"):
        require_directory(str(tmp_path), "STOCKANOMALY_DATA_DIR")


def test_a_taken_metrics_port_is_one_line_naming_the_variables() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MetricsServer(CollectorRegistry(), addr="127.0.0.1", port=port)
        with pytest.raises(ConfigError) as raised:
            serve_metrics(server, "STOCKANOMALY_METRICS_PORT")
    assert str(raised.value) == (f"cannot serve /metrics on 127.0.0.1:{port} (STOCKANOMALY_METRICS_PORT): "
                                 "Address already in use")


def test_a_taken_web_port_is_one_line_naming_its_variable() -> None:
    """A second worker on a host with the first one's STOCKANOMALY_WORKER_WEB_PORT: Faust stopped with
    a crash report of about a hundred lines once it had joined the group."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as raised:
            require_port("127.0.0.1", port, "STOCKANOMALY_WORKER_WEB_PORT")
    assert str(raised.value) == (f"STOCKANOMALY_WORKER_WEB_PORT {port}: cannot listen on 127.0.0.1:{port}: Address "
                                 "already in use (another worker or indexer on this host? give each its own port)")
    require_port("127.0.0.1", port, "STOCKANOMALY_WORKER_WEB_PORT")  # free again once closed


@pytest.mark.parametrize(("argv", "expected"), [
    (["faust", "-A", "entrypoints.worker", "worker", "-l", "info"], ("127.0.0.1", 6066)),
    (["faust", "-A", "entrypoints.worker", "worker", "--without-web"], None),
    (["faust", "-A", "entrypoints.worker", "worker", "--web-port", "6070"], ("127.0.0.1", 6070)),
    (["faust", "-A", "entrypoints.worker", "worker", "-p", "6071", "-b", "0.0.0.0"], ("0.0.0.0", 6071)),
    (["faust", "-A", "entrypoints.worker", "worker", "--web-port=6072"], ("127.0.0.1", 6072)),
    (["faust", "-A", "entrypoints.worker", "worker", "--web-port", "x"], ("127.0.0.1", 6066)),  # Faust refuses it
])
def test_the_web_port_checked_is_the_one_the_worker_command_will_use(argv: list[str],
                                                                    expected: tuple[str, int] | None) -> None:
    """Faust applies a worker's flags after the app is prepared (where the start is checked): a
    port given with --web-port, or no web server at all, must not be refused for the configured one."""
    assert faust_web_address(argv, "127.0.0.1", 6066) == expected


def test_an_address_that_does_not_resolve_is_one_line() -> None:
    server = MetricsServer(CollectorRegistry(), addr="not.an.addr.invalid", port=0)
    with pytest.raises(ConfigError, match=r"^cannot serve /metrics on not\.an\.addr\.invalid:0 \(X\): "):
        serve_metrics(server, "X")


def test_a_free_port_is_served() -> None:
    server = MetricsServer(CollectorRegistry(), addr="127.0.0.1", port=0)
    serve_metrics(server, "X")
    try:
        assert server.port > 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
    finally:
        server.stop()


@pytest.mark.parametrize("variable, value, expected", [
    ("STOCKANOMALY_DETECTORS", "high_volume,bogus", "stockanomaly worker: STOCKANOMALY_DETECTORS: unknown detector 'bogus'; choose from"),
    ("STOCKANOMALY_DETECTORS", " ,telepathy", "stockanomaly worker: STOCKANOMALY_DETECTORS: unknown detector 'telepathy'; choose from"),
    ("STOCKANOMALY_THRESHOLDS", "/nonexistent/thresholds.json",
     "stockanomaly worker: thresholds file /nonexistent/thresholds.json does not exist"),
])
def test_the_worker_refuses_bad_detector_settings_before_it_starts(variable: str, value: str, expected: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), variable: value}
    done = subprocess.run([sys.executable, "-c", "import entrypoints.worker"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr


class _Answer(BaseHTTPRequestHandler):
    status = 404

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"404 page not found\n")  # as Prometheus answers, newline and all

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_is_not_elasticsearch_stops_the_indexer_at_its_start() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(ConfigError,
                           match=rf"^ELASTICSEARCH_URL: {url} answered HTTP 404 to a cluster health ") as exc:
            check_elasticsearch(url)
        assert "\n" not in str(exc.value)  # one line, the server's message in it
        assert "request: 404 page not found (is it Elasticsearch?" in str(exc.value)
    finally:
        server.shutdown()
        server.server_close()


def test_an_elasticsearch_not_up_yet_is_a_warning_not_an_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once the socket is closed
    from adapters.elasticsearch import ElasticsearchSettings, probe

    reason = probe(ElasticsearchSettings(url=f"http://127.0.0.1:{port}"), timeout=2.0)
    assert reason is not None and "ConnectionError" in reason
    with structlog.testing.capture_logs() as logs:
        check_elasticsearch(f"http://127.0.0.1:{port}")
    assert [e["event"] for e in logs] == ["elasticsearch_unreachable"]



def test_the_worker_says_which_suppressions_file_it_honours(tmp_path: Path) -> None:
    from adapters.files.suppressions import SuppressionsFile, save_suppressions
    from domain.suppressions import Suppression

    path = tmp_path / "suppressions.json"
    rules_file = SuppressionsFile(path)
    with structlog.testing.capture_logs() as logs:
        assert describe_suppressions(rules_file) is None  # not there yet (or mistyped): read once it appears
    assert [(e["event"], e["log_level"], e["path"]) for e in logs] == [("suppressions_file_missing", "warning",
                                                                       str(path))]
    save_suppressions(path, [Suppression(symbol="NVDA", detector="high_volume")])
    assert describe_suppressions(rules_file) == 1  # logged at INFO, with the path
    assert describe_suppressions(None) is None


def test_the_workers_kafka_client_says_each_message_once_per_outage_through_every_client_logger() -> None:
    import logging

    from entrypoints.logging_setup import OncePerOutage, throttle_kafka_client

    child = logging.getLogger("aiokafka.test_throttle")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    child.addHandler(handler)
    try:
        throttle_kafka_client(quiet=60)
        for attempt in range(100):  # a client retrying while the broker is away
            child.error("Failed fetch messages from %s: %s", 1, f"attempt {attempt}")
        child.error("Unable connect to node with id %s", 1)
    finally:
        child.removeHandler(handler)
        for logger in logging.Logger.manager.loggerDict.values():  # as it was for the other tests
            if isinstance(logger, logging.Logger):
                logger.filters = [f for f in logger.filters if not isinstance(f, OncePerOutage)]
    assert seen == ["Failed fetch messages from 1: attempt 0", "Unable connect to node with id 1"]


@pytest.mark.asyncio
async def test_the_log_readers_partition_by_partition_checks_say_nothing_at_info() -> None:
    """The indexer checks each offset jump (a transaction marker after every take of the workers) with
    its log reader, which assigns itself that one partition: at INFO aiokafka said "Updating subscribed
    topics to:" for each, a six-line table in Faust's log, about twice a second (2,256 lines in 5 min)."""
    import logging

    from aiokafka import TopicPartition

    from adapters.faust.sequence import LogReader
    from entrypoints.logging_setup import Demoted, OncePerOutage, throttle_kafka_client

    state = logging.getLogger("aiokafka.consumer.subscription_state")
    seen: list[tuple[str, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.levelname, record.getMessage()))

    handler, level = Keep(), state.level
    state.addHandler(handler)
    consumer = LogReader("127.0.0.1:1", read_committed=True).new_consumer()
    try:
        throttle_kafka_client(quiet=60)
        for shown in (logging.INFO, logging.DEBUG):
            state.setLevel(shown)
            for topic, partition in [("anomalies", 1), ("incidents", 0), ("anomalies", 3)]:
                consumer.assign([TopicPartition(topic, partition)])
    finally:
        await consumer.stop()
        state.removeHandler(handler)
        state.setLevel(level)
        for logger in logging.Logger.manager.loggerDict.values():  # as it was for the other tests
            if isinstance(logger, logging.Logger):
                logger.filters = [f for f in logger.filters if not isinstance(f, (OncePerOutage, Demoted))]
    assert seen == [("DEBUG", f"Updating subscribed topics to: {frozenset({t})}")
                    for t in ("anomalies", "incidents", "anomalies")]


_COMPILE_ONE_KERNEL = """
import numpy as np
from domain.compiled import compiled_in_this_process
from domain.detectors.forest import _depths
_depths(np.array([1, -1, -1]), np.array([2, -1, -1]))
print(compiled_in_this_process())
"""


def test_a_kernel_compiled_is_counted_and_one_loaded_from_the_cache_is_not(tmp_path: Path) -> None:
    """What the worker's start decides on: the first process compiles (and caches) the kernel, the
    second loads it."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_DISABLE_JIT", None)
    counts = [subprocess.run([sys.executable, "-c", _COMPILE_ONE_KERNEL], env=env, capture_output=True, text=True,
                             timeout=300, check=True).stdout.split()[-1] for _ in range(2)]
    assert counts == ["1", "0"]


def test_a_worker_that_compiled_its_kernels_starts_again_once_with_the_same_command() -> None:
    """Compiling leaves ~200 MiB of LLVM's in the process (648 against 451 MiB measured at start):
    the worker execs itself once, with the interpreter's options and `-m faust` kept, to load what
    it just cached; not when it loaded them, not for another Faust command, not a second time."""
    argv = ["/venv/bin/faust", "-A", "entrypoints.worker", "worker", "-l", "info"]
    orig = ["/venv/bin/python3", "-X", "dev", "/venv/bin/faust", "-A", "entrypoints.worker", "worker", "-l", "info"]
    assert restart_after_compiling(27, argv, orig, "/venv/bin/python", {}) == ["/venv/bin/python", *orig[1:]]
    module = ["/lib/faust/__main__.py", "-A", "entrypoints.worker", "worker"]
    assert restart_after_compiling(3, module, ["python", "-m", "faust", *module[1:]], "/usr/bin/python3", {}) == [
        "/usr/bin/python3", "-m", "faust", "-A", "entrypoints.worker", "worker"]
    assert restart_after_compiling(0, argv, orig, "/venv/bin/python", {}) is None
    assert restart_after_compiling(27, argv, orig, "/venv/bin/python", {RESTARTED_AFTER_COMPILING: "1"}) is None
    for other in (["faust", "-A", "entrypoints.worker", "tables"], [*argv, "--help"], ["pytest", "tests/unit"]):
        assert restart_after_compiling(27, other, other, "/venv/bin/python", {}) is None


def test_the_worker_says_it_is_loading_its_kernels_before_a_warm_up_that_may_compile_for_minutes(logs_of: Any) -> None:
    """A first start compiled for 110 s (two workers at once) with nothing in either log: the line
    comes before the warm-up, and not again from the process started again after compiling."""
    seen: list[list[str]] = []
    logs = logs_of(topics)
    seconds = warm_up_kernels([lambda: seen.append([e["event"] for e in logs]), lambda: None], {})
    warm_up_kernels([lambda: seen.append([e["event"] for e in logs])], {RESTARTED_AFTER_COMPILING: "1"})
    assert seen == [["kernels_loading"], ["kernels_loading"]] and seconds >= 0
    assert logs[0]["log_level"] == "info" and "compiles them" in logs[0]["action"]


def test_a_worker_with_no_kernels_cached_says_it_compiles_before_and_how_long_it_took_after(logs_of: Any) -> None:
    """A first start (numba's cache empty) says `compiling_kernels` before the warm-up and
    `kernels_compiled` with its seconds after, whether the worker then starts again or runs on."""
    seen: list[list[str]] = []
    logs = logs_of(topics)
    warm_up_kernels([lambda: seen.append([e["event"] for e in logs])], {}, cached=False)
    say_compiled(38, 41.26, restarting=True)
    say_compiled(38, 40.0, restarting=False)  # a cache it could not write: it runs on, and says so too
    say_compiled(0, 0.8, restarting=False)  # loaded from the cache: nothing more to say
    assert seen == [["compiling_kernels"]]
    assert [(e["event"], e.get("seconds"), "action" in e) for e in logs] == [
        ("compiling_kernels", None, True), ("kernels_compiled", 41.3, True), ("kernels_compiled", 40.0, False)]
    assert "first start" in logs[0]["action"]


class _Signal:
    def __init__(self) -> None:
        self.receivers: list[Any] = []

    def connect(self, receiver: Any) -> Any:
        self.receivers.append(receiver)
        return receiver

    def send(self) -> None:
        for receiver in self.receivers:
            receiver(None)


def test_the_start_up_checks_run_once_though_faust_prepares_the_app_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """`faust -A entrypoints.indexer worker` sends on_worker_init twice (its command line finds the app
    twice): the indexer logged `elasticsearch_unreachable` twice for one outage."""
    app = type("App", (), {"on_worker_init": _Signal()})()
    checked: list[str] = []
    monkeypatch.setattr(topics, "require_topics", lambda *args: checked.append("topics"))
    monkeypatch.setattr(topics, "changelog_topics", lambda app: [])
    monkeypatch.setattr(sys, "argv", ["faust", "-A", "entrypoints.indexer", "worker"])
    topics.before_start(app, object(), "indexer", lambda: checked.append("prepared"))  # type: ignore[arg-type]
    app.on_worker_init.send()
    app.on_worker_init.send()
    assert checked == ["topics", "prepared"]
