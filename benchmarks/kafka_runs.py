"""What the benchmarks that run workers against the local Kafka share: a free loopback port for a
process to serve on, stopping a run's processes, and the removal of a run's topics (each run names
its own after a uuid app id)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every process still running, then each waited for (killed after 60 s)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
