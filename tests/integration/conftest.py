"""Fixtures for integration tests against the Kafka, Elasticsearch and Prometheus of services.sh.

Services are checked once per run. When one is unreachable the fixture starts it with
`scripts/services.sh up <service>` if STOCKANOMALY_START_SERVICES=1 (and stops it again at the
end of the run unless STOCKANOMALY_KEEP_SERVICES=1); otherwise its tests are skipped, or fail
when CI=true so that a broken CI setup can never pass by skipping.
Every test gets its own topics, indices and scrape targets (uuid suffix), removed afterwards.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

REPO = Path(__file__).resolve().parents[2]
SERVICES_SH = REPO / "scripts" / "services.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


# -- service discovery and start -------------------------------------------------------------
def _defaults() -> dict[str, str]:
    """Endpoints as services.sh computes them; explicit environment variables win."""
    out = subprocess.run(["bash", str(SERVICES_SH), "env"], capture_output=True, text=True,
                         check=True).stdout
    found = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    return {k: os.environ.get(k) or shlex.split(v)[0] for k, v in found.items()}


ENDPOINTS = _defaults()


def _kafka_up() -> bool:
    host, port = ENDPOINTS["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def _docker_up() -> bool:
    """The Docker engine answers GET /_ping on its socket (scripts/services.sh up docker)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect("/var/run/docker.sock")
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(1024).split(b"\r\n", 1)[0] + b" "
    except OSError:
        return False


PROBES: dict[str, tuple[Callable[[], bool], str]] = {
    "docker": (_docker_up, "unix:///var/run/docker.sock"),
    "kafka": (_kafka_up, ENDPOINTS["KAFKA_BOOTSTRAP_SERVERS"]),
    "elasticsearch": (lambda: _http_ok(f"{ENDPOINTS['ELASTICSEARCH_URL']}/_cluster/health"),
                      ENDPOINTS["ELASTICSEARCH_URL"]),
    "prometheus": (lambda: _http_ok(f"{ENDPOINTS['PROMETHEUS_URL']}/-/ready"),
                   ENDPOINTS["PROMETHEUS_URL"]),
    "alertmanager": (lambda: _http_ok(f"{ENDPOINTS['ALERTMANAGER_URL']}/-/ready"),
                     ENDPOINTS["ALERTMANAGER_URL"]),
}


def _require(service: str, request: pytest.FixtureRequest) -> None:
    probe, where = PROBES[service]
    if probe():
        return
    detail = ""
    if os.environ.get("STOCKANOMALY_START_SERVICES") == "1":
        started = subprocess.run(["bash", str(SERVICES_SH), "up", service], capture_output=True,
                                 text=True)
        if started.returncode == 0 and probe():
            if os.environ.get("STOCKANOMALY_KEEP_SERVICES") != "1":
                request.session.config.add_cleanup(
                    lambda: subprocess.run(["bash", str(SERVICES_SH), "down", service],
                                           capture_output=True))
            return
        detail = f"\nscripts/services.sh up {service} said:\n{started.stderr[-3000:]}"
    message = (f"{service} is not reachable at {where}: start it with "
               f"`scripts/services.sh up {service}` or set STOCKANOMALY_START_SERVICES=1{detail}")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    _require("kafka", request)
    return ENDPOINTS["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def es_url(request: pytest.FixtureRequest) -> str:
    _require("elasticsearch", request)
    return ENDPOINTS["ELASTICSEARCH_URL"]


@pytest.fixture(scope="session")
def prometheus_url(request: pytest.FixtureRequest) -> str:
    _require("prometheus", request)
    return ENDPOINTS["PROMETHEUS_URL"]


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> str:
    _require("docker", request)
    return PROBES["docker"][1]


@pytest.fixture(scope="session")
def alertmanager_url(request: pytest.FixtureRequest) -> str:
    _require("alertmanager", request)
    return ENDPOINTS["ALERTMANAGER_URL"]


class WebhookReceiver:
    """What Alertmanager's webhook receivers post, on the loopback port its config names
    (STOCKANOMALY_ALERT_WEBHOOK_PORT): each notification's path (/page, /warning) and JSON body."""

    def __init__(self, port: int) -> None:
        import http.server
        import threading

        self.posts: list[tuple[str, dict]] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, path: str) -> list[dict]:
        return [alert for where, body in list(self.posts) if where == path for alert in body.get("alerts", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alert_webhook(alertmanager_url: str) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(int(ENDPOINTS["STOCKANOMALY_ALERT_WEBHOOK_PORT"]))
    yield receiver
    receiver.close()


class Broker:
    """The Kafka broker services.sh started, to be killed (-9, its whole process group) and restarted
    on the same data directory, as a crashed broker and its supervisor would, or paused and resumed."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.paused = False

    def kill(self) -> None:
        os.killpg(self._pid(), signal.SIGKILL)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the broker holds every connection open and answers nothing (a hung broker, or
        one cut off by the network), so what a client has sent waits on it."""
        os.killpg(self._pid(), signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.killpg(self._pid(), signal.SIGCONT)
        self.paused = False

    def _pid(self) -> int:
        return int(json.loads(self.pid_file.read_text())["pid"])

    def start(self) -> None:
        started = subprocess.run(["bash", str(SERVICES_SH), "up", "kafka"], capture_output=True, text=True)
        assert started.returncode == 0 and _kafka_up(), f"the broker did not come back: {started.stderr[-3000:]}"


@pytest.fixture
def broker(kafka_bootstrap: str) -> Iterator[Broker]:
    run_dir = Path(os.environ.get("STOCKANOMALY_RUN_DIR") or REPO / ".services")
    pid_file = run_dir / "kafka" / "kafka.pid"
    if not pid_file.exists():
        message = f"the broker at {kafka_bootstrap} was not started by scripts/services.sh (no {pid_file})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    control = Broker(pid_file)
    yield control
    if control.paused:
        control.resume()
    if not _kafka_up():  # whatever happened in the test, the next ones get their broker back
        control.start()


# -- per-test resources ----------------------------------------------------------------------
@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:10]


@pytest_asyncio.fixture
async def kafka_admin(kafka_bootstrap: str):  # type: ignore[no-untyped-def]
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    yield admin
    await admin.close()


@pytest_asyncio.fixture
async def new_topic(kafka_admin, suffix: str) -> AsyncIterator[Callable]:  # type: ignore[no-untyped-def]
    """Factory: `await new_topic("trades", partitions=3, config={...})` -> unique topic name."""
    from aiokafka.admin import NewTopic

    from integration_support import eventually_async

    created: list[str] = []

    async def create(name: str, *, partitions: int = 1,
                     config: dict[str, str] | None = None) -> str:
        topic = f"it-{name}-{suffix}"
        await kafka_admin.create_topics([NewTopic(topic, partitions, 1,
                                                  topic_configs=config or {})])
        created.append(topic)

        async def listed() -> bool:
            return topic in await kafka_admin.list_topics()

        await eventually_async(listed, timeout=30, what=f"topic {topic} in metadata")
        return topic

    yield create
    existing = set(await kafka_admin.list_topics())
    # Faust and the tests may add internal topics (changelogs) carrying the suffix too.
    doomed = sorted({t for t in existing if suffix in t} | (set(created) & existing))
    if doomed:
        await kafka_admin.delete_topics(doomed)


@pytest.fixture(scope="session")
def es(es_url: str):  # type: ignore[no-untyped-def]
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def es_prefix(es, suffix: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A unique name prefix for indices and index templates; all of them deleted afterwards."""
    prefix = f"it-{suffix}"
    yield prefix
    es.indices.delete(index=f"{prefix}*", ignore_unavailable=True, allow_no_indices=True,
                      expand_wildcards="all")
    from elasticsearch import NotFoundError

    try:
        templates = es.indices.get_index_template(name=f"{prefix}*")["index_templates"]
    except NotFoundError:
        templates = []
    for template in templates:
        es.indices.delete_index_template(name=template["name"])


@pytest.fixture
def prometheus_target(prometheus_url: str, suffix: str) -> Iterator[Callable]:
    """Factory registering scrape targets through the `stockanomaly` job's file_sd directory."""
    targets_dir = Path(ENDPOINTS["STOCKANOMALY_PROMETHEUS_TARGETS_DIR"])
    written: list[Path] = []

    def register(targets: list[str], labels: dict[str, str] | None = None) -> Path:
        path = targets_dir / f"it-{suffix}-{len(written)}.json"
        tmp = path.with_suffix(".tmp")  # not matched by *.json: Prometheus never reads half
        tmp.write_text(json.dumps([{"targets": targets, "labels": labels or {}}]))
        tmp.replace(path)
        written.append(path)
        return path

    yield register
    for path in written:
        path.unlink(missing_ok=True)


@pytest.fixture
def prometheus_rules(prometheus_url: str, suffix: str) -> Iterator[Callable]:
    """Factory loading a rule file (YAML text) into the running Prometheus: written to the local
    `local-rules/` directory of services.sh, checked with promtool when present, then reloaded."""
    import shutil

    from integration_support import eventually

    rules_dir = Path(ENDPOINTS["STOCKANOMALY_PROMETHEUS_RULES_DIR"])
    written: list[Path] = []

    def reload() -> None:
        request = urllib.request.Request(f"{prometheus_url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    def groups() -> set[str]:
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/rules", timeout=5) as response:
            return {g["file"] for g in json.load(response)["data"]["groups"]}

    def load(text: str) -> Path:
        if not rules_dir.is_dir():
            pytest.fail(f"{rules_dir} does not exist: restart Prometheus with a current "
                        f"scripts/services.sh (`down prometheus` then `up prometheus`)", pytrace=False)
        path = rules_dir / f"it-{suffix}-{len(written)}.yml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        promtool = shutil.which("promtool")
        if promtool:
            check = subprocess.run([promtool, "check", "rules", str(tmp)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
        tmp.replace(path)
        written.append(path)
        reload()
        eventually(lambda: any(f.endswith(path.name) for f in groups()), timeout=30,
                   what=f"Prometheus loading {path} (is `local-rules/*.yml` in its rule_files? "
                        f"restart it with scripts/services.sh)")
        return path

    yield load
    for path in written:
        path.unlink(missing_ok=True)
    if written:
        reload()
