"""The trades wire format: exact round trips, JSON from other producers, and bad input as dead letters."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from adapters.kafka.codec import MAGIC, WIRE_DTYPE, decode, encode_batch
from adapters.kafka.keys import misrouted, partition_of
from builders import T0, calm_flow
from domain.model import TRADE_DTYPE
from domain.symbols import SymbolRuns


def assert_same_trades(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == TRADE_DTYPE
    # Byte equality: exact for every field, NaN prices included.
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def varied_trades(n: int = 500, symbol: str = "NVDA") -> np.ndarray:
    trades = calm_flow(max(n, 20), symbol=symbol, seed=3)
    trades["price"][[0, 7]] = [np.nan, np.inf]
    trades["size"][3] = np.iinfo(np.int64).max
    trades["ts_recv"][4] = -1
    trades["publisher_id"][5] = 65_535
    trades["instrument_id"][6] = 2**32 - 1
    trades["sequence"][8] = 2**64 - 1
    trades["side"][9:12] = [b"N", b"A", b""]
    trades["flags"][12] = 255
    return trades[:n]


# -- the binary micro-batch ------------------------------------------------------------------
def test_wire_rows_are_48_packed_little_endian_bytes() -> None:
    assert WIRE_DTYPE.itemsize == 48
    assert WIRE_DTYPE.newbyteorder("<") == WIRE_DTYPE  # explicitly little-endian, whatever the host
    assert "symbol" not in WIRE_DTYPE.names


def test_encoded_message_is_keyed_by_symbol_with_magic_count_and_rows() -> None:
    trades = varied_trades(10)
    key, value = encode_batch("NVDA", trades)
    assert key == b"NVDA"
    assert value[:4] == MAGIC
    assert struct.unpack_from("<I", value, 4) == (10,)
    assert len(value) == 8 + 48 * 10
    assert struct.unpack_from("<q", value, 8) == (int(trades["ts_event"][0]),)


def test_round_trip_is_exact_for_every_field_including_nan_prices() -> None:
    trades = varied_trades()
    got, letters = decode(*encode_batch("NVDA", trades), origin="trades[0]@0")
    assert letters == []
    assert np.isnan(got["price"][0]) and np.isinf(got["price"][7])
    assert_same_trades(got, trades)


def test_round_trip_keeps_a_unicode_symbol_from_the_key() -> None:
    trades = varied_trades(3, symbol="BRK.B-Ü")
    got, _ = decode(*encode_batch("BRK.B-Ü", trades), origin="o")
    assert_same_trades(got, trades)


@pytest.mark.parametrize("value", [encode_batch("NVDA", np.empty(0, TRADE_DTYPE))[1], b"[]", b" [ ] "])
def test_a_message_without_trades_is_a_dead_letter_not_silence(value: bytes) -> None:
    got, letters = decode(b"NVDA", value, origin="trades[0]@7")
    assert len(got) == 0
    assert [(d.reason, d.origin, d.raw) for d in letters] == [("empty_batch", "trades[0]@7", value)]


def test_decoded_trades_are_writable_and_independent_of_the_message() -> None:
    key, value = encode_batch("NVDA", varied_trades(5))
    got, _ = decode(key, value, "o")
    got["size"] += 1  # a read-only frombuffer view would raise here
    assert decode(key, value, "o")[0]["size"][1] == got["size"][1] - 1


# -- JSON from other producers ---------------------------------------------------------------
def test_json_single_trade_with_integer_timestamp() -> None:
    value = json.dumps({"ts_event": T0, "price": 101.25, "size": 300, "symbol": "AAPL", "side": "A",
                        "publisher_id": 2, "instrument_id": 38, "sequence": 9, "flags": 130}).encode()
    got, letters = decode(None, value, "o")
    assert letters == []
    row = got[0]
    assert (str(row["symbol"]), int(row["ts_event"]), int(row["ts_recv"]), float(row["price"]), int(row["size"]),
            row["side"], int(row["publisher_id"]), int(row["instrument_id"]), int(row["sequence"]),
            int(row["flags"])) == ("AAPL", T0, T0, 101.25, 300, b"A", 2, 38, 9, 130)


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-03-04T15:00:00Z", T0),
    ("2025-03-04T15:00:00.000000001Z", T0 + 1),
    ("2025-03-04 15:00:00.5", T0 + 500_000_000),
    ("2025-03-04T10:00:00-05:00", T0),
    ("2025-03-04T16:00:00+0100", T0),
], ids=["utc-z", "nanoseconds", "space-no-zone", "new-york-offset", "compact-offset"])
def test_json_iso_timestamps_become_utc_nanoseconds(text: str, expected: int) -> None:
    value = json.dumps({"ts_event": text, "ts_recv": text, "price": 1, "size": 1}).encode()
    got, letters = decode(b"ACME", value, "o")
    assert letters == []
    assert int(got["ts_event"][0]) == int(got["ts_recv"][0]) == expected


def test_json_list_takes_the_symbol_from_the_key_when_absent_and_defaults_the_rest() -> None:
    value = json.dumps([{"ts_event": T0, "price": 10, "size": 5},
                        {"ts_event": T0 + 1, "price": 10.5, "size": 6.0, "symbol": "OTHER"}]).encode()
    got, letters = decode(b"ACME", value, "o")
    assert letters == []
    assert got["symbol"].tolist() == ["ACME", "OTHER"]
    assert got["size"].tolist() == [5, 6]
    assert got["side"].tolist() == [b"N", b"N"]
    assert got["sequence"].tolist() == [0, 0]


def test_one_bad_element_of_a_json_list_costs_only_itself() -> None:
    value = json.dumps([{"ts_event": T0, "price": 10, "size": 5},
                        {"ts_event": T0, "size": 5},
                        {"ts_event": T0 + 2, "price": 11, "size": 7}]).encode()
    got, letters = decode(b"ACME", value, "trades[3]@1234")
    assert got["price"].tolist() == [10.0, 11.0]
    [letter] = letters
    assert (letter.reason, letter.origin) == ("missing_field", "trades[3]@1234#1")
    assert "price" in letter.detail
    assert json.loads(letter.raw) == {"ts_event": T0, "size": 5}


# -- bad input: never raises, right reason, raw bytes kept -----------------------------------
GOOD_KEY, GOOD_VALUE = encode_batch("NVDA", calm_flow(3, symbol="NVDA"))


@pytest.mark.parametrize(("key", "value", "reason", "detail"), [
    (b"NVDA", None, "bad_encoding", "empty value"),
    (b"NVDA", b"", "bad_encoding", "empty value"),
    (b"NVDA", b"STB9" + GOOD_VALUE[4:], "bad_encoding", "expected"),
    (b"NVDA", b"\x00\x01garbage", "bad_encoding", "expected"),
    # names both binary formats, STB2 (what ingest writes) first
    (b"NVDA", b"not json at all", "bad_encoding", "expected b'STB2', b'STB1' or JSON"),
    (b"NVDA", MAGIC + b"\x03", "bad_encoding", "truncated header"),
    (b"NVDA", GOOD_VALUE[:-5], "bad_encoding", "truncated"),
    (b"NVDA", GOOD_VALUE[:4] + struct.pack("<I", 4) + GOOD_VALUE[8:], "bad_encoding", "count mismatch"),
    (None, GOOD_VALUE, "missing_key", "no message key"),
    (b"", GOOD_VALUE, "missing_key", "no message key"),
    (b"\xff\xfe", GOOD_VALUE, "bad_encoding", "not utf-8"),
    (b"X" * 25, GOOD_VALUE, "bad_encoding", "longer than 24"),
    (b"NVDA", b"{not json", "bad_json", "not JSON"),
    (b"NVDA", b'["a"]', "bad_json", "expected a trade object"),
    (b"NVDA", b'{"price": 1, "size": 2}', "missing_field", "ts_event"),
    (None, json.dumps({"ts_event": T0, "price": 1, "size": 2}).encode(), "missing_field",
     "missing symbol (and no message key)"),
    (b"\xff", json.dumps({"ts_event": T0, "price": 1, "size": 2}).encode(), "missing_field",
     "missing symbol (and the message key names none: key is not utf-8"),
    (b"NVDA", json.dumps({"ts_event": T0, "price": "1.5", "size": 2}).encode(), "bad_field", "price"),
    (b"NVDA", json.dumps({"ts_event": T0, "price": 1, "size": 2.5}).encode(), "bad_field", "size"),
    (b"NVDA", json.dumps({"ts_event": "yesterday", "price": 1, "size": 2}).encode(), "bad_field", "ISO"),
    (b"NVDA", json.dumps({"ts_event": T0, "price": 1, "size": 2, "publisher_id": 70_000}).encode(),
     "bad_field", "outside"),
    (b"NVDA", json.dumps({"ts_event": T0, "price": 1, "size": 2, "side": "Bid"}).encode(), "bad_field", "side"),
    (b"NVDA", json.dumps({"ts_event": T0, "price": 1, "size": 2, "side": "Z"}).encode(), "bad_field", "A, B or N"),
    (b"NVDA", json.dumps({"ts_event": T0, "price": True, "size": 2}).encode(), "bad_field", "price"),
], ids=["none-value", "empty-value", "wrong-magic", "not-ours", "names-both-formats", "short-header", "truncated-rows",
        "count-mismatch", "no-key", "empty-key", "key-not-utf8", "key-too-long", "bad-json", "list-of-scalars",
        "json-missing-ts", "json-no-symbol-no-key", "json-no-symbol-bad-key", "json-price-string", "json-fractional-size",
        "json-bad-iso", "json-out-of-range", "json-bad-side", "json-side-not-a-databento-side", "json-bool-price"])
def test_bad_input_becomes_one_dead_letter_with_reason_and_raw_bytes(
        key: bytes | None, value: bytes | None, reason: str, detail: str) -> None:
    got, letters = decode(key, value, "trades[3]@1234")
    assert len(got) == 0
    [letter] = letters
    assert letter.reason == reason
    assert detail in letter.detail
    assert letter.origin == ("trades[3]@1234#0" if value == b'["a"]' else "trades[3]@1234")
    assert letter.raw == (b'"a"' if value == b'["a"]' else value or b"")
    assert letter.key == key  # the message's own key travels with it to the dead-letter topic


def test_decode_never_raises_on_random_bytes() -> None:
    rng = np.random.default_rng(11)
    for i in range(2_000):
        body = rng.bytes(int(rng.integers(0, 200)))
        value = (MAGIC + body) if i % 3 == 0 else (b"{" + body) if i % 3 == 1 else body
        got, letters = decode(b"K" if i % 2 else None, value, "o")
        assert got.dtype == TRADE_DTYPE
        assert all(letter.raw == value for letter in letters if letter.origin == "o")
        assert len(got) or letters


# -- many symbols of one partition per message (what ingest sends) ---------------------------
def test_a_multi_symbol_message_round_trips_each_symbols_trades_in_order() -> None:
    from adapters.kafka.codec import encode_multi

    a, b = calm_flow(5, symbol="AAA"), calm_flow(3, symbol="ÉTÉ")
    trades, letters = decode(None, encode_multi([("AAA", a), ("ÉTÉ", b)]), "trades[1]@7")
    assert letters == []
    assert trades["symbol"].tolist() == ["AAA"] * 5 + ["ÉTÉ"] * 3
    assert trades[:5].tobytes() == a.tobytes() and trades[5:].tobytes() == b.tobytes()


@pytest.mark.parametrize("cut", [5, 12, 20, -1])
def test_a_truncated_multi_symbol_message_is_one_dead_letter(cut: int) -> None:
    from adapters.kafka.codec import encode_multi

    value = encode_multi([("AAA", calm_flow(2, symbol="AAA")), ("BB", calm_flow(2, symbol="BB"))])[:cut]
    trades, [letter] = decode(None, value, "trades[0]@3")
    assert len(trades) == 0 and letter.reason == "bad_encoding" and letter.raw == value


def test_a_take_of_mixed_messages_decodes_as_its_messages_one_by_one() -> None:
    from adapters.kafka.codec import decode_many, encode_multi

    a, b, c = calm_flow(5, symbol="AAA"), calm_flow(3, symbol="BB"), varied_trades(40, symbol="CC")
    good_json = {"symbol": "DD", "ts_event": int(T0), "price": 10.5, "size": 7}
    values = [
        (None, encode_multi([("AAA", a), ("BB", b)])),
        (b"CC", encode_batch("CC", c)[1]),
        (b"DD", json.dumps([good_json, {"symbol": "DD"}, good_json]).encode()),  # one bad element
        (None, b"garbage"),
        (None, encode_multi([("BB", b)])[:-3]),  # truncated
        (b"AAA", encode_batch("AAA", a[:2])[1]),
        (None, b"[]"),
    ]
    messages = [(key, value, f"trades[0]@{i}") for i, (key, value) in enumerate(values)]
    trades, letters, placement = decode_many(messages)
    one_by_one = [decode(*m) for m in messages]
    assert placement.counts == [len(t) for t, _ in one_by_one] == [8, 40, 2, 0, 0, 2, 0]
    assert_same_trades(trades, np.concatenate([t for t, _ in one_by_one]))
    assert letters == [d for _, found in one_by_one for d in found]
    assert [d.reason for d in letters] == ["missing_field", "bad_encoding", "bad_encoding", "empty_batch"]


@pytest.mark.parametrize("longest", [7, 16])  # names of up to 7 bytes are compared as 64-bit words
def test_the_fast_table_walk_reads_exactly_what_the_plain_parser_reads(longest: int) -> None:
    """Symbol tables of a take are walked in one compiled pass; whatever a corrupted message holds
    (cut short, bytes changed, names long, empty, not utf-8, not a symbol), the result and the
    dead letter are those of the plain one-message parser."""
    from adapters.kafka.codec import _materialized, _parse_multi, decode_many, encode_multi
    from domain.model import DeadLetter

    rng = np.random.default_rng(5)
    names = [n for n in ["A", "BB", "MSFT", "BRK.B", "SEVENCH", "ÉTÉ", "EIGHTCHR", "A-LONGER-NAME.XY"]
             if len(n.encode()) <= longest]
    values = []
    for i in range(300):
        picked = rng.choice(len(names), size=rng.integers(1, 5), replace=False)
        value = bytearray(encode_multi([(names[k], calm_flow(int(rng.integers(1, 4)), symbol=names[k], seed=i))
                                        for k in picked]))
        kind = rng.integers(0, 6)
        if kind == 1:
            value = value[:rng.integers(4, len(value))]
        elif kind == 2:  # a byte of the header or the symbol table changed
            value[rng.integers(4, min(len(value), 40))] = rng.integers(0, 256)
        elif kind == 3:
            value[10 + 1] = rng.choice([0x00, 0xFF, 0x20, ord("a")])  # first name's first byte
        values.append(bytes(value))
    values += [encode_multi([]), b"STB2" + bytes(6), b"STB2\x01\x00\x00\x00\x00\x00"]
    messages = [(None, v, f"trades[2]@{i}") for i, v in enumerate(values)]
    got, letters, placement = decode_many(messages)
    counts = placement.counts
    want_rows, want_letters, want_counts = [], [], []
    for value, (_, _, origin) in zip(values, messages):
        read = _parse_multi(value, origin)
        if isinstance(read, DeadLetter):
            want_letters.append(read)
            want_counts.append(0)
        else:
            want_rows.append(_materialized([read], int(read[2].sum())))
            want_counts.append(len(want_rows[-1]))
    assert counts == want_counts and 0 < sum(counts) < sum(len(v) for v in values)
    assert letters == want_letters and len(letters) > 50
    assert {"bad_encoding", "empty_batch"} <= {d.reason for d in letters} and len({d.detail for d in letters}) > 20
    assert_same_trades(got, np.concatenate(want_rows))


def runs_of(pairs: list[tuple[str, np.ndarray]]) -> SymbolRuns:
    """(symbol, trades) pairs as the SymbolRuns ingest hands a publisher."""
    names = list(dict.fromkeys(s for s, _ in pairs))
    lengths = np.array([len(t) for _, t in pairs], np.int64)
    return SymbolRuns(np.concatenate([t for _, t in pairs]), tuple(names),
                      np.array([names.index(s) for s, _ in pairs], np.int64), np.cumsum(lengths) - lengths, lengths)


def test_the_publisher_packs_runs_up_to_the_limit_and_each_symbol_once_per_message() -> None:
    from adapters.kafka.codec import encode_multi, encode_runs

    pairs = [("A", calm_flow(3, symbol="A")), ("B", calm_flow(4, symbol="B", seed=2)),
             ("A", calm_flow(2, symbol="A", seed=3)), ("C", calm_flow(9, symbol="C", seed=4))]
    a, b, a2, c = (t for _, t in pairs)
    want = [[("A", a), ("B", b[:2])], [("B", b[2:]), ("A", a2), ("C", c[:1])], [("C", c[1:6])], [("C", c[6:])]]
    runs = runs_of(pairs)
    got = list(encode_runs(runs, np.zeros(len(runs), np.int64), 5))
    assert got == [(0, encode_multi(group), sum(len(t) for _, t in group)) for group in want]
    # each partition its own runs, in their order (partitions in the order of their first run); -1: none
    assert list(encode_runs(runs, np.array([3, 1, -1, 1]), 5)) == [
        (3, encode_multi([("A", a)]), 3), (1, encode_multi([("B", b), ("C", c[:1])]), 5),
        (1, encode_multi([("C", c[1:6])]), 5), (1, encode_multi([("C", c[6:])]), 3)]
    assert list(encode_runs(runs, np.full(len(runs), -1), 5)) == []


def test_a_market_of_runs_encodes_as_its_messages_one_by_one_would() -> None:
    """Thousands of runs of a trade or two (what ingest sends at market scale) packed in one pass:
    the same bytes as packing them one at a time into encode_multi, with names of every length."""
    from adapters.kafka.codec import encode_multi, encode_runs

    rng = np.random.default_rng(11)
    names = ["A", "ÉTÉ", "BRK.B", "X" * 40] + [f"S{k}" for k in range(300)]
    pairs = [(names[k], calm_flow(int(rng.integers(1, 9)), symbol=names[k], seed=i))
             for i, k in enumerate(rng.integers(0, len(names), 3_000).tolist())]
    most = 37
    want: list[tuple[int, bytes, int]] = []
    group: list[tuple[str, np.ndarray]] = []
    for symbol, trades in pairs:  # the rule, one run at a time
        while len(trades):
            room = most - sum(len(t) for _, t in group)
            if room == 0 or symbol in [s for s, _ in group]:
                want.append((0, encode_multi(group), most - room))
                group, room = [], most
            group.append((symbol, trades[:room]))
            trades = trades[room:]
    want.append((0, encode_multi(group), sum(len(t) for _, t in group)))
    runs = runs_of(pairs)
    assert list(encode_runs(runs, np.zeros(len(runs), np.int64), most)) == want


def test_misrouted_finds_the_trades_whose_symbol_belongs_on_another_partition() -> None:
    names = [f"S{k}" for k in range(12)]
    trades = np.zeros(len(names) * 2 + 1, TRADE_DTYPE)
    trades["symbol"][:-1] = names * 2
    trades["symbol"][-1] = ""  # no symbol: the engine's missing_symbol, not a routing question
    home = partition_of("S0", 4)
    wrong = misrouted(trades, home, 4)
    expected = [i for i, s in enumerate(trades["symbol"].tolist()) if s and partition_of(s, 4) != home]
    assert wrong.tolist() == expected and 0 < len(expected) < len(trades) - 1
    assert misrouted(trades[[i for i in range(len(trades)) if i not in expected]], home, 4).tolist() == []


@pytest.mark.parametrize("text", ["2025-13-04T15:00:00Z", "2025-02-30T15:00:00Z", "2025-03-04T25:00:00Z",
                                  "1000-01-01T00:00:00Z", "9999-01-01T00:00:00Z"],
                         ids=["month-13", "feb-30", "hour-25", "year-1000", "year-9999"])
def test_an_impossible_or_out_of_range_iso_timestamp_is_a_bad_field_not_a_crash_nor_another_time(text: str) -> None:
    # A well-formed but impossible date raised ValueError out of decode (the worker stopped on the
    # take, and again on every restart); a year outside int64 nanoseconds wrapped silently (year
    # 1000 was judged as a print of 2169, moving its symbol's clock a century ahead).
    value = json.dumps({"ts_event": text, "price": 1, "size": 2}).encode()
    got, letters = decode(b"NVDA", value, "trades[3]@1234")
    assert len(got) == 0
    [letter] = letters
    assert letter.reason == "bad_field"
    assert "ts_event" in letter.detail


def test_json_nested_deeper_than_the_parser_goes_is_a_bad_json_dead_letter_not_a_crash() -> None:
    # 2 KB of brackets raised RecursionError out of decode: the worker stopped on the take, and on
    # every restart at the same uncommitted message (its partition stuck for good).
    value = b"[" * 1001 + b"]" * 1001
    got, letters = decode(b"NVDA", value, "trades[3]@1234")
    assert len(got) == 0
    [letter] = letters
    assert (letter.reason, letter.raw, letter.key) == ("bad_json", value, b"NVDA")


def test_a_json_price_too_large_for_a_float_is_a_bad_price_as_1e400_is_not_a_crash() -> None:
    # An integer price of 401 digits raised OverflowError (float() of it) out of decode; written
    # as 1e400 it reads as infinity and is a bad_price: both are now the same.
    for price in (b"1" + b"0" * 400, b"1e400"):
        value = b'{"ts_event": %d, "price": %s, "size": 1}' % (T0, price)
        got, letters = decode(b"NVDA", value, "o")
        assert letters == [] and len(got) == 1
        assert float(got["price"][0]) == float("inf")  # the engine refuses it as bad_price
