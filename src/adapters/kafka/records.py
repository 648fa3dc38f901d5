"""Anomaly and incident records as the workers write them to their topics (JSON of `to_dict`), read
back: the indexer and the notifier both decode them here. What does not decode is a DeadLetter
with the reason, never an exception."""

from __future__ import annotations

import json
from typing import Any

from domain.incidents import Incident
from domain.model import Anomaly, DeadLetter

BAD_ANOMALY, BAD_INCIDENT = "bad_anomaly", "bad_incident"
INDEX_REJECTED = "index_rejected"  # a document Elasticsearch refused for good (the indexer's)
INDEXER_REASONS = (BAD_ANOMALY, BAD_INCIDENT, INDEX_REJECTED)


def _decode(kind: Any, what: str, reason: str, value: bytes | None, origin: str) -> Any:
    try:
        return kind.from_dict(json.loads(value or b""))
    # OverflowError: Infinity where an integer goes; RecursionError: JSON nested deeper than it reads
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        return DeadLetter(reason, f"not an {what} record: {type(exc).__name__}: {exc}"[:300], origin,
                          value or b"")


def decode_anomaly(value: bytes | None, origin: str) -> Anomaly | DeadLetter:
    return _decode(Anomaly, "anomaly", BAD_ANOMALY, value, origin)


def decode_incident(value: bytes | None, origin: str) -> Incident | DeadLetter:
    return _decode(Incident, "incident", BAD_INCIDENT, value, origin)
