"""After a rebalance, the transactional producers of partitions the worker no longer holds actively
are stopped, standby ones included (a fix to faust-streaming 0.15's TransactionManager).

Under exactly-once Faust keeps one transactional producer per partition (transactional id
`<app>-<group>-<partition>`). On a rebalance it stops those of the revoked partitions, but works
them out through `_tps_to_active_tpgs`, which leaves out every partition the assignor now lists as
a standby, and with standby replicas the assignor lists the *source* topic's partition too (its
standbys hold every topic of the copartitioned group, the changelogs only reaching Kafka's
assignment). So a partition that moves from active to standby on a worker keeps its producer
there; the new owner's producer fences it (same transactional id), and when a later rebalance hands
the partition back, Faust finds the fenced producer in its dict and reuses it: the worker's first
take of that partition fails with ProducerFenced and the worker crashes. Measured with
`benchmarks/rolling_restart.py` and `table_standby_replicas=1`: B held 2-3 and a standby of 0-1
after A joined, kept A's producers for 0-1, got 0-1 back when A stopped, and crashed on its first
take (its log says "Starting 5 transactional producers", the ones of 0-1 "IN_TRANSACTION" already).
"""

from __future__ import annotations

from faust.transport.consumer import TransactionManager
from faust.types import TP


def stop_producers_of_partitions_not_held() -> None:
    """Make Faust's TransactionManager stop, after each rebalance, every transactional producer
    whose partition the worker does not hold actively now (idempotent)."""
    rebalance = TransactionManager.on_rebalance
    if getattr(rebalance, "_stops_standbys", False):
        return

    async def on_rebalance(self: TransactionManager, assigned: set[TP], revoked: set[TP],
                           newly_assigned: set[TP]) -> None:
        await rebalance(self, assigned, revoked, newly_assigned)
        held = self._tps_to_transactional_ids(assigned)  # active only: standbys left out
        for tid in sorted(set(getattr(self.producer, "_transaction_producers", {})) - held):
            await self.producer.stop_transaction(tid)

    on_rebalance._stops_standbys = True  # type: ignore[attr-defined]
    TransactionManager.on_rebalance = on_rebalance  # type: ignore[method-assign]
