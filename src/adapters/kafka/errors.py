"""The Kafka client's errors as one clause a user reads."""

from __future__ import annotations

import re

from aiokafka.errors import KafkaConnectionError

# aiokafka's bootstrap failure lists its hosts as tuples with their socket family:
# "Unable to bootstrap from [('127.0.0.1', 1, <AddressFamily.AF_INET: 2>)]".
_HOST = re.compile(r"\('([^']*)', (\d+), <AddressFamily\.\w+: \d+>\)")


def said(exc: BaseException) -> str:
    """`exc` as its type and message (aiokafka's str already starts with the type; others get it),
    a failed first connection naming the addresses it tried as host:port."""
    text = str(exc)
    if not text:  # a message-less one, as a bare timeout: its type alone
        return type(exc).__name__
    if isinstance(exc, KafkaConnectionError) and "Unable to bootstrap" in text:
        hosts = ", ".join(f"{host}:{port}" for host, port in _HOST.findall(text))
        if hosts:  # (without them, its own words)
            return f"KafkaConnectionError: no broker answered at {hosts}"
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
