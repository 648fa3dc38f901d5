"""ElasticsearchAnomalyQuery: the AnomalyQuery port over the daily anomaly indices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch
from elasticsearch import ConnectionError as EsConnectionError

from adapters.elasticsearch.errors import ElasticsearchRejected, ElasticsearchUnavailable
from adapters.elasticsearch.mapping import (ANOMALIES, DEFAULT_INDEX_PREFIX, DocumentKind, check_prefix, index_pattern,
                                            iso_ns)
from domain.model import Anomaly

MAX_LIMIT = 10_000  # index.max_result_window
ORDERS = ("time", "score")


def _sort(order: str, time_field: str) -> list[dict[str, Any]]:
    newest = {time_field: {"order": "desc"}}
    return [newest, {"id": {"order": "asc"}}] if order == "time" else \
        [{"score": {"order": "desc"}}, newest, {"id": {"order": "asc"}}]


def search_body(*, symbols: Sequence[str] = (), detectors: Sequence[str] = (), since_ns: int | None = None,
                until_ns: int | None = None, min_score: float | None = None, limit: int = 50,
                order: str = "time", kind: DocumentKind = ANOMALIES) -> dict[str, Any]:
    """Keyword arguments for client.search(): filters only (no relevance scoring), sorted."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    filters: list[dict[str, Any]] = []
    if symbols:
        # Case-insensitive term queries: `nvda` finds NVDA without a normalizer in the mapping.
        filters.append({"bool": {"should": [{"term": {"symbol": {"value": s, "case_insensitive": True}}}
                                            for s in symbols], "minimum_should_match": 1}})
    if detectors:
        filters.append({"terms": {kind.detector_field: list(detectors)}})
    time_range: dict[str, str] = {}
    if since_ns is not None:
        time_range["gte"] = iso_ns(since_ns)
    if until_ns is not None:
        time_range["lt"] = iso_ns(until_ns)
    if time_range:
        filters.append({"range": {kind.time_field: time_range}})
    if min_score is not None:
        filters.append({"range": {"score": {"gte": min_score}}})
    return {
        "query": {"bool": {"filter": filters}},
        "sort": _sort(order, kind.time_field),
        "size": limit,
        "track_total_hits": False,
    }


class ElasticsearchAnomalyQuery:
    """The AnomalyQuery port; with kind=INCIDENTS the same searches over the incident indices
    (detectors: any of an incident's; times: its start)."""

    def __init__(self, client: Elasticsearch, *, index_prefix: str = DEFAULT_INDEX_PREFIX,
                 where: str = "Elasticsearch", kind: DocumentKind = ANOMALIES) -> None:
        self.client = client
        self.kind = kind
        self.index = index_pattern(check_prefix(index_prefix))
        self.where = where  # a redacted URL, for error messages

    def search(self, *, symbols: Sequence[str] = (), detectors: Sequence[str] = (),
               since_ns: int | None = None, until_ns: int | None = None, min_score: float | None = None,
               limit: int = 50, order: str = "time") -> list[Anomaly]:
        body = search_body(symbols=symbols, detectors=detectors, since_ns=since_ns, until_ns=until_ns,
                           min_score=min_score, limit=limit, order=order, kind=self.kind)
        try:
            response = self.client.search(index=self.index, ignore_unavailable=True, allow_no_indices=True,
                                          **body)
        except (EsConnectionError, ConnectionTimeout) as exc:
            raise ElasticsearchUnavailable(f"Elasticsearch is not reachable at {self.where}: "
                                           f"{type(exc).__name__}") from exc
        except ApiError as exc:
            raise ElasticsearchRejected(f"Elasticsearch at {self.where} refused the search: "
                                        f"HTTP {exc.meta.status}: {exc.message}", exc.meta.status) from exc
        return [self.kind.from_document(hit["_source"]) for hit in response["hits"]["hits"]]

    def close(self) -> None:
        self.client.close()
