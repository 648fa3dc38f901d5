"""The anomaly and incident documents: index templates, daily index names, the document mappings."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from domain.incidents import Incident
from domain.model import Anomaly, prints_from

DEFAULT_INDEX_PREFIX = "stockanomaly-anomalies"
DEFAULT_INCIDENTS_PREFIX = "stockanomaly-incidents"
TEMPLATE_VERSION = 1
NS = 1_000_000_000

# Explicit mappings, so a document can never widen the schema. Notes on the choices:
# - ts_event is date_nanos (fed as an ISO string with 9 fractional digits); ts_event_ns keeps
#   the exact integer for round trips back to the domain.
# - instrument_id is Databento's u32: `integer` (i32) would overflow above 2**31-1, so `long`.
# - details are detector-specific numbers; `flattened` indexes any keys as one field, so new
#   detectors never cause a mapping explosion (values are searchable as keywords, and the
#   original floats stay in _source).
ANOMALY_MAPPINGS: dict[str, Any] = {
    # Unknown fields stay in _source but are not indexed: a newer writer never breaks an open index.
    "dynamic": False,
    "properties": {
        "id": {"type": "keyword"},
        "detector": {"type": "keyword"},
        "symbol": {"type": "keyword"},
        "ts_event": {"type": "date_nanos"},
        "ts_event_ns": {"type": "long"},
        "price": {"type": "double"},
        "size": {"type": "long"},
        "score": {"type": "double"},
        "severity": {"type": "keyword"},
        "reason": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
        "publisher_id": {"type": "integer"},
        "instrument_id": {"type": "long"},
        "sequence": {"type": "long"},
        "details": {"type": "flattened"},
        "session": {"type": "keyword"},  # pre_market, regular, after_hours, closed
        "ts_local": {"type": "keyword"},  # the exchange's clock, as the analyst reads it (ISO 8601 with offset)
        "context": {"type": "object", "enabled": False},  # the trades before it: shown, not searched
        "ingested_at": {"type": "date"},
    },
}

_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")


def check_prefix(prefix: str) -> str:
    """Index names must be lowercase and may not start with -, _ or +."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"invalid Elasticsearch index prefix {prefix!r}: use lowercase letters, digits, - _ . +")
    return prefix


def index_pattern(prefix: str) -> str:
    return f"{prefix}-*"


INCIDENT_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "id": {"type": "keyword"},
        "symbol": {"type": "keyword"},
        "start": {"type": "date_nanos"},
        "end": {"type": "date_nanos"},
        "start_ns": {"type": "long"},
        "end_ns": {"type": "long"},
        "size": {"type": "integer"},
        "members": {"type": "keyword"},  # anomaly ids: the anomalies index has them
        "detectors": {"type": "keyword"},
        "score": {"type": "double"},
        "severity": {"type": "keyword"},
        "headline": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
        "session": {"type": "keyword"},
        "ts_local": {"type": "keyword"},
        # The tape around it (domain.context): shown, not searched.
        "before": {"type": "object", "enabled": False},
        "after": {"type": "object", "enabled": False},
        "ingested_at": {"type": "date"},
    },
}


@dataclass(frozen=True, slots=True)
class DocumentKind:
    """What a sink writes: its mappings, the document of an item, and the event time that picks the
    item's daily index."""

    name: str
    mappings: dict[str, Any]
    document: Callable[[Any, datetime], dict[str, Any]]
    event_time: Callable[[Any], int]
    from_document: Callable[[dict[str, Any]], Any]
    time_field: str  # the date_nanos field searches filter and sort on
    detector_field: str


def index_template(prefix: str, *, shards: int = 1, replicas: int = 1,
                   refresh_interval: str = "1s", kind: DocumentKind | None = None) -> dict[str, Any]:
    """The body of `PUT _index_template/<prefix>` (keyword arguments of put_index_template)."""
    return {
        "index_patterns": [index_pattern(prefix)],
        # Above the built-in templates (100) so ours wins for our own pattern.
        "priority": 200,
        "version": TEMPLATE_VERSION,
        "meta": {"managed_by": "stockanomaly",
                 "description": f"{(kind or ANOMALIES).name}, one index per UTC event day"},
        "template": {
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": refresh_interval,
            },
            "mappings": (kind or ANOMALIES).mappings,
        },
    }


def index_for(prefix: str, ts_event_ns: int) -> str:
    """`<prefix>-YYYY.MM.DD` of the anomaly's event date in UTC."""
    day = datetime.fromtimestamp(ts_event_ns // NS, tz=timezone.utc)
    return f"{prefix}-{day:%Y.%m.%d}"


def iso_ns(ts_ns: int) -> str:
    """Nanosecond ISO-8601 in UTC, the exact form date_nanos stores: 2025-05-05T13:30:03.063638070Z."""
    seconds, fraction = divmod(ts_ns, NS)
    return f"{datetime.fromtimestamp(seconds, tz=timezone.utc):%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def to_document(anomaly: Anomaly, ingested_at: datetime) -> dict[str, Any]:
    return {
        "id": anomaly.id,
        "detector": anomaly.detector,
        "symbol": anomaly.symbol,
        "ts_event": iso_ns(anomaly.ts_event),
        "ts_event_ns": anomaly.ts_event,
        "price": anomaly.price,
        "size": anomaly.size,
        "score": anomaly.score,
        "severity": anomaly.severity,
        "reason": anomaly.reason,
        "publisher_id": anomaly.publisher_id,
        "instrument_id": anomaly.instrument_id,
        "sequence": anomaly.sequence,
        "details": dict(anomaly.details),
        "session": anomaly.session,
        "ts_local": anomaly.ts_local,
        "context": [p.to_dict() for p in anomaly.context],
        "ingested_at": ingested_at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
    }


def incident_document(incident: Incident, ingested_at: datetime) -> dict[str, Any]:
    return {**incident.to_dict(), "start": iso_ns(incident.start_ns), "end": iso_ns(incident.end_ns),
            "ingested_at": ingested_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")}


def incident_from_document(source: dict[str, Any]) -> Incident:
    return Incident.from_dict(source)


def from_document(source: dict[str, Any]) -> Anomaly:
    return Anomaly(
        id=source["id"],
        detector=source["detector"],
        symbol=source["symbol"],
        ts_event=int(source["ts_event_ns"]),
        price=float(source["price"]),
        size=int(source["size"]),
        score=float(source["score"]),
        severity=source["severity"],
        reason=source["reason"],
        publisher_id=int(source.get("publisher_id", 0)),
        instrument_id=int(source.get("instrument_id", 0)),
        sequence=int(source.get("sequence", 0)),
        details={k: float(v) for k, v in (source.get("details") or {}).items()},
        session=str(source.get("session", "")),
        ts_local=str(source.get("ts_local", "")),
        context=prints_from(source.get("context")),
    )


ANOMALIES = DocumentKind("anomalies", ANOMALY_MAPPINGS, to_document, lambda a: a.ts_event, from_document,
                         "ts_event", "detector")
INCIDENTS = DocumentKind("incidents", INCIDENT_MAPPINGS, incident_document, lambda i: i.start_ns,
                         incident_from_document, "start", "detectors")


def index_action(prefix: str, item: Any, ingested_at: datetime, kind: DocumentKind = ANOMALIES) -> dict[str, Any]:
    """A bulk `index` action: the item's deterministic id as _id, so a rewrite overwrites."""
    return {
        "_op_type": "index",
        "_index": index_for(prefix, kind.event_time(item)),
        "_id": item.id,
        "_source": kind.document(item, ingested_at),
    }
