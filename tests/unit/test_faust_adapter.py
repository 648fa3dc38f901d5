"""The Faust adapter without a broker: partition grouping, and the agent meeting unreadable state
(the table store itself is in test_state)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
from builders import calm_flow

from adapters.faust.app import by_partition, create_app
from adapters.faust.settings import StreamingSettings
from adapters.kafka.codec import encode_batch
from domain.state import StateFormatError
from entrypoints.container import build_container


def test_events_are_grouped_by_partition_in_offset_order() -> None:
    events = [SimpleNamespace(message=SimpleNamespace(partition=p, offset=o))
              for p, o in [(1, 10), (0, 5), (1, 11), (0, 6), (2, 1)]]
    groups = by_partition(events)
    assert [(p, [e.message.offset for e in g]) for p, g in groups] == [(0, [5, 6]), (1, [10, 11]), (2, [1])]


@pytest.mark.asyncio
async def test_a_state_value_the_worker_cannot_read_stops_it_naming_the_format() -> None:
    """The first release kept pickles in the state table: the agent must neither run them nor judge
    the symbol from scratch and move on. It asks the app to stop, with the error that says why."""
    container = build_container()
    app = create_app(StreamingSettings(store="memory://", app_id="unit-unreadable-state"),
                     lambda symbols, pools, found, rejected: container.streaming_detect(
                         states=container.table_state_store(table=symbols),
                         pool_states=container.table_pool_state_store(table=pools),
                         anomalies=found, dead_letters=rejected))
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app.crash = crash  # type: ignore[method-assign]
    async with app.detect_trades.test_context() as agent:  # type: ignore[attr-defined]
        app.symbol_state.data["ACME"] = pickle.dumps({"guard": None, "trades": 1})  # type: ignore[attr-defined]
        key, value = encode_batch("ACME", calm_flow(50))
        await agent.put(value, key=key)
    assert len(crashes) == 1 and isinstance(crashes[0], StateFormatError)
    assert "state of 'ACME' was written as state format 1 (a pickled object" in str(crashes[0])


@pytest.mark.asyncio
async def test_table_recovery_asks_the_broker_for_changelog_end_offsets_under_exactly_once() -> None:
    # A transactional consumer knows a partition's last stable offset only after fetching from it;
    # before that it says None, and Faust's recovery would restore nothing (adapters.faust.recovery).
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    from adapters.faust.recovery import restore_tables_from_broker_offsets

    changelog = TP("app-state-changelog", 0)

    class NotYetFetched:
        def last_stable_offset(self, tp: TP) -> None:
            return None

        async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
            return {tp: 4 for tp in tps}

    thread = SimpleNamespace(consumer=SimpleNamespace(in_transaction=True),
                             _ensure_consumer=NotYetFetched)
    restore_tables_from_broker_offsets()
    assert await AIOKafkaConsumerThread._highwaters(thread, [changelog]) == {changelog: 4}
