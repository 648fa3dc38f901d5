"""Message keys (the symbol) and the dead-letter reasons of the trades wire format."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from domain.model import TRADE_DTYPE
from domain.symbols import factorize

BAD_JSON = "bad_json"          # the value is not JSON, or not an object / a list of objects
BAD_ENCODING = "bad_encoding"  # wrong magic, truncated, count mismatch, undecodable key
MISSING_FIELD = "missing_field"
MISSING_KEY = "missing_key"    # a binary batch without the symbol as its key
BAD_FIELD = "bad_field"        # a JSON field of the wrong type or out of range
EMPTY_BATCH = "empty_batch"    # a message that holds no trade at all (`[]`, a binary batch of 0)
WRONG_PARTITION = "wrong_partition"  # a trade on another partition than its symbol's (its state lives there)
MESSAGE_REASONS = (BAD_JSON, BAD_ENCODING, MISSING_FIELD, MISSING_KEY, BAD_FIELD, EMPTY_BATCH, WRONG_PARTITION)

SYMBOL_CHARS = TRADE_DTYPE["symbol"].itemsize // 4


def symbol_of(key: bytes | None) -> tuple[str, tuple[str, str] | None]:
    """The symbol a message key names, or ("", (reason, detail)) saying why it names none."""
    if not key:
        return "", (MISSING_KEY, "no message key: binary trade batches carry their symbol as the key")
    try:
        symbol = bytes(key).decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", (BAD_ENCODING, f"key is not utf-8: {exc}")
    return check_symbol(symbol)


def check_symbol(symbol: str) -> tuple[str, tuple[str, str] | None]:
    if not symbol:
        return "", (MISSING_KEY, "empty symbol")
    if len(symbol) > SYMBOL_CHARS:
        return "", (BAD_ENCODING, f"symbol {symbol[:40]!r} is longer than {SYMBOL_CHARS} characters")
    return symbol, None


@functools.lru_cache(maxsize=65_536)
def partition_of(symbol: str, partitions: int) -> int:
    """The `trades` partition a symbol's messages land on: Kafka's default partitioner (murmur2 of the
    key), which aiokafka and Faust use for keyed sends."""
    from aiokafka.partitioner import murmur2

    return (murmur2(symbol.encode()) & 0x7FFFFFFF) % partitions


def pooling_by_partition(partitions: int) -> Callable[[str], int]:
    """The detection engine's `pool_of`: symbols that share a partition share a model pool, so an
    embedded run pools exactly like workers consuming a topic of that many partitions."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return functools.partial(partition_of, partitions=partitions)


def misrouted(trades: np.ndarray, partition: int, partitions: int) -> np.ndarray:
    """Rows of `trades` (read from `partition`) whose symbol belongs on another partition. A symbol's
    state and model pool live with its partition: trades of it that came another way (a producer
    with a partitioner of its own) must not be judged, or its state would split in two."""
    codes, symbols = factorize(trades["symbol"])
    wrong = np.array([bool(s) and partition_of(s, partitions) != partition for s in symbols], bool)
    return np.flatnonzero(wrong[codes]) if wrong.any() else np.empty(0, np.int64)
