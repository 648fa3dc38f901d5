"""Faust's transaction producers across rebalances, without a broker (adapters.faust.transactions)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import TransactionManager
from faust.types import TP

import adapters.faust.transactions as transactions


@pytest.mark.asyncio
async def test_a_partition_that_became_a_standby_loses_its_producer_so_a_later_return_starts_a_fresh_one(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With standby replicas Faust's own rebalance kept the producer of a partition that moved to
    another worker and stayed here as a standby: the new owner fenced it, and when the partition came
    back, the fenced producer was reused and the worker crashed (ProducerFenced) on its first take."""
    stopped: list[str] = []

    async def faust_on_rebalance(self: Any, assigned: Any, revoked: Any, newly_assigned: Any) -> None:
        pass  # Faust's: stops revoked partitions' producers but for those now standbys (here: all of it)

    monkeypatch.setattr(TransactionManager, "on_rebalance", faust_on_rebalance)
    transactions.stop_producers_of_partitions_not_held()
    transactions.stop_producers_of_partitions_not_held()  # idempotent: wrapped once

    producers = {"app-1-0": object(), "app-1-1": object(), "app-1-2": object(), "app-0-0": object()}

    async def stop_transaction(tid: str) -> None:
        stopped.append(tid)
        producers.pop(tid)

    standbys = {TP("trades", 0), TP("trades", 1)}
    manager = SimpleNamespace(
        producer=SimpleNamespace(_transaction_producers=producers, stop_transaction=stop_transaction),
        # Faust's mapping: the source topic's partitions, standbys left out
        _tps_to_transactional_ids=lambda tps: {f"app-{0 if tp.topic == 'leader' else 1}-{tp.partition}"
                                               for tp in tps if tp not in standbys})
    assigned = {TP("trades", 2), TP("leader", 0), *standbys}
    await TransactionManager.on_rebalance(manager, assigned, {TP("trades", 0), TP("trades", 1)}, set())  # type: ignore[arg-type]
    assert stopped == ["app-1-0", "app-1-1"] and set(producers) == {"app-1-2", "app-0-0"}
