"""Index retention: which daily indices expire, and which indices the catalog ever offers to delete."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.elasticsearch.retention import ElasticsearchIndexCatalog
from adapters.memory import InMemoryMetrics
from application.retention import MS_PER_DAY, ExpireIndices

NOW_MS = 1_764_700_000_000  # 2025-12-02


class FakeCatalog:
    def __init__(self, created: dict[str, int]) -> None:
        self.created = dict(created)
        self.deleted: list[list[str]] = []
        self.closed = False

    async def dated_indices(self) -> dict[str, int]:
        return dict(self.created)

    async def delete(self, names: Any) -> None:
        self.deleted.append(list(names))
        for name in names:
            self.created.pop(name)

    async def close(self) -> None:
        self.closed = True


def expire(catalog: FakeCatalog, days: float, metrics: InMemoryMetrics | None = None) -> list[str]:
    return asyncio.run(ExpireIndices(catalog, days, metrics, clock=lambda: NOW_MS / 1000)())


def test_indices_created_longer_ago_than_the_retention_are_deleted_oldest_first() -> None:
    catalog = FakeCatalog({"a-2025.01.03": NOW_MS - 31 * MS_PER_DAY, "a-2025.01.01": NOW_MS - 40 * MS_PER_DAY,
                           "a-2025.01.02": NOW_MS - 30 * MS_PER_DAY + 1, "b-2024.06.01": NOW_MS - 2 * MS_PER_DAY})
    metrics = InMemoryMetrics()
    assert expire(catalog, 30, metrics) == ["a-2025.01.01", "a-2025.01.03"]
    assert catalog.deleted == [["a-2025.01.01", "a-2025.01.03"]]
    # Age counts from creation, not from the event day in the name: a replayed old day is kept.
    assert sorted(catalog.created) == ["a-2025.01.02", "b-2024.06.01"]
    assert metrics.elasticsearch["indices_deleted"] == 2
    assert expire(catalog, 30, metrics) == [] and len(catalog.deleted) == 1  # nothing more to delete


def test_a_retention_of_zero_keeps_everything_and_asks_nothing() -> None:
    class Untouchable(FakeCatalog):
        async def dated_indices(self) -> dict[str, int]:
            raise AssertionError("a disabled retention must not list indices")

    assert expire(Untouchable({}), 0) == []


def test_fractions_of_a_day_and_a_negative_retention() -> None:
    catalog = FakeCatalog({"a-2025.01.01": NOW_MS - 4_000, "a-2025.01.02": NOW_MS - 2_000})
    assert expire(catalog, 3 / 86_400) == ["a-2025.01.01"]
    with pytest.raises(ValueError, match="retention_days"):
        ExpireIndices(catalog, -1)
    asyncio.run(ExpireIndices(catalog, 1).close())
    assert catalog.closed


class FakeIndices:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.requests: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    async def get_settings(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        return SimpleNamespace(body={n: {"settings": {"index": {"creation_date": str(1000 + k)}}}
                                     for k, n in enumerate(self.names)})

    async def delete(self, *, index: str, ignore_unavailable: bool) -> None:
        assert ignore_unavailable  # another indexer replica may have deleted it first
        self.deleted.append(index)


def test_the_catalog_offers_only_the_daily_indices_of_its_own_prefixes() -> None:
    indices = FakeIndices(["sa-anomalies-2025.05.05", "sa-anomalies-archive", "sa-anomalies-2025.05.05-copy",
                           "sa-incidents-2025.05.06", "sa-anomaliesx-2025.05.05"])
    catalog = ElasticsearchIndexCatalog(SimpleNamespace(indices=indices), ["sa-anomalies", "sa-incidents"])
    found = asyncio.run(catalog.dated_indices())
    assert found == {"sa-anomalies-2025.05.05": 1000, "sa-incidents-2025.05.06": 1003}
    assert indices.requests[0]["index"] == "sa-anomalies-*,sa-incidents-*"
    names = [f"sa-anomalies-2025.01.{d:02d}" for d in range(1, 32)] * 2
    asyncio.run(catalog.delete(names))
    assert [len(request.split(",")) for request in indices.deleted] == [50, 12]  # names go in the URL
