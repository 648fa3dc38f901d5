"""Use case: delete the search indices that have outlived the retention.

Anomalies and incidents are written to one index per UTC event day, so an index is the unit that
ages. An index expires `retention` after it was created, not after its event day: a replay of last
year's trades is kept as long as one of today's, as Elasticsearch's own lifecycle management
(whose delete phase counts from the index's creation) would keep it. That is what this does in its
place: the distribution the project runs and tests against has no lifecycle module, and a sweep
by the indexer works on any.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from domain.ports import IndexCatalog, Metrics

MS_PER_DAY = 86_400_000


class ExpireIndices:
    """Deletes the dated indices created more than `retention_days` ago (0: keep everything)."""

    def __init__(self, catalog: IndexCatalog, retention_days: float, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if retention_days < 0:
            raise ValueError(f"retention_days must be 0 (keep forever) or positive, got {retention_days}")
        self.catalog = catalog
        self.retention_ms = round(retention_days * MS_PER_DAY)
        self.metrics = metrics
        self.clock = clock

    async def __call__(self) -> list[str]:
        """The indices it deleted, oldest first."""
        if not self.retention_ms:
            return []
        cutoff = round(self.clock() * 1000) - self.retention_ms
        created = await self.catalog.dated_indices()
        expired = sorted((ms, name) for name, ms in created.items() if ms < cutoff)
        if not expired:
            return []
        names = [name for _, name in expired]
        await self.catalog.delete(names)
        if self.metrics is not None:
            self.metrics.indices_deleted(len(names))
        return names

    async def close(self) -> None:
        await self.catalog.close()
