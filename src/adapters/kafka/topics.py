"""The project's topics: created with the configured partition count, or refused when they differ.

`trades`, `anomalies`, `incidents` and `trades.dlq` (and the worker's table changelogs) are created by
whichever starts first, a worker, the indexer or ingest, never by the broker (auto-creation would make
one partition). A topic that exists with another
partition count is refused with one error: the worker's tables and model pools follow the trades
partitions, and a symbol's anomalies and dead letters are keyed like its trades.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from domain.errors import ConfigError

log = structlog.get_logger()

TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(bootstrap: str, names: Sequence[str], partitions: int, replication_factor: int = 1,
                        client_id: str = "stockanomaly-topics",
                        configs: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Create the missing `names` (a name's topic configs from `configs`, e.g. a changelog's
    cleanup.policy); the names created. Raises ConfigError when one exists with a partition count
    other than `partitions`, KafkaError when Kafka refuses."""
    wanted = list(dict.fromkeys(names))
    # 10 s per request, as the CLI's readers: with aiokafka's default 40 s, `ingest` against a port
    # that accepts and never answers (not Kafka) would sit silent that long before failing.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [n for n in wanted if n in existing]
        _check_partitions((await _described(admin, present))[0], partitions, wanted)
        missing = [NewTopic(n, partitions, replication_factor, topic_configs=dict((configs or {}).get(n, {})))
                   for n in wanted if n not in existing]
        if not missing:
            return []
        response = await admin.create_topics(missing)
        raced = []
        for name, code, *rest in response.topic_errors:
            if code == TOPIC_ALREADY_EXISTS:
                raced.append(name)  # created meanwhile by another worker or ingest: check it too
            elif code != 0:
                message = rest[0] if rest and rest[0] else for_code(code).__name__
                raise KafkaError(f"creating topic {name}: {message}")
        if raced:
            _check_partitions((await _described(admin, raced))[0], partitions, wanted)
        created = [t.name for t in missing if t.name not in raced]
        log.info("topics_created", topics=created, partitions=partitions)
        await _await_leaders(admin, [t.name for t in missing])
        return created
    finally:
        await admin.close()


def _has_partitions(topic: dict) -> bool:
    return topic["error_code"] == 0 and bool(topic["partitions"])


def _has_leaders(topic: dict) -> bool:
    return _has_partitions(topic) and all(p["leader"] >= 0 for p in topic["partitions"])


async def _described(admin: AIOKafkaAdminClient, topics: list[str], settled: Callable[[dict], bool] = _has_partitions,
                     timeout: float = 15.0) -> tuple[list[dict], bool]:
    """The topics as the broker describes them once each is `settled` (by default: has its
    partitions), polled for up to `timeout` seconds; and whether they all are. A topic another
    process is creating at this instant is listed before its partitions are, and was taken for one
    of 0 partitions (two workers started together: one exited, 'has 0')."""
    if not topics:
        return [], True
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(topics)
        if all(settled(t) for t in described):
            return described, True
        if asyncio.get_running_loop().time() >= deadline:
            return described, False
        await asyncio.sleep(0.05)


def _check_partitions(described: list[dict], partitions: int, order: list[str]) -> None:
    wrong = {t["topic"]: len(t["partitions"]) for t in described if len(t["partitions"]) != partitions}
    if wrong:
        listed = ", ".join(f"{name!r} has {wrong[name]}" for name in order if name in wrong)
        raise ConfigError(f"topic partitions differ from the configured {partitions} (STOCKANOMALY_PARTITIONS, "
                          f"or a command's --partitions): {listed}; configure that count, or recreate the topics")


async def _await_leaders(admin: AIOKafkaAdminClient, topics: list[str], timeout: float = 15.0) -> None:
    """Wait (bounded) until every partition of new topics has a leader: sends before that are
    refused with NotLeaderForPartition and only succeed on retry."""
    if not (await _described(admin, topics, _has_leaders, timeout))[1]:
        log.warning("topic_leaders_pending", topics=topics, waited_seconds=timeout)
