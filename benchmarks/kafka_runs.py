"""What the benchmarks that run workers against the local Kafka share: a free loopback port for a
process to serve on, and the removal of a run's topics (each run names its own after a uuid app id)."""

from __future__ import annotations

import socket

from aiokafka.admin import AIOKafkaAdminClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def delete_topics(bootstrap: str, app_id: str) -> None:
    """Every topic whose name starts with `{app_id}-`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
