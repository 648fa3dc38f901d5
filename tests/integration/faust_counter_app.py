"""A minimal Faust app for the integration tests: counts per key in a changelog-backed table.

Run by tests as `python -m faust -A faust_counter_app worker`; configured through environment
variables so every test run gets its own app id, topics and changelog.
"""

import os

import faust

from adapters.faust.recovery import restore_tables_from_broker_offsets

restore_tables_from_broker_offsets()  # as the worker does: see that module

SUFFIX = os.environ["COUNTER_SUFFIX"]

app = faust.App(
    f"it-counter-{SUFFIX}",
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    store="memory://",  # state comes back from the changelog topic on restart
    processing_guarantee="exactly_once",  # transactional producer + read_committed consumer
    topic_replication_factor=1,
    topic_partitions=2,
    web_enabled=False,
)
source = app.topic(os.environ["COUNTER_SOURCE_TOPIC"], key_type=str, value_type=int)
totals = app.topic(os.environ["COUNTER_OUTPUT_TOPIC"], key_type=str, value_type=int)
counts = app.Table("counts", default=int, partitions=2)


@app.agent(source)
async def count(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        counts[key] += value
        await totals.send(key=key, value=counts[key])
