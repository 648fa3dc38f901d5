"""A single-node Kafka (KRaft, combined broker+controller) from Maven Central jars."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from .base import Service, base_env
from .install import find_java_home, maven, say, sha256_file
from .proc import ServiceError

API_VERSIONS_KEY = 18


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64, unpadded. Drawn again when it starts
    with '-', which the storage tool's option parser takes for an option (1 in 64 ids: a fresh
    checkout's Kafka then failed to format its storage); Kafka's own random ids skip those too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def api_versions(host: str, port: int, timeout: float = 2.0) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 round trip: {api_key: (min, max)}. A broker answers once it serves."""
    client_id = b"stockanomaly-services"
    body = struct.pack(">hhih", API_VERSIONS_KEY, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        data = _recv_exact(sock, size)
    _correlation, error, count = struct.unpack_from(">ihi", data, 0)
    if error != 0:
        return {}
    versions = {}
    for i in range(count):
        key, low, high = struct.unpack_from(">hhh", data, 10 + 6 * i)
        versions[key] = (low, high)
    return versions


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


class Kafka(Service):
    name = "kafka"

    @property
    def _pom(self) -> Path:
        return self.settings.repo / "infra" / "kafka" / "pom.xml"

    @property
    def lib(self) -> Path:
        key = f"{self.settings.kafka_version}-{sha256_file(self._pom)[:12]}"
        return self.settings.cache / "kafka" / key / "lib"

    def install(self) -> bool:
        done = self.lib.parent / ".complete"
        if done.exists():
            return True
        tmp = self.lib.with_name("lib.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        say(f"kafka: resolving Apache Kafka {self.settings.kafka_version} from Maven Central")
        maven(self.settings.cache, [f"-Dkafka.version={self.settings.kafka_version}",
                                    "dependency:copy-dependencies",
                                    f"-DoutputDirectory={tmp}"],
              what="resolving Kafka", pom=self._pom)
        shutil.rmtree(self.lib, ignore_errors=True)
        tmp.rename(self.lib)
        done.touch()
        return False

    def _java(self) -> str:
        return str(find_java_home(17, explicit=_env_java(),
                                   apt_packages=("openjdk-17-jre-headless",)) / "bin" / "java")

    def _jvm_args(self) -> list[str]:
        log4j = self.settings.repo / "infra" / "kafka" / "log4j2.properties"
        heap = self.settings.kafka_heap
        return [f"-Xms{min(heap, '256m', key=_mebibytes)}", f"-Xmx{heap}",
                "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.dir / 'logs'}",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.lib}/*"]

    def prepare(self) -> None:
        s = self.settings
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(SERVER_PROPERTIES.format(
            host=s.host, port=s.kafka_port, controller_port=s.kafka_controller_port, data=data))
        if (data / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        proc = subprocess.run([self._java(), *self._jvm_args(), "kafka.tools.StorageTool",
                               "format", "-t", cluster_id, "-c", str(props)],
                              capture_output=True, text=True)
        with open(self.log_path, "a") as log:
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise ServiceError(f"kafka: formatting KRaft storage failed; log: {self.log_path}")

    def command(self) -> tuple[list[str], dict[str, str], Path, str | None]:
        argv = [self._java(), *self._jvm_args(), "kafka.Kafka",
                str(self.dir / "server.properties")]
        return argv, base_env(), self.dir, None

    def healthy(self) -> bool:
        return API_VERSIONS_KEY in api_versions(self.settings.host, self.settings.kafka_port)

    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    def endpoint(self) -> str:
        return self.settings.kafka_bootstrap

    def log_paths(self) -> list[Path]:
        return [self.log_path, self.dir / "logs" / "server.log"]


def _env_java() -> str:
    return os.environ.get("STOCKANOMALY_KAFKA_JAVA_HOME", "")


def _mebibytes(size: str) -> float:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return float(size[:-1]) * units[size[-1].lower()] if size[-1].isalpha() else float(size)


# Small partition counts for the internal topics keep the first consumer group and the first
# transaction fast on a 2-core box; the short cleaner backoff lets tests observe compaction.
SERVER_PROPERTIES = """\
# Written by scripts/services.sh on every `up`; edit scripts/devservices/kafka.py instead.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
log.retention.check.interval.ms=10000
"""
