"""The notifier's Kafka side: read the anomalies (or incidents) topic in a consumer group of its
own, hand each batch of records to the Notify use case, and commit a partition's offsets only after
its records were sent (or refused for good). Stopped (or crashed) mid-batch, it sends that batch
again on restart: at least once, never lost. Records that do not decode are logged and skipped
(the worker only writes valid ones; anything else on the topic is not ours to tell anyone about).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from adapters.kafka.records import decode_anomaly, decode_incident
from domain.errors import SourceError
from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter

log = structlog.get_logger("stockanomaly.notifier")

Handler = Callable[[Sequence[Anomaly | Incident]], Awaitable[Any]]


async def notify_from_topic(bootstrap: str, topic: str, group: str, handle: Handler, incidents: bool = False,
                            max_records: int = 256, heartbeat: Callable[[], None] | None = None) -> None:
    """Poll, `handle` the decoded records of each partition in order, commit; until cancelled (the
    batch in hand is then not committed). `heartbeat` is called once per poll (a health check's
    proof that the loop is not stuck)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    decode = decode_incident if incidents else decode_anomaly
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise SourceError(f"cannot read {topic} from Kafka at {bootstrap}: {type(exc).__name__}: {exc}") from exc
    log.info("notifier_started", topic=topic, group=group)
    try:
        while True:
            if heartbeat is not None:
                heartbeat()
            batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
            for tp, messages in batches.items():
                records = []
                for m in messages:
                    decoded = decode(m.value, f"{m.topic}[{m.partition}]@{m.offset}")
                    if isinstance(decoded, DeadLetter):
                        log.error("notifier_skipped", reason=decoded.reason, detail=decoded.detail,
                                  origin=decoded.origin)
                    else:
                        records.append(decoded)
                await handle(records)
                try:
                    await consumer.commit({TopicPartition(tp.topic, tp.partition): messages[-1].offset + 1})
                except CommitFailedError as exc:
                    # The partition went to another notifier in a rebalance: it sends these again.
                    log.warning("notifier_commit_failed", partition=tp.partition, error=str(exc)[:300])
    except KafkaError as exc:
        raise SourceError(f"reading {topic} from Kafka at {bootstrap}: {type(exc).__name__}: {exc}") from exc
    finally:
        await consumer.stop()
