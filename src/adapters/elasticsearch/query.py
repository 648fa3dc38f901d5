"""ElasticsearchAnomalyQuery: the AnomalyQuery port over the daily anomaly indices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch, SerializationError
from elasticsearch import ConnectionError as EsConnectionError

from adapters.elasticsearch.errors import ElasticsearchRejected, ElasticsearchUnavailable
from adapters.elasticsearch.mapping import (ANOMALIES, DEFAULT_INDEX_PREFIX, DEFAULT_INCIDENTS_PREFIX, INCIDENTS,
                                            DocumentKind, check_prefix, index_pattern, iso_ns)
from domain.incidents import Incident
from domain.model import Anomaly

MAX_LIMIT = 10_000  # index.max_result_window


def one_line(text: str, most: int = 200) -> str:
    """A server's message as one short line (another server's HTML page, pasted whole, would take 15)."""
    line = " ".join(text.split())
    return line if len(line) <= most else f"{line[:most]}..."


ORDERS = ("time", "score")


def _sort(order: str, time_field: str) -> list[dict[str, Any]]:
    newest = {time_field: {"order": "desc"}}
    return [newest, {"id": {"order": "asc"}}] if order == "time" else \
        [{"score": {"order": "desc"}}, newest, {"id": {"order": "asc"}}]


def search_filters(*, symbols: Sequence[str] = (), detectors: Sequence[str] = (), since_ns: int | None = None,
                   until_ns: int | None = None, min_score: float | None = None,
                   kind: DocumentKind = ANOMALIES) -> dict[str, Any]:
    """The query of a search or a count: filters only (no relevance scoring)."""
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
    return {"bool": {"filter": filters}}


def search_body(*, symbols: Sequence[str] = (), detectors: Sequence[str] = (), since_ns: int | None = None,
                until_ns: int | None = None, min_score: float | None = None, limit: int = 50,
                order: str = "time", kind: DocumentKind = ANOMALIES) -> dict[str, Any]:
    """Keyword arguments for client.search(): filters only (no relevance scoring), sorted."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return {
        "query": search_filters(symbols=symbols, detectors=detectors, since_ns=since_ns, until_ns=until_ns,
                                min_score=min_score, kind=kind),
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
        return [self.kind.from_document(hit["_source"]) for hit in self._search(self.index, body)]

    def count(self, *, symbols: Sequence[str] = (), detectors: Sequence[str] = (),
              since_ns: int | None = None, until_ns: int | None = None, min_score: float | None = None) -> int:
        # The count API counts exactly, past the 10,000 a search's total is tracked to.
        query = search_filters(symbols=symbols, detectors=detectors, since_ns=since_ns, until_ns=until_ns,
                               min_score=min_score, kind=self.kind)
        answer = self._asked("count", lambda: self.client.count(index=self.index, ignore_unavailable=True,
                                                                allow_no_indices=True, query=query))
        count = answer.get("count") if isinstance(answer, dict) else None
        if not isinstance(count, int):
            raise self._not_elasticsearch("a count answer without a count")
        return count

    def _search(self, index: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = self._answer(index, body)["hits"]
        return hits

    def _answer(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """The search answer's `hits` object (its list of hits checked to be one)."""
        response = self._asked("search", lambda: self.client.search(index=index, ignore_unavailable=True,
                                                                    allow_no_indices=True, **body))
        answer = response.get("hits") if isinstance(response, dict) else None
        if not isinstance(answer, dict) or not isinstance(answer.get("hits"), list):
            raise self._not_elasticsearch("a search answer without hits")
        return answer

    def _asked(self, what: str, ask: Callable[[], Any]) -> Any:
        """The body of Elasticsearch's answer to `ask` (a `what`: search or count), or the error, in one line."""
        try:
            response = ask()
        except (EsConnectionError, ConnectionTimeout) as exc:
            raise ElasticsearchUnavailable(f"Elasticsearch is not reachable at {self.where}: "
                                           f"{type(exc).__name__}") from exc
        except ApiError as exc:
            raise ElasticsearchRejected(f"Elasticsearch at {self.where} refused the {what}: "
                                        f"HTTP {exc.meta.status}: {one_line(str(exc.message))}", exc.meta.status) from exc
        except SerializationError as exc:  # an answer that is not JSON: another server on that port
            raise self._not_elasticsearch(one_line(str(exc))) from exc
        return response.body

    def _not_elasticsearch(self, detail: str) -> ElasticsearchRejected:
        return ElasticsearchRejected(f"{self.where} did not answer as Elasticsearch does (is it Elasticsearch? "
                                     f"check ELASTICSEARCH_URL or --es-url): {detail}", 0)

    def close(self) -> None:
        self.client.close()


class ElasticsearchRecords:
    """RecordLookup over the anomaly and incident indices (ids are the documents' _id in both)."""

    def __init__(self, client: Elasticsearch, *, anomalies_prefix: str = DEFAULT_INDEX_PREFIX,
                 incidents_prefix: str = DEFAULT_INCIDENTS_PREFIX, where: str = "Elasticsearch") -> None:
        self.anomaly_query = ElasticsearchAnomalyQuery(client, index_prefix=anomalies_prefix, where=where)
        self.incident_query = ElasticsearchAnomalyQuery(client, index_prefix=incidents_prefix, where=where,
                                                        kind=INCIDENTS)

    def anomalies(self, ids: Sequence[str]) -> list[Anomaly]:
        if not ids:
            return []
        q = self.anomaly_query
        hits = q._search(q.index, {"query": {"ids": {"values": list(ids)}}, "size": min(len(ids), MAX_LIMIT)})
        return [ANOMALIES.from_document(h["_source"]) for h in hits]

    def incident(self, incident_id: str) -> Incident | None:
        return self._one({"ids": {"values": [incident_id]}})

    def incident_of(self, anomaly_id: str) -> Incident | None:
        return self._one({"term": {"members": anomaly_id}})

    def ids_starting(self, prefix: str, most: int) -> tuple[int, list[str]]:
        # `id` is a keyword in both templates (mapping.py), so a prefix query reads its terms index; the
        # count is exact (track_total_hits), and an id is one document: its index is its event day's.
        count, ids = 0, set[str]()
        for q in (self.anomaly_query, self.incident_query):
            answer = q._answer(q.index, {"query": {"prefix": {"id": {"value": prefix}}}, "size": most,
                                         "sort": [{"id": {"order": "asc"}}], "_source": ["id"],
                                         "track_total_hits": True})
            total = answer.get("total")
            count += int(total["value"]) if isinstance(total, dict) else len(answer["hits"])
            ids.update(h["_source"]["id"] for h in answer["hits"])
        return count, sorted(ids)[:most]

    def _one(self, query: dict[str, Any]) -> Incident | None:
        q = self.incident_query
        hits = q._search(q.index, {"query": query, "size": 1})
        return INCIDENTS.from_document(hits[0]["_source"]) if hits else None

    def close(self) -> None:
        self.anomaly_query.close()
