"""The `trades` topic wire format: per-symbol micro-batches of packed trades (and JSON from others)."""

from __future__ import annotations

import functools
import struct
from dataclasses import replace

import numpy as np

from adapters.kafka.json_trades import decode_json
from adapters.kafka.keys import BAD_ENCODING, EMPTY_BATCH, check_symbol, symbol_of
from domain.model import TRADE_DTYPE, DeadLetter

# One message is one symbol's trades in event-time order: key = symbol (utf-8); value = b"STB1",
# uint32 count, then `count` packed little-endian WIRE_DTYPE rows (TRADE_DTYPE minus the symbol,
# which the key carries; 48 bytes instead of 144). docs/wire-format.md has the why.
MAGIC = b"STB1"
HEADER = struct.Struct("<4sI")
WIRE_DTYPE = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("price", "<f8"),
        ("size", "<i8"),
        ("publisher_id", "<u2"),
        ("instrument_id", "<u4"),
        ("sequence", "<u8"),
        ("side", "S1"),
        ("flags", "u1"),
    ],
    align=False,
)
WIRE_FIELDS: tuple[str, ...] = tuple(WIRE_DTYPE.names or ())


def _packed(trades: np.ndarray) -> bytes:
    """`trades` (TRADE_DTYPE) as packed WIRE_DTYPE rows (field by field, both ways: measured twice as
    fast as one assignment through a structured view)."""
    packed = np.empty(len(trades), WIRE_DTYPE)
    for name in WIRE_FIELDS:
        packed[name] = trades[name]
    return packed.tobytes()


def _unpacked(value: bytes, offset: int, count: int) -> np.ndarray:
    """`count` packed rows of `value` from `offset` as TRADE_DTYPE, symbols left for the caller."""
    rows = np.frombuffer(value, WIRE_DTYPE, count=count, offset=offset)
    trades = np.empty(count, TRADE_DTYPE)
    for name in WIRE_FIELDS:
        trades[name] = rows[name]
    return trades


def encode_batch(symbol: str, trades: np.ndarray) -> tuple[bytes, bytes]:
    """(key, value) of one message holding `trades`, which must all be `symbol`'s."""
    return symbol.encode(), HEADER.pack(MAGIC, len(trades)) + _packed(trades)


# Many symbols of one partition in one message (what ingest sends): value = b"STB2", uint32 count,
# uint16 symbols, then per symbol uint8 name length, the utf-8 name and uint32 trades, then the
# `count` WIRE_DTYPE rows, symbol after symbol in that order. Sent to its symbols' partition
# (`keys.partition_of`), without a key. At market scale a message per symbol would hold a trade or
# two: the per-message cost, not detection, would then bound a worker.
MAGIC_MULTI = b"STB2"
MULTI_HEADER = struct.Struct("<4sIH")


def encode_multi(runs: list[tuple[str, np.ndarray]]) -> bytes:
    """The value of one message holding `runs` ((symbol, its trades in event-time order), each
    symbol once), all of which must belong to the partition it is sent to."""
    count = sum(len(t) for _, t in runs)
    parts = [MULTI_HEADER.pack(MAGIC_MULTI, count, len(runs))]
    for symbol, trades in runs:
        encoded = symbol.encode()
        parts += [bytes([len(encoded)]), encoded, len(trades).to_bytes(4, "little")]
    parts += [_packed(trades) for _, trades in runs]
    return b"".join(parts)


def wire_view(value: bytes) -> np.ndarray:
    """The packed rows of a well-formed binary message, without copying (read-only)."""
    return np.frombuffer(value, WIRE_DTYPE, offset=HEADER.size)


def decode(key: bytes | None, value: bytes | None, origin: str) -> tuple[np.ndarray, list[DeadLetter]]:
    """Trades (TRADE_DTYPE) of one message, and dead letters for whatever could not be decoded.

    Never raises on bad input: an unreadable message becomes one dead letter carrying its raw value.
    """
    raw = b"" if value is None else bytes(value)
    if raw[:4] == MAGIC:
        trades, letters = _decode_binary(key, raw, origin)
    elif raw[:4] == MAGIC_MULTI:
        trades, letters = _decode_multi(raw, origin)
    elif raw.lstrip()[:1] in (b"{", b"["):
        trades, letters = decode_json(key, raw, origin)
    else:
        what = "empty value" if not raw else f"value starts with {raw[:8]!r}, expected {MAGIC!r} or JSON"
        trades, letters = _nothing(DeadLetter(BAD_ENCODING, what, origin, raw))
    return trades, [replace(d, key=key) for d in letters]


def _decode_binary(key: bytes | None, raw: bytes, origin: str) -> tuple[np.ndarray, list[DeadLetter]]:
    if len(raw) < HEADER.size:
        return _nothing(DeadLetter(BAD_ENCODING, f"truncated header: {len(raw)} bytes", origin, raw))
    _, count = HEADER.unpack_from(raw)
    body = len(raw) - HEADER.size
    if body % WIRE_DTYPE.itemsize:
        detail = f"truncated: {body} bytes of trades is not a multiple of {WIRE_DTYPE.itemsize}"
        return _nothing(DeadLetter(BAD_ENCODING, detail, origin, raw))
    if body // WIRE_DTYPE.itemsize != count:
        detail = f"count mismatch: header says {count} trades, body holds {body // WIRE_DTYPE.itemsize}"
        return _nothing(DeadLetter(BAD_ENCODING, detail, origin, raw))
    if count == 0:
        return _nothing(DeadLetter(EMPTY_BATCH, "a batch of 0 trades", origin, raw))
    symbol, problem = symbol_of(key)
    if problem is not None:
        reason, detail = problem
        return _nothing(DeadLetter(reason, detail, origin, raw))
    trades = _unpacked(raw, HEADER.size, count)
    trades["symbol"] = symbol
    return trades, []


def _decode_multi(raw: bytes, origin: str) -> tuple[np.ndarray, list[DeadLetter]]:
    def bad(detail: str) -> tuple[np.ndarray, list[DeadLetter]]:
        return _nothing(DeadLetter(BAD_ENCODING, detail, origin, raw))

    if len(raw) < MULTI_HEADER.size:
        return bad(f"truncated header: {len(raw)} bytes")
    _, count, n_symbols = MULTI_HEADER.unpack_from(raw)
    at, end, names, counts = MULTI_HEADER.size, len(raw), [], []
    for _ in range(n_symbols):
        length = raw[at] if at < end else end
        stop = at + 1 + length
        if stop + 4 > end:
            return bad(f"truncated symbol table: {n_symbols} symbols announced")
        symbol = _symbol(raw[at + 1:stop])
        if isinstance(symbol, tuple):
            return _nothing(DeadLetter(symbol[0], symbol[1], origin, raw))
        names.append(symbol)
        counts.append(int.from_bytes(raw[stop:stop + 4], "little"))
        at = stop + 4
    body = end - at
    if body != count * WIRE_DTYPE.itemsize or sum(counts) != count:
        return bad(f"count mismatch: header says {count} trades, symbols {sum(counts)}, "
                   f"body holds {body / WIRE_DTYPE.itemsize:g}")
    if count == 0:
        return _nothing(DeadLetter(EMPTY_BATCH, "a batch of 0 trades", origin, raw))
    trades = _unpacked(raw, at, count)
    trades["symbol"] = np.repeat(np.array(names, dtype=TRADE_DTYPE["symbol"]), counts)
    return trades, []


@functools.lru_cache(maxsize=65_536)
def _symbol(name: bytes) -> str | tuple[str, str]:
    """A symbol table entry as a checked symbol, or (reason, detail); cached: a partition's
    symbols repeat in every message."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BAD_ENCODING, f"symbol is not utf-8: {exc}"
    symbol, problem = check_symbol(text)
    return symbol if problem is None else problem


def _nothing(letter: DeadLetter) -> tuple[np.ndarray, list[DeadLetter]]:
    return np.empty(0, TRADE_DTYPE), [letter]

