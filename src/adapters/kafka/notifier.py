"""The notifier's Kafka side: read the anomalies (or incidents) topic in a consumer group of its
own, hand each partition's batch of records to the handler, and commit the partition's offset only
after its records were sent (or refused for good). Stopped (or crashed) mid-batch, it sends that
batch again on restart: at least once, never lost. Records that do not decode are logged and
skipped (the worker only writes valid ones; anything else on the topic is not ours to tell anyone
about).

The handler's memory of a partition (what its per-symbol limit remembers) is committed with the
offset, as the offset's metadata, and handed back to the handler when a notifier (this one after a
restart, or another after a rebalance) is assigned the partition, before it reads any record of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, GroupCoordinatorNotAvailableError, KafkaError

from adapters.kafka.client_logs import at_debug
from adapters.kafka.errors import said
from adapters.kafka.lag import PartitionProgress, RefreshFailures
from adapters.kafka.records import decode_anomaly, decode_incident
from domain.errors import SourceError
from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter

log = structlog.get_logger("stockanomaly.notifier")

# `handle(records, partition)` returns the memory to commit with the partition's offset.
Handler = Callable[[Sequence[Anomaly | Incident], int], Awaitable[str]]
# (lags, stalled seconds) per partition owned, every LAG_SECONDS
LagReport = Callable[[Mapping[int, int], Mapping[int, float]], None]
PROBE_SECONDS = 10.0  # how often Kafka is asked for its topics (does it answer; does ours exist)
LAG_SECONDS = 5.0  # how often the lag is measured (as the worker's and the indexer's gauges)
ALIVE_SECONDS = 30.0  # the heartbeat stops this long after Kafka last answered


class _Handover(ConsumerRebalanceListener):
    """Hands a partition's committed memory to `assigned` when it is assigned, and tells `revoked`
    when it goes. The consumer starts fetching a partition as soon as it is assigned, before this
    listener has read its memory: the partition is paused until then (records fetched meanwhile are
    dropped by the consumer and fetched again), and `ready` says which partitions may be handled."""

    def __init__(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, group: str,
                 assigned: Callable[[int, str], None], revoked: Callable[[int], None]) -> None:
        self.consumer, self.admin, self.group, self.assigned, self.revoked = consumer, admin, group, assigned, revoked
        self.ready: set[int] = set()
        self.handovers: dict[int, int] = {}  # per partition, how often it was revoked

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        for tp in revoked:
            self.ready.discard(tp.partition)
            self.handovers[tp.partition] = self.handovers.get(tp.partition, 0) + 1
            self.revoked(tp.partition)

    def held_throughout(self, partition: int, handovers: int) -> bool:
        """Whether `partition` is still this notifier's, and has been since it had been revoked
        `handovers` times."""
        return partition in self.ready and self.handovers.get(partition, 0) == handovers

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if not assigned:
            return
        self.consumer.pause(*assigned)
        committed = {}
        try:
            committed = await self.admin.list_consumer_group_offsets(self.group, partitions=list(assigned))
        except KafkaError as exc:
            log.warning("notifier_memory_unread", partitions=sorted(tp.partition for tp in assigned),
                        error=f"{type(exc).__name__}: {exc}"[:300])
        for tp in assigned:
            found = committed.get(tp)
            self.assigned(tp.partition, found.metadata if found is not None and found.offset >= 0 else "")
            self.ready.add(tp.partition)
        self.consumer.resume(*assigned)


async def notify_from_topic(bootstrap: str, topic: str, group: str, handle: Handler, incidents: bool = False,
                            max_records: int = 256, heartbeat: Callable[[], None] | None = None,
                            assigned: Callable[[int, str], None] = lambda partition, memory: None,
                            revoked: Callable[[int], None] = lambda partition: None,
                            max_poll_interval_ms: int = 300_000, started: Callable[[], None] = lambda: None,
                            lag: LagReport | None = None) -> None:
    """Poll, `handle` the decoded records of each partition in order, commit; until cancelled (the
    batch in hand is then not committed). `started` is called once Kafka has accepted the consumer;
    `heartbeat` at each poll while Kafka answers (a health check's proof that the loop is neither
    stuck nor cut off from Kafka); `lag` every LAG_SECONDS, also while a batch is in hand."""
    # Metadata refreshed every 15 s (default 5 min): a topic created after the notifier started (by the
    # first worker) is read within that, and a partition added to it too.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed",
                                metadata_max_age_ms=15_000, max_poll_interval_ms=max_poll_interval_ms)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    decode = decode_incident if incidents else decode_anomaly
    handover = _Handover(consumer, admin, group, assigned, revoked)
    held: dict[int, int] = {}  # partition -> first offset of the batch in hand (fetched, not yet committed)
    measuring: asyncio.Task[None] | None = None
    said_by_probe = SaidWhileTopicMissing(topic, group)
    client_loggers = _client_loggers()
    for logger in client_loggers:
        logger.addFilter(said_by_probe)
    try:
        try:
            await admin.start()
            # Subscribed once started: a consumer subscribed before its start waits there for its first
            # assignment, forever when the topic does not exist (yet), and says nothing.
            await consumer.start()
        except KafkaError as exc:
            raise SourceError(f"cannot read {topic} from Kafka at {bootstrap}: {said(exc)}") from exc
        # Asked before subscribing, so `topic_missing` is known before the client's own lines of it.
        probe = _Probe(consumer, topic)
        await probe.alive()
        said_by_probe.probe = probe
        consumer.subscribe([topic], listener=handover)
        log.info("notifier_started", topic=topic, group=group)
        started()
        if lag is not None:
            measuring = asyncio.ensure_future(_report_lag(consumer, held, lag))
        while True:
            if await probe.alive() and heartbeat is not None:
                heartbeat()
            batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
            held.update({tp.partition: messages[0].offset for tp, messages in batches.items()
                         if tp.partition in handover.ready})
            for tp, messages in batches.items():
                if tp.partition not in handover.ready:  # its memory not read yet: read it again later
                    consumer.seek(tp, messages[0].offset)
                    continue
                records = []
                for m in messages:
                    decoded = decode(m.value, f"{m.topic}[{m.partition}]@{m.offset}")
                    if isinstance(decoded, DeadLetter):
                        log.error("notifier_skipped", reason=decoded.reason, detail=decoded.detail,
                                  origin=decoded.origin)
                    else:
                        records.append(decoded)
                handovers = handover.handovers.get(tp.partition, 0)
                memory = await handle(records, tp.partition)
                # Handled, so done with: committed below, or read again from the last commit by
                # whoever holds the partition now (its fetch position says so).
                held.pop(tp.partition, None)
                if not handover.held_throughout(tp.partition, handovers):
                    # Revoked while the batch was being sent (a webhook outage longer than the poll
                    # interval makes the consumer leave its group): its memory is gone with it, and
                    # whoever holds the partition now reads the batch again from the last commit,
                    # with the memory committed there.
                    log.warning("notifier_batch_not_committed", partition=tp.partition, records=len(messages),
                                detail="the partition was revoked while the batch was being sent; "
                                       "it is read again from its last commit")
                    continue
                try:
                    await consumer.commit({TopicPartition(tp.topic, tp.partition): (messages[-1].offset + 1, memory)})
                except CommitFailedError as exc:
                    # The partition went to another notifier in a rebalance: it sends these again.
                    log.warning("notifier_commit_failed", partition=tp.partition, error=str(exc)[:300])
    except KafkaError as exc:
        raise SourceError(f"reading {topic} from Kafka at {bootstrap}: {exc}") from exc
    finally:
        if measuring is not None:
            measuring.cancel()
        await consumer.stop()
        await admin.close()
        for logger in client_loggers:
            logger.removeFilter(said_by_probe)


async def notifier_lags(consumer: AIOKafkaConsumer, held: Mapping[int, int]) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition owned: the messages from the first one not yet handled to the end, and the last
    offset handled. Not handled: the batch in hand (`held`), else everything from the fetch position
    on. The end is the broker's (the consumer's own stops moving while a batch is in hand: it fetches
    nothing more of that partition until the batch is taken), and under read_committed the fetch
    position has moved past the commit markers that follow the last record: caught up is 0."""
    owned = sorted(consumer.assignment())
    if not owned:
        return {}, {}
    ends = await asyncio.wait_for(consumer.end_offsets(owned), LAG_SECONDS)
    lags: dict[int, int] = {}
    done: dict[int, int] = {}
    for tp in owned:
        first = held.get(tp.partition)
        if first is None:
            try:  # unknown until the consumer has found where to start (a committed offset, or the log's start)
                first = await asyncio.wait_for(consumer.position(tp), 1.0)
            except asyncio.TimeoutError:
                continue
        end = ends.get(tp)
        if end is None or first is None:
            continue
        lags[tp.partition] = max(0, end - first)
        done[tp.partition] = first - 1
    return lags, done


async def _report_lag(consumer: AIOKafkaConsumer, held: Mapping[int, int], report: LagReport) -> None:
    progress, failures = PartitionProgress(), RefreshFailures()
    while True:
        await asyncio.sleep(LAG_SECONDS)  # a period, not a wait for something to happen
        try:
            lags, done = await notifier_lags(consumer, held)
        except Exception as exc:  # noqa: BLE001 - the broker away, a rebalance: never the notifier's end; next tick retries
            failures.failed(exc)
            continue
        failures.succeeded()
        report(lags, progress.stalled(lags, done))


class _Probe:
    """Asks Kafka for its topics every PROBE_SECONDS: whether it answers (the heartbeat stops
    ALIVE_SECONDS after it last did, so a notifier cut off from Kafka reads as unhealthy), and
    whether the topic exists (logged when it does not, and when it appears)."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self.consumer, self.topic = consumer, topic
        self.answered, self.asked = time.monotonic(), float("-inf")  # the start just talked to Kafka; ask at once
        self.reachable, self.exists = True, True

    async def alive(self) -> bool:
        now = time.monotonic()
        if now - self.asked >= PROBE_SECONDS:
            self.asked = now
            try:
                topics: Any = await asyncio.wait_for(self.consumer.topics(), PROBE_SECONDS)
            except (KafkaError, asyncio.TimeoutError) as exc:
                if self.reachable:
                    log.warning("kafka_unreachable", topic=self.topic, error=said(exc)[:300])
                self.reachable = False
            else:
                if not self.reachable:
                    log.info("kafka_reachable", topic=self.topic)
                self.answered, self.reachable = time.monotonic(), True
                if (self.topic in topics) != self.exists:
                    self.exists = not self.exists
                    if self.exists:
                        log.info("topic_appeared", topic=self.topic)
                    else:
                        log.warning("topic_missing", topic=self.topic,
                                    detail="no such topic (yet): nothing to notify until a worker creates it")
        return time.monotonic() - self.answered < ALIVE_SECONDS


# What the client says of a topic that does not exist (yet), and of a new broker's group coordinator
# (its offsets topic is created at the first lookup): at a fresh notify's start, 4 lines beside the
# probe's `topic_missing`, which says it.
TOPIC_MISSING = frozenset({"Topic %s not found in cluster metadata", "No partition metadata for topic %s",
                           "No partition metadata for topic %r",
                           "Topic %s is not available during auto-create initialization"})
COORDINATOR_LOOKUP_FAILED = "Group Coordinator Request failed: %s"
COORDINATOR_DEAD = "Marking the coordinator dead (node %s)for group %s."


class SaidWhileTopicMissing(logging.Filter):
    """The client's warnings and errors of the notifier's topic missing (and of its group's coordinator
    not ready yet) said at DEBUG while the probe's `topic_missing` stands: shown where the logger shows
    DEBUG, else dropped. Before the probe has found the topic missing, once it has appeared, and for
    any other topic or group or error, they are shown as they come."""

    def __init__(self, topic: str, group: str) -> None:
        super().__init__()
        self.topic, self.group = topic, group
        self.probe: _Probe | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.probe is None or self.probe.exists or record.levelno < logging.WARNING or not self._of_it(record):
            return True
        return at_debug(record)

    def _of_it(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        template = str(record.msg)
        if template in TOPIC_MISSING:
            return args[:1] == (self.topic,)
        if template == COORDINATOR_LOOKUP_FAILED:
            return bool(args) and isinstance(args[0], GroupCoordinatorNotAvailableError)
        return template == COORDINATOR_DEAD and args[1:2] == (self.group,)


def _client_loggers() -> list[logging.Logger]:
    """The client's loggers (a logger's filters do not reach its children's records): each module's,
    imported with the consumer."""
    return [logger for name, logger in list(logging.Logger.manager.loggerDict.items())
            if (name == "aiokafka" or name.startswith("aiokafka.")) and isinstance(logger, logging.Logger)]
