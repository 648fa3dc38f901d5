"""The `trades` topic wire format: per-symbol micro-batches of packed trades (and JSON from others)."""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from adapters.kafka.json_trades import decode_json
from adapters.kafka.keys import BAD_ENCODING, EMPTY_BATCH, check_symbol, symbol_of
from domain.compiled import kernel
from domain.model import TRADE_DTYPE, DeadLetter
from domain.symbols import SymbolRuns

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


@kernel
def _pack_runs(codes: np.ndarray, lengths: np.ndarray, most: int, n_codes: int) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs (of `codes`, `lengths` trades, in order) packed into messages of at most `most` trades,
    each code at most once a message (its next run starts a new one; a run longer than the room left
    is cut): (run, offset into it, trades, message) per piece, pieces in order."""
    n = len(lengths)
    most_pieces = n + int(lengths.sum()) // most + 1
    run, offset = np.empty(most_pieces, np.int64), np.empty(most_pieces, np.int64)
    take, message = np.empty(most_pieces, np.int64), np.empty(most_pieces, np.int64)
    in_message = np.full(n_codes, -1, np.int64)  # the message a code last went into
    m, room, k = 0, most, 0
    for r in range(n):
        at, left = 0, lengths[r]
        while left > 0:
            if room == 0 or in_message[codes[r]] == m:
                m, room = m + 1, most
            t = min(room, left)
            run[k], offset[k], take[k], message[k] = r, at, t, m
            in_message[codes[r]] = m
            room -= t
            at += t
            left -= t
            k += 1
    return run[:k], offset[:k], take[:k], message[:k]


@kernel
def _symbol_tables(codes: np.ndarray, takes: np.ndarray, names: np.ndarray, name_at: np.ndarray) -> np.ndarray:
    """STB2 symbol-table entries of pieces (`codes`, `takes`), one after another: each its name as
    `names[name_at[c]:name_at[c + 1]]` holds it (the length byte, then UTF-8), then uint32 trades."""
    size = 0
    for c in codes:
        size += name_at[c + 1] - name_at[c] + 4
    out = np.empty(size, np.uint8)
    at = 0
    for i in range(len(codes)):
        for j in range(name_at[codes[i]], name_at[codes[i] + 1]):
            out[at] = names[j]
            at += 1
        for shift in range(4):  # little-endian
            out[at] = (takes[i] >> (8 * shift)) & 0xFF
            at += 1
    return out


def encode_runs(runs: SymbolRuns, home: np.ndarray, most: int) -> Iterator[tuple[int, bytes, int]]:
    """(partition, STB2 value, trades) of the messages holding `runs`, run i going to partition
    `home[i]` (none if negative), each partition's packed in order as `encode_multi` would write them
    message by message: at most `most` trades and each symbol at most once a message. A pass over the
    trades and the run columns whatever the number of runs (at market scale, a trade or two each)."""
    encoded = [name.encode() for name in runs.names]
    sizes = np.array([1 + len(e) for e in encoded], np.int64)
    names = np.frombuffer(b"".join(bytes([len(e)]) + e for e in encoded), np.uint8)  # ValueError past 255
    name_at = np.concatenate(([0], np.cumsum(sizes)))
    for partition in dict.fromkeys(home[home >= 0].tolist()):  # in order of their first run
        picks = np.flatnonzero(home == partition)
        mine = runs.codes[picks]
        run, offset, take, message = _pack_runs(mine, runs.lengths[picks], most, len(runs.names))
        codes = mine[run]
        tables = _symbol_tables(codes, take, names, name_at)
        first = runs.starts[picks][run] + offset  # each piece's first trade in the runs' order
        body = _packed(runs.rows(np.repeat(first - (np.cumsum(take) - take), take) + np.arange(int(take.sum()))))
        # Message m: pieces [cut[m], cut[m + 1]), their table entries and their rows.
        cut = np.flatnonzero(np.diff(message, prepend=-1, append=message[-1] + 1)).tolist()
        table_end = np.concatenate(([0], np.cumsum(sizes[codes] + 4))).tolist()
        row_end = np.concatenate(([0], np.cumsum(take))).tolist()
        width = WIRE_DTYPE.itemsize
        for a, b in zip(cut[:-1], cut[1:]):
            count = row_end[b] - row_end[a]
            yield partition, (MULTI_HEADER.pack(MAGIC_MULTI, count, b - a) + tables[table_end[a]:table_end[b]].tobytes()
                              + body[row_end[a] * width:row_end[b] * width]), count


def wire_view(value: bytes) -> np.ndarray:
    """The packed rows of a well-formed binary message, without copying (read-only)."""
    return np.frombuffer(value, WIRE_DTYPE, offset=HEADER.size)


def decode(key: bytes | None, value: bytes | None, origin: str) -> tuple[np.ndarray, list[DeadLetter]]:
    """Trades (TRADE_DTYPE) of one message, and dead letters for whatever could not be decoded.

    Never raises on bad input: an unreadable message becomes one dead letter carrying its raw value.
    """
    trades, letters, _ = decode_many([(key, value, origin)])
    return trades, letters


@dataclass(frozen=True)
class Placement:
    """Where each trade `decode_many` gave sits in its messages: `counts[m]` trades came from message
    m, in its order. Its position there is its row in a binary batch, or its element in a JSON list
    (`json_elements[m]`: the list's bad elements are dead letters of their own); a single JSON
    object has none (`json_elements[m]` is None)."""

    counts: list[int]
    json_elements: dict[int, list[int] | None] = field(default_factory=dict)

    @functools.cached_property
    def _ends(self) -> np.ndarray:
        return np.cumsum(self.counts)

    def locate(self, row: int) -> tuple[int, int]:
        """(message, position in it; -1 for a single JSON object) of trade `row`."""
        m = int(np.searchsorted(self._ends, row, side="right"))
        at = row - int(self._ends[m]) + self.counts[m]
        if m not in self.json_elements:
            return m, at
        elements = self.json_elements[m]
        return m, -1 if elements is None else elements[at]


# A binary message read but not yet unpacked: its rows (WIRE_DTYPE bytes), and its symbols' names
# and trade counts in row order.
Parsed = tuple[memoryview, np.ndarray, np.ndarray]
SYMBOL_DTYPE = TRADE_DTYPE["symbol"]


def decode_many(messages: Sequence[tuple[bytes | None, bytes | None, str]],
                ) -> tuple[np.ndarray, list[DeadLetter], Placement]:
    """`decode` of several messages ((key, value, origin) each) at once: their trades concatenated
    in message order, the dead letters (in message order), and where each trade sits in them (how
    many trades each message gave, `Placement.counts`).

    A worker's take holds dozens of small messages per partition, each naming dozens of symbols:
    the symbol tables of all `STB2` messages are walked in one compiled pass and each distinct name
    checked once, and the rows of all binary messages are unpacked together (field by field over
    the whole take, no concatenation of structured arrays afterwards). A message the fast path
    finds anything wrong with is read again by the plain parser, which says what.
    """
    read: list[Parsed | np.ndarray | None] = [None] * len(messages)
    letters: list[list[DeadLetter]] = [[] for _ in messages]
    json_elements: dict[int, list[int] | None] = {}
    multi: list[int] = []
    multi_raws: list[bytes] = []
    for m, (key, value, origin) in enumerate(messages):
        raw = b"" if value is None else bytes(value)
        one: Parsed | np.ndarray | DeadLetter
        if raw[:4] == MAGIC_MULTI and len(raw) >= MULTI_HEADER.size:
            multi.append(m)
            multi_raws.append(raw)
            continue
        if raw[:4] == MAGIC:
            one = _parse_binary(key, raw, origin)
        elif raw[:4] == MAGIC_MULTI:
            one = _parse_multi(raw, origin)  # too short for a header: the parser says so
        elif raw.lstrip()[:1] in (b"{", b"["):
            one, found, json_elements[m] = decode_json(key, raw, origin)  # a bad element costs only itself
            letters[m] = [replace(d, key=key) for d in found]
        else:
            what = "empty value" if not raw else \
                f"value starts with {raw[:8]!r}, expected {MAGIC_MULTI!r}, {MAGIC!r} or JSON"
            one = DeadLetter(BAD_ENCODING, what, origin, raw)
        if isinstance(one, DeadLetter):
            letters[m] = [replace(one, key=key)]
        else:
            read[m] = one
    if multi:
        for m, one in zip(multi, _parse_multis(multi_raws, [messages[m][2] for m in multi])):
            if isinstance(one, DeadLetter):
                letters[m] = [replace(one, key=messages[m][0])]
            else:
                read[m] = one
    counts = [0 if r is None else len(r) if isinstance(r, np.ndarray) else int(r[2].sum()) for r in read]
    return (_materialized([r for r in read if r is not None], sum(counts)),
            [d for found in letters for d in found], Placement(counts, json_elements))


def _parse_multis(raws: list[bytes], origins: list[str]) -> list[Parsed | DeadLetter]:
    """`_parse_multi` of many STB2 values (each at least a header long) at once."""
    heads = [MULTI_HEADER.unpack_from(raw) for raw in raws]
    lengths = np.array([len(raw) for raw in raws], np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    buf = np.frombuffer(b"".join(raws), np.uint8)
    announced = np.array([n for _, _, n in heads], np.int64)
    first = np.concatenate(([0], np.cumsum(announced)))
    name_at, name_len, entry_counts, body_at, ok = _walk_tables(buf, starts, ends, first, MULTI_HEADER.size)
    names, bad_names = _names(buf, name_at, name_len)
    # Per message: the trades its entries add up to, and whether any of its names is bad (a zero
    # appended so every segment start is a valid index; a table of 0 entries is masked).
    empty = announced == 0
    summed = np.where(empty, 0, np.add.reduceat(np.append(entry_counts, 0), first[:-1]))
    named_bad = np.where(empty, False, np.logical_or.reduceat(np.append(bad_names, False), first[:-1]))
    count = np.array([c for _, c, _ in heads], np.int64)  # trades the header announces
    good = (ok & ~empty & ~named_bad & (count > 0) & (summed == count)
            & (body_at + count * WIRE_DTYPE.itemsize == ends))
    out: list[Parsed | DeadLetter] = []
    for j, (raw, origin) in enumerate(zip(raws, origins)):
        if not good[j]:
            out.append(_parse_multi(raw, origin))  # it names the problem
            continue
        out.append((memoryview(raw)[body_at[j] - starts[j]:], names[first[j]:first[j + 1]],
                    entry_counts[first[j]:first[j + 1]]))
    return out


@kernel
def _walk_tables(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, first: np.ndarray,
                 header: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each message's symbol table (`buf[starts[j]:ends[j]]`, entries `first[j]` on): per entry the
    name's offset and length and the trade count; per message where its rows start and whether the
    table was complete."""
    n = first[-1]
    name_at, name_len = np.zeros(n, np.int64), np.zeros(n, np.int64)
    counts, body_at, ok = np.zeros(n, np.int64), np.zeros(len(starts), np.int64), np.ones(len(starts), np.bool_)
    for j in range(len(starts)):
        at, end = starts[j] + header, ends[j]
        for e in range(first[j], first[j + 1]):
            if at >= end or at + 1 + buf[at] + 4 > end:
                ok[j] = False
                break
            name_at[e], name_len[e] = at + 1, buf[at]
            stop = at + 1 + buf[at]
            counts[e] = (np.int64(buf[stop]) | np.int64(buf[stop + 1]) << 8 | np.int64(buf[stop + 2]) << 16
                         | np.int64(buf[stop + 3]) << 24)
            at = stop + 4
        body_at[j] = at
    return name_at, name_len, counts, body_at, ok


@kernel
def _name_rows(buf: np.ndarray, name_at: np.ndarray, name_len: np.ndarray, width: int) -> np.ndarray:
    """Each name as a row of `width` bytes: its length, then its bytes, then zeros."""
    rows = np.zeros((len(name_at), width), np.uint8)
    for e in range(len(name_at)):
        rows[e, 0] = name_len[e]
        for c in range(name_len[e]):
            rows[e, 1 + c] = buf[name_at[e] + c]
    return rows


def _names(buf: np.ndarray, name_at: np.ndarray, name_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The symbols named by the entries (each distinct name checked once, as `_symbol`), and which
    entries name no valid symbol."""
    if not len(name_at):
        return np.empty(0, SYMBOL_DTYPE), np.zeros(0, bool)
    width = int(name_len.max()) + 1
    rows: np.ndarray
    if width <= 8:  # every name 7 bytes or less (most listings): one 64-bit word each, compared as such
        rows = _name_rows(buf, name_at, name_len, 8).view(np.uint64).ravel()
    else:
        rows = _name_rows(buf, name_at, name_len, width).view(np.dtype((np.void, width))).ravel()
    distinct, inverse = np.unique(rows, return_inverse=True)
    checked = []
    for row in distinct:
        packed = row.tobytes()
        checked.append(_symbol(packed[1:1 + packed[0]]))
    valid = np.array([not isinstance(c, tuple) for c in checked])
    symbols = np.array([c if not isinstance(c, tuple) else "" for c in checked], SYMBOL_DTYPE)
    return symbols[inverse.ravel()], ~valid[inverse.ravel()]


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
        out["symbol"] = np.repeat(np.concatenate([names for _, names, _ in run]),
                                  np.concatenate([counts for _, _, counts in run]))
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
    return memoryview(raw)[HEADER.size:], np.array([symbol], SYMBOL_DTYPE), np.array([count], np.int64)


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
    return memoryview(raw)[at:], np.array(names, SYMBOL_DTYPE), np.array(counts, np.int64)


def warm_up() -> None:
    """Load (or, the first time on a machine, compile) the decoder's kernels: a worker does this
    before its consumer starts, as for the detectors'."""
    one = np.zeros(1, TRADE_DTYPE)
    decode_many([(None, encode_multi([("WARM", one)]), "warm-up")])


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
