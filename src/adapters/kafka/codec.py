"""The `trades` topic wire format: per-symbol micro-batches of packed trades (and JSON from others)."""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
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
    trades, letters, _ = decode_many([(key, value, origin)])
    return trades, letters


# A binary message read but not yet unpacked: its rows (WIRE_DTYPE bytes), and its symbols' names
# and trade counts in row order.
Parsed = tuple[memoryview, list[str], list[int]]


def decode_many(messages: Sequence[tuple[bytes | None, bytes | None, str]],
                ) -> tuple[np.ndarray, list[DeadLetter], list[int]]:
    """`decode` of several messages ((key, value, origin) each) at once: their trades concatenated
    in message order, the dead letters, and how many trades each message gave.

    A worker's take holds dozens of small messages per partition: their headers are read one by
    one, but the rows of all binary ones are unpacked in one pass (field by field over the whole
    take, not per message, and no concatenation of structured arrays afterwards).
    """
    parsed: list[Parsed | np.ndarray] = []
    letters: list[DeadLetter] = []
    counts: list[int] = []
    for key, value, origin in messages:
        raw = b"" if value is None else bytes(value)
        read: Parsed | np.ndarray | DeadLetter
        if raw[:4] == MAGIC:
            read = _parse_binary(key, raw, origin)
        elif raw[:4] == MAGIC_MULTI:
            read = _parse_multi(raw, origin)
        elif raw.lstrip()[:1] in (b"{", b"["):
            read, found = decode_json(key, raw, origin)  # a bad element of a list costs only itself
            letters += [replace(d, key=key) for d in found]
        else:
            what = "empty value" if not raw else f"value starts with {raw[:8]!r}, expected {MAGIC!r} or JSON"
            read = DeadLetter(BAD_ENCODING, what, origin, raw)
        if isinstance(read, DeadLetter):
            letters.append(replace(read, key=key))
            counts.append(0)
            continue
        parsed.append(read)
        counts.append(len(read) if isinstance(read, np.ndarray) else sum(read[2]))
    return _materialized(parsed, sum(counts)), letters, counts


def _materialized(parsed: Sequence[Parsed | np.ndarray], total: int) -> np.ndarray:
    """TRADE_DTYPE rows of every parsed message, in order; runs of binary ones unpacked together."""
    trades = np.empty(total, TRADE_DTYPE)
    at, i = 0, 0
    while i < len(parsed):
        item = parsed[i]
        if isinstance(item, np.ndarray):  # decoded JSON
            trades[at:at + len(item)] = item
            at, i = at + len(item), i + 1
            continue
        run: list[Parsed] = []
        while i < len(parsed) and not isinstance(parsed[i], np.ndarray):
            run.append(parsed[i])  # type: ignore[arg-type]
            i += 1
        rows = np.frombuffer(b"".join(body for body, _, _ in run), WIRE_DTYPE)
        out = trades[at:at + len(rows)]
        for name in WIRE_FIELDS:
            out[name] = rows[name]
        names = [n for _, symbols, _ in run for n in symbols]
        out["symbol"] = np.repeat(np.array(names, dtype=TRADE_DTYPE["symbol"]),
                                  [c for _, _, cs in run for c in cs])
        at += len(rows)
    return trades


def _parse_binary(key: bytes | None, raw: bytes, origin: str) -> Parsed | DeadLetter:
    if len(raw) < HEADER.size:
        return DeadLetter(BAD_ENCODING, f"truncated header: {len(raw)} bytes", origin, raw)
    _, count = HEADER.unpack_from(raw)
    body = len(raw) - HEADER.size
    if body % WIRE_DTYPE.itemsize:
        detail = f"truncated: {body} bytes of trades is not a multiple of {WIRE_DTYPE.itemsize}"
        return DeadLetter(BAD_ENCODING, detail, origin, raw)
    if body // WIRE_DTYPE.itemsize != count:
        detail = f"count mismatch: header says {count} trades, body holds {body // WIRE_DTYPE.itemsize}"
        return DeadLetter(BAD_ENCODING, detail, origin, raw)
    if count == 0:
        return DeadLetter(EMPTY_BATCH, "a batch of 0 trades", origin, raw)
    symbol, problem = symbol_of(key)
    if problem is not None:
        reason, detail = problem
        return DeadLetter(reason, detail, origin, raw)
    return memoryview(raw)[HEADER.size:], [symbol], [count]


def _parse_multi(raw: bytes, origin: str) -> Parsed | DeadLetter:
    if len(raw) < MULTI_HEADER.size:
        return DeadLetter(BAD_ENCODING, f"truncated header: {len(raw)} bytes", origin, raw)
    _, count, n_symbols = MULTI_HEADER.unpack_from(raw)
    at, end, names, counts = MULTI_HEADER.size, len(raw), [], []
    for _ in range(n_symbols):
        length = raw[at] if at < end else end
        stop = at + 1 + length
        if stop + 4 > end:
            return DeadLetter(BAD_ENCODING, f"truncated symbol table: {n_symbols} symbols announced", origin, raw)
        symbol = _symbol(raw[at + 1:stop])
        if isinstance(symbol, tuple):
            return DeadLetter(symbol[0], symbol[1], origin, raw)
        names.append(symbol)
        counts.append(int.from_bytes(raw[stop:stop + 4], "little"))
        at = stop + 4
    body = end - at
    if body != count * WIRE_DTYPE.itemsize or sum(counts) != count:
        return DeadLetter(BAD_ENCODING, f"count mismatch: header says {count} trades, symbols {sum(counts)}, "
                                        f"body holds {body / WIRE_DTYPE.itemsize:g}", origin, raw)
    if count == 0:
        return DeadLetter(EMPTY_BATCH, "a batch of 0 trades", origin, raw)
    return memoryview(raw)[at:], names, counts


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
