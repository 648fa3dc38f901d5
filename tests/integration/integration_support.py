"""Helpers for integration tests: bounded polling (never a sleep to synchronise), Kafka reads."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
import urllib.request
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

T = TypeVar("T")


def stop_processes(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every process still running, SIGKILL to any not gone within 60 s."""
    processes = list(processes)
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A /metrics endpoint on 127.0.0.1:port: sample name and sorted labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class ConditionTimeout(AssertionError):
    """The awaited condition did not hold in time; carries the last value seen."""


def eventually(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> T:
    """Call probe until it returns something truthy; return that, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise ConditionTimeout(f"{what} not met within {timeout:.0f}s; last value: {last!r}")


async def eventually_async(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0,
                           interval: float = 0.2, what: str = "condition") -> T:
    """The asyncio twin of `eventually`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise ConditionTimeout(f"{what} not met within {timeout:.0f}s; last value: {last!r}")


async def read_all(bootstrap: str, topic: str, *, partition_count: int = 1,
                   isolation_level: str = "read_uncommitted",
                   timeout: float = 30) -> list[ConsumerRecord]:
    """Every record of a topic up to its end offsets (the last stable offsets when committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []

        async def caught_up() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
            return all([await consumer.position(tp) >= end[tp] for tp in partitions])

        await eventually_async(caught_up, timeout=timeout, what=f"reading {topic} to its end")
        return records
    finally:
        await consumer.stop()


async def topic_config(admin: Any, topic: str) -> dict[str, str]:
    response = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {entry[0]: entry[1] for entry in response[0].resources[0][4]}


def as_messages(trades: Any, per_message: int = 500, chunk: int = 5_000) -> list[tuple[bytes, bytes]]:
    """(key, value) Kafka records for trades, cut the way `stockanomaly ingest` cuts a source:
    source-sized chunks, each split into per-symbol micro-batches in event-time order."""
    from adapters.kafka.codec import encode_batch
    from application.ingest import symbol_batches

    return [encode_batch(symbol, rows) for start in range(0, len(trades), chunk)
            for symbol, rows in symbol_batches(trades[start:start + chunk], per_message)]


class GatedProxy:
    """A TCP proxy to Elasticsearch whose port refuses connections until open(); cut() drops every
    connection and refuses again, like a server going down. The port stays bound throughout."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self._server = self._bind(0)
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.opened = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _bind(port: int) -> socket.socket:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))  # bound but not listening: the kernel refuses connections
        return server

    def open(self) -> None:
        self.opened += 1
        server = self._server
        server.listen(16)
        server.settimeout(0.05)
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = [self._server, *self._sockets], []
        for s in doomed:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() so the port is released now
            except OSError:
                pass
            s.close()
        self._server = eventually(self._rebind, timeout=10, what=f"port {self.port} free to rebind")

    def _rebind(self) -> socket.socket | None:
        try:
            return self._bind(self.port)
        except OSError:
            return None

    def _accept(self, server: socket.socket) -> None:
        while server.fileno() != -1:
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.cut()
        self._server.close()


class HookReceiver:
    """A webhook receiver on loopback (POST /hook), not listening until started: the ids of the
    notifications it got, in order, and the `held_back` count each one told."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.held_back: dict[str, int] = {}
        self.runner: Any = None

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        self.ids.append(body["id"])
        if "held_back" in body:
            self.held_back[body["id"]] = body["held_back"]
        return web.Response(text="ok")

    async def start(self, port: int) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
