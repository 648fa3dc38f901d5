"""ElasticsearchIndexCatalog: the IndexCatalog port over the daily anomaly and incident indices."""

from __future__ import annotations

import re
from collections.abc import Sequence

from elasticsearch import AsyncElasticsearch

from adapters.elasticsearch.mapping import check_prefix, index_pattern

DELETE_AT_ONCE = 50  # names per delete request (they go in the URL)


class ElasticsearchIndexCatalog:
    """The indices named `<prefix>-YYYY.MM.DD` (index_for) of the given prefixes; any other index,
    even one the pattern `<prefix>-*` matches, is never listed, so never deleted."""

    def __init__(self, client: AsyncElasticsearch, prefixes: Sequence[str]) -> None:
        self.client = client
        self.prefixes = [check_prefix(p) for p in prefixes]
        self._dated = re.compile("|".join(rf"{re.escape(p)}-\d{{4}}\.\d{{2}}\.\d{{2}}" for p in self.prefixes))

    async def dated_indices(self) -> dict[str, int]:
        response = await self.client.indices.get_settings(
            index=",".join(index_pattern(p) for p in self.prefixes), name="index.creation_date",
            allow_no_indices=True, expand_wildcards="open,closed")
        return {name: int(body["settings"]["index"]["creation_date"]) for name, body in response.body.items()
                if self._dated.fullmatch(name)}

    async def delete(self, names: Sequence[str]) -> None:
        for start in range(0, len(names), DELETE_AT_ONCE):
            await self.client.indices.delete(index=",".join(names[start:start + DELETE_AT_ONCE]),
                                             ignore_unavailable=True)

    async def close(self) -> None:
        await self.client.close()
