"""`stockanomaly notify` against the real Kafka and a webhook receiver on loopback: the receiver is
down at first (the notifier retries and commits nothing), comes back and gets exactly what the
policy admits, once; the offsets are then committed to the end; a restarted notifier resumes after
them and sends only what is new."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiohttp import web

from domain.model import Anomaly, anomaly_id
from domain.notifications import NotificationPolicy
from integration_support import eventually_async

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TS = 1_746_451_800_000_000_000  # 2025-05-05 09:30:00 New York
S = 1_000_000_000


def made(symbol: str, at_s: int, score: float, k: int) -> Anomaly:
    ts = TS + at_s * S
    return Anomaly(id=anomaly_id("high_volume", symbol, 2, 7, ts, k), detector="high_volume", symbol=symbol,
                   ts_event=ts, price=113.0, size=50_000, score=score,
                   severity="high" if score >= 4 else "medium" if score >= 2 else "low",
                   reason=f"size 50,000 is large ({k})", sequence=k, session="regular",
                   ts_local="2025-05-05T09:30:00.000000000-04:00")


class Receiver:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.ids.append((await request.json())["id"])
        return web.Response(text="ok")

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def start_notifier(bootstrap: str, topic: str, app_id: str, port: int,
                         heartbeat: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "STOCKANOMALY_ANOMALIES_TOPIC": topic,
           "STOCKANOMALY_APP_ID": app_id, "STOCKANOMALY_NOTIFY_MIN_SEVERITY": "medium",
           "STOCKANOMALY_NOTIFY_PER_SYMBOL_SECONDS": "300", "STOCKANOMALY_NOTIFIER_METRICS_PORT": "0",
           "STOCKANOMALY_METRICS_ADDR": "127.0.0.1"}
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "stockanomaly"), "--log-level", "INFO", "notify", "--webhook", f"http://127.0.0.1:{port}/hook",
        "--heartbeat", str(heartbeat),
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def wait_for_line(process: asyncio.subprocess.Process, text: str, timeout: float = 60) -> str:
    async def read() -> str:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            assert line, f"the notifier exited before logging {text!r}"
            if text.encode() in line:
                return line.decode()

    return await asyncio.wait_for(read(), timeout)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("stockanomaly_"))}


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 30)


@pytest.mark.asyncio
async def test_notifications_survive_a_receiver_outage_and_a_restart_exactly_as_the_policy_says(
        kafka_bootstrap, new_topic, suffix, tmp_path) -> None:
    topic = await new_topic("anomalies", partitions=2)
    # Each symbol on one partition (keyed by symbol, as the worker writes them): its order is fixed.
    records = [made("NVDA", 0, 2.5, 1), made("NVDA", 60, 3.0, 2), made("NVDA", 400, 1.2, 3),
               made("NVDA", 420, 4.2, 4), made("AAPL", 10, 2.1, 5), made("AAPL", 20, 1.0, 6),
               made("AAPL", 900, 2.2, 7)]
    policy = NotificationPolicy("medium", 300 * S)
    expected = [a.id for a in records if policy.admit(a) is not None]
    assert 0 < len(expected) < len(records)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for a in records:
            await producer.send_and_wait(topic, json.dumps(a.to_dict()).encode(), key=a.symbol.encode(),
                                         partition=0 if a.symbol == "NVDA" else 1)
        await producer.send_and_wait(topic, b"{not an anomaly", partition=1)  # skipped, logged
    finally:
        await producer.stop()
    ends = {TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 4}

    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    receiver = Receiver()
    app_id = f"it-notify-{suffix}"
    group = f"{app_id}-notifier-{topic}"
    offsets = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await offsets.start()

    async def committed() -> dict[TopicPartition, int | None]:
        return {tp: await offsets.committed(tp) for tp in ends}

    notifier = await start_notifier(kafka_bootstrap, topic, app_id, port, tmp_path / "alive")
    try:
        # Nothing listens yet: the notifier retries, and commits nothing meanwhile; stopped in the
        # middle of a retry, it exits at once, still having committed nothing.
        await wait_for_line(notifier, "webhook_retry")
        assert await stop(notifier) == 0
        assert set((await committed()).values()) == {None}
        notifier = await start_notifier(kafka_bootstrap, topic, app_id, port, tmp_path / "alive")
        metrics_port = json.loads(await wait_for_line(notifier, "metrics_endpoint_started"))["port"]
        await wait_for_line(notifier, "webhook_retry")
        assert set((await committed()).values()) == {None}
        await receiver.start(port)

        async def delivered() -> bool:
            return len(receiver.ids) >= len(expected) and await committed() == ends

        await eventually_async(delivered, timeout=90, what="every admitted anomaly delivered and committed")
        assert sorted(receiver.ids) == sorted(expected)
        assert (tmp_path / "alive").exists()  # the health check's heartbeat
        counted = scrape(metrics_port)
        assert counted['stockanomaly_notifications_total{result="sent"}'] == len(expected)
        assert counted['stockanomaly_notifications_total{result="held_back"}'] + \
            counted['stockanomaly_notifications_total{result="below_severity"}'] == len(records) - len(expected)
        assert counted['stockanomaly_notifications_total{result="refused"}'] == 0
        assert counted["stockanomaly_webhook_retries_total"] >= 1
        assert await stop(notifier) == 0

        # Restarted, it resumes after the committed offsets: only what is new is sent.
        fresh = [made("MSFT", 0, 3.3, 8), made("TSLA", 0, 2.4, 9)]
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for partition, a in enumerate(fresh):
                await producer.send_and_wait(topic, json.dumps(a.to_dict()).encode(), key=a.symbol.encode(),
                                             partition=partition)
        finally:
            await producer.stop()
        notifier = await start_notifier(kafka_bootstrap, topic, app_id, port, tmp_path / "alive")

        async def caught_up() -> bool:
            return all(a.id in receiver.ids for a in fresh)

        await eventually_async(caught_up, timeout=90, what="the new anomalies delivered")
        assert sorted(receiver.ids) == sorted(expected + [a.id for a in fresh])  # nothing sent twice
    finally:
        if notifier.returncode is None:
            await stop(notifier)
        await offsets.stop()
        await receiver.stop()
