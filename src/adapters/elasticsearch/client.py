"""Elasticsearch connection settings from the environment, and clients built from them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import AsyncElasticsearch, Elasticsearch

DEFAULT_URL = "http://127.0.0.1:9200"


def redact_url(url: str) -> str:
    """The URL without any user:password part, for logs and error messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ElasticsearchSettings:
    """Where and how to connect. Secrets are excluded from repr, so logging this is safe."""

    url: str = DEFAULT_URL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    request_timeout: float = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> ElasticsearchSettings:
        """ELASTICSEARCH_URL, _USERNAME, _PASSWORD, _API_KEY, _CA_CERTS; overrides win when not None."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {
            "url": env.get("ELASTICSEARCH_URL") or DEFAULT_URL,
            "username": env.get("ELASTICSEARCH_USERNAME") or None,
            "password": env.get("ELASTICSEARCH_PASSWORD") or None,
            "api_key": env.get("ELASTICSEARCH_API_KEY") or None,
            "ca_certs": env.get("ELASTICSEARCH_CA_CERTS") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    def client_options(self, *, max_retries: int = 0) -> dict[str, Any]:
        """Keyword arguments for Elasticsearch()/AsyncElasticsearch(). The transport's own retries
        are off by default: the sink's RetryPolicy owns retrying, with a bounded total time."""
        options: dict[str, Any] = {"request_timeout": self.request_timeout, "max_retries": max_retries,
                                   "retry_on_timeout": False}
        if self.api_key:
            options["api_key"] = self.api_key
        elif self.username:
            options["basic_auth"] = (self.username, self.password or "")
        if self.ca_certs:
            options["ca_certs"] = self.ca_certs
        return options


def connect(settings: ElasticsearchSettings, **kwargs: Any) -> Elasticsearch:
    return Elasticsearch(settings.url, **(settings.client_options() | kwargs))


def connect_async(settings: ElasticsearchSettings, **kwargs: Any) -> AsyncElasticsearch:
    return AsyncElasticsearch(settings.url, **(settings.client_options() | kwargs))


def probe(settings: ElasticsearchSettings, timeout: float = 5.0) -> str | None:
    """Ask the cluster's health once, as a process starts: None when Elasticsearch answers; why not,
    when it cannot be reached now (down, timed out, 429/5xx: worth waiting for); raises
    ElasticsearchRejected when the server says no for good (credentials, or not Elasticsearch)."""
    from adapters.elasticsearch.errors import ElasticsearchRejected
    from adapters.elasticsearch.query import one_line
    from adapters.elasticsearch.sink import transient_reason
    from elasticsearch import ApiError

    client = connect(settings, request_timeout=timeout)
    try:
        client.cluster.health()
        return None
    except Exception as exc:  # noqa: BLE001 - sorted below: transient, refused, or not a response at all
        reason = transient_reason(exc)
        if reason is not None:
            return reason
        if isinstance(exc, ApiError):
            raise ElasticsearchRejected(f"{settings.safe_url} answered HTTP {exc.meta.status} to a cluster health "
                                        f"request: {one_line(str(exc.message))} (is it Elasticsearch? are the credentials "
                                        "right?)",
                                        exc.meta.status) from None
        return f"{type(exc).__name__}: {exc}"[:300]
    finally:
        client.close()
