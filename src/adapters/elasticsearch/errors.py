"""Errors the Elasticsearch adapters raise; none of them carries a credential."""

from __future__ import annotations


class ElasticsearchAdapterError(Exception):
    """Base for errors of the Elasticsearch adapters."""


class ElasticsearchUnavailable(ElasticsearchAdapterError):
    """Elasticsearch could not be reached (or kept answering 429/5xx) within the retry budget.

    A sink keeps every unwritten anomaly buffered, so a later flush() writes them.
    """

    def __init__(self, message: str, pending: int = 0) -> None:
        super().__init__(message)
        self.pending = pending


class ElasticsearchRejected(ElasticsearchAdapterError):
    """Elasticsearch refused a whole request for a reason retrying cannot fix (401, 403, 400...)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
