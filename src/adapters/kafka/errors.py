"""The Kafka client's errors as one clause a user reads."""

from __future__ import annotations

import re

from aiokafka.errors import (KafkaConnectionError, KafkaTimeoutError, LeaderNotAvailableError, NodeNotReadyError,
                             NotLeaderForPartitionError, RequestTimedOutError)

# aiokafka's bootstrap failure lists its hosts as tuples with their socket family:
# "Unable to bootstrap from [('127.0.0.1', 1, <AddressFamily.AF_INET: 2>)]".
_HOST = re.compile(r"\('([^']*)', (\d+), <AddressFamily\.\w+: \d+>\)")
# aiokafka's protocol errors read "[Error 5] LeaderNotAvailableError" (then ": detail", if any).
_CODED = re.compile(r"\[Error (\d+)\] (\w+)(?:: )?(.*)", re.DOTALL)
# What a producer meets when the broker it was talking to goes away mid-run: their names alone do
# not say so (a command's one line then adds `AWAY_HINT`).
_BROKER_AWAY = (LeaderNotAvailableError, NotLeaderForPartitionError, RequestTimedOutError, KafkaTimeoutError,
                NodeNotReadyError, KafkaConnectionError)
AWAY_HINT = "no broker answered for the partitions in time: is Kafka down or restarting?"


def said(exc: BaseException) -> str:
    """`exc` as its type and message (aiokafka's str already starts with the type; others get it; a
    protocol error's code after its name), a failed first connection naming the addresses it tried as
    host:port."""
    text = str(exc)
    if not text:  # a message-less one, as a bare timeout: its type alone
        text = type(exc).__name__
    if isinstance(exc, KafkaConnectionError) and "Unable to bootstrap" in text:
        hosts = ", ".join(f"{host}:{port}" for host, port in _HOST.findall(text))
        if hosts:  # (without them, its own words)
            return f"KafkaConnectionError: no broker answered at {hosts}"
    coded = _CODED.fullmatch(text)
    if coded:  # "[Error 5] LeaderNotAvailableError" as "LeaderNotAvailableError (Kafka error 5)"
        code, name, detail = coded.groups()
        text = f"{name} (Kafka error {code})" + (f": {detail}" if detail else "")
    elif not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return text


def broker_away(exc: BaseException) -> bool:
    """Whether `exc` is what a client meets when its broker stops answering (see AWAY_HINT)."""
    return isinstance(exc, _BROKER_AWAY)
