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
from aiokafka.admin import AIOKafkaAdminClient

from domain.model import Anomaly, anomaly_id
from domain.notifications import NotificationPolicy
from integration_support import HookReceiver, eventually_async, free_port

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


async def produce(bootstrap: str, topic: str, records: list[Anomaly], partition: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for a in records:
            await producer.send_and_wait(topic, json.dumps(a.to_dict()).encode(), key=a.symbol.encode(),
                                         partition=partition)
    finally:
        await producer.stop()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("stockanomaly_"))}


async def committed_to(admin: AIOKafkaAdminClient, group: str, tp: TopicPartition, end: int) -> bool:
    """Whether `group` has committed `tp` up to `end`."""
    found = (await admin.list_consumer_group_offsets(group, partitions=[tp])).get(tp)
    return found is not None and found.offset == end


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

    port = free_port()
    receiver = HookReceiver()
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
        for partition, a in enumerate(fresh):
            await produce(kafka_bootstrap, topic, [a], partition)
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


@pytest.mark.asyncio
async def test_a_restarted_notifier_remembers_what_it_held_back_as_if_it_had_never_stopped(
        kafka_bootstrap, new_topic, suffix, tmp_path) -> None:
    """The per-symbol limit's memory is committed with the offsets: a record within the limit of the
    last one sent before a restart is still held back after it, and the count of those held back
    before the restart is told in the symbol's next message."""
    topic = await new_topic("anomalies", partitions=1)
    before = [made("NVDA", 0, 2.5, 1), made("NVDA", 60, 3.0, 2), made("NVDA", 120, 3.1, 3)]
    after = [made("NVDA", 200, 3.2, 4), made("NVDA", 400, 2.6, 5)]
    whole = NotificationPolicy("medium", 300 * S)
    told = {n.id: n.held_back for n in map(whole.admit, before + after) if n is not None}
    assert told == {before[0].id: 0, after[1].id: 3}  # one uninterrupted run
    await produce(kafka_bootstrap, topic, before)
    port, receiver = free_port(), HookReceiver()
    await receiver.start(port)
    app_id = f"it-notify-memory-{suffix}"
    group = f"{app_id}-notifier-{topic}"
    tp = TopicPartition(topic, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()

    notifier = await start_notifier(kafka_bootstrap, topic, app_id, port, tmp_path / "alive")
    try:
        await eventually_async(lambda: committed_to(admin, group, tp, 3), timeout=90, what="the first three committed")
        assert receiver.ids == [before[0].id]
        assert (await admin.list_consumer_group_offsets(group, partitions=[tp]))[tp].metadata  # the memory
        assert await stop(notifier) == 0
        await produce(kafka_bootstrap, topic, after)
        notifier = await start_notifier(kafka_bootstrap, topic, app_id, port, tmp_path / "alive")
        await eventually_async(lambda: committed_to(admin, group, tp, 5), timeout=90, what="the last two committed")
        assert receiver.held_back == told  # NVDA at 200 s still held back; 400 s says 3 were
        assert await stop(notifier) == 0
    finally:
        if notifier.returncode is None:
            await stop(notifier)
        await admin.close()
        await receiver.stop()


@pytest.mark.asyncio
async def test_a_notifier_started_before_its_topic_exists_says_so_and_reads_it_once_created(
        kafka_bootstrap, new_topic, suffix, tmp_path) -> None:
    """As in compose, where the notifier may start before the first worker creates the topic: it says
    the topic is missing (it used to wait in silence), and reads it within seconds of its creation
    (the consumer's metadata used to be refreshed every 5 minutes); stopped, it closes cleanly."""
    topic = f"it-anomalies-late-{suffix}"  # created below, once the notifier runs
    port, receiver = free_port(), HookReceiver()
    await receiver.start(port)
    notifier = await start_notifier(kafka_bootstrap, topic, f"it-notify-late-{suffix}", port, tmp_path / "alive")
    try:
        await wait_for_line(notifier, "topic_missing")
        assert await new_topic("anomalies-late", partitions=2) == topic
        first = made("NVDA", 0, 3.0, 1)
        await produce(kafka_bootstrap, topic, [first])

        async def delivered() -> bool:
            return receiver.ids == [first.id]

        await eventually_async(delivered, timeout=60, what="the first anomaly of the new topic delivered")
        assert await stop(notifier) == 0
        assert notifier.stdout is not None
        rest = (await notifier.stdout.read()).decode()
        assert "Unclosed" not in rest and "Traceback" not in rest, rest[-2000:]
        # The client's own lines of the missing topic (4 beside ours at a fresh start) were said at DEBUG.
        assert f"Topic {topic} not found" not in rest and f"No partition metadata for topic {topic}" not in rest, rest
    finally:
        if notifier.returncode is None:
            await stop(notifier)
        await receiver.stop()


class SlowFirstChannel:
    """A webhook whose first post takes `first_seconds` (an outage that ends), then answers at once."""

    name = "slow-first"

    def __init__(self, first_seconds: float) -> None:
        self.first_seconds = first_seconds
        self.ids: list[str] = []
        self.held_back: dict[str, int] = {}

    async def send(self, notification) -> None:  # type: ignore[no-untyped-def]
        if not self.ids:
            await asyncio.sleep(self.first_seconds)
        self.ids.append(notification.id)
        self.held_back[notification.id] = notification.held_back


@pytest.mark.asyncio
async def test_a_batch_sent_past_the_poll_interval_is_read_again_and_the_limits_memory_survives(
        kafka_bootstrap, new_topic, suffix) -> None:
    """A webhook outage longer than the consumer's poll interval makes it leave its group, and its
    partition (with the per-symbol limit's memory) is revoked while the batch is being sent: the
    batch was committed anyway, with an empty memory, and the next record within the limit was sent
    where a notifier that never stopped holds it back."""
    from adapters.kafka.notifier import notify_from_topic
    from application.notify import Notify

    topic = await new_topic("anomalies", partitions=1)
    first = [made("NVDA", 0, 2.5, 1), made("NVDA", 60, 3.0, 2), made("NVDA", 400, 3.1, 3)]
    later = made("NVDA", 450, 3.2, 4)  # within 300 s of the last one sent: held back
    await produce(kafka_bootstrap, topic, first)
    channel = SlowFirstChannel(first_seconds=6.0)
    notify = Notify(lambda: NotificationPolicy("medium", 300 * S), [channel])
    group = f"it-notify-poll-{suffix}"

    async def handle(records, partition: int) -> str:  # type: ignore[no-untyped-def]
        await notify(records, partition)
        return notify.policy(partition).memory()[0]

    tp = TopicPartition(topic, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()

    task = asyncio.create_task(notify_from_topic(kafka_bootstrap, topic, group, handle, assigned=notify.recall,
                                                 revoked=notify.forget, max_poll_interval_ms=2_000))
    try:
        await eventually_async(lambda: committed_to(admin, group, tp, 3), timeout=90, what="the first three committed")
        assert (await admin.list_consumer_group_offsets(group, partitions=[tp]))[tp].metadata  # the memory
        await produce(kafka_bootstrap, topic, [later])
        await eventually_async(lambda: committed_to(admin, group, tp, 4), timeout=60, what="the fourth committed")
        assert later.id not in channel.ids  # held back, as by a notifier that never stopped
        assert set(channel.ids) == {first[0].id, first[2].id}  # the slow batch sent again: at least once
        assert channel.held_back[first[2].id] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await admin.close()
