"""DatabentoFileSource over real sample files and files written into tmp_path."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import os
import threading
import time
from pathlib import Path

import databento
import databento_dbn as dbn
import numpy as np
import pyarrow.csv as pcsv
import pytest
import zstandard
from builders import T0, calm_flow
from fixtures_sources.writers import HEADER, csv_lines, dbn_bytes, write_csv, write_dbn

from adapters.databento import DatabentoFileSource
from adapters.databento.source import FILE_PLACES
from adapters.databento.quoting import close_open_quotes
from domain.errors import SourceError
from domain.model import TRADE_DTYPE, DeadLetter
from domain.validation import invalid_rows

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SAMPLES = DATA / "databento"
REAL_DAY = DATA / "nasdaq" / "xnas-itch-20250505.trades.csv.zst"
DAY = 86_400_000_000_000


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared market data not present: {path} (tests read ../shared/data, never a copy)")
    return path


def read(*paths: str | Path, chunk_size: int = 65_536) -> tuple[np.ndarray, list[DeadLetter]]:
    chunks = list(DatabentoFileSource([str(p) for p in paths], chunk_size=chunk_size).chunks())
    trades = np.concatenate([c.trades for c in chunks]) if chunks else np.empty(0, TRADE_DTYPE)
    return trades, [letter for c in chunks for letter in c.dead_letters]


def flow(n: int = 300, symbol: str = "NVDA", instrument_id: int = 11667, start: int = T0, seed: int = 1,
         rate: float = 5.0) -> np.ndarray:
    trades = calm_flow(n, symbol=symbol, start=start, seed=seed, rate=rate)
    trades["instrument_id"] = instrument_id
    trades["flags"] = 130
    return trades


def decoded_by_databento(path: Path) -> list:
    """Every record as databento's own record iteration decodes it."""
    store = databento.DBNStore.from_file(path)
    try:
        return list(store)
    finally:
        store.reader.close()


# --- the sample DBN files, against databento's own decoding ---------------------------------------

@pytest.mark.parametrize(("name", "count", "symbol"), [
    pytest.param("equs-mini.trades.sample.dbn.zst", 4, "QQQ", id="equs-mini-trades-dbn-v3"),
    pytest.param("glbx-mdp3.trades.v1.sample.dbn.zst", 2, "ESH1", id="glbx-trades-dbn-v1"),
    pytest.param("glbx-mdp3.trades.v2.sample.dbn.zst", 2, "ESH1", id="glbx-trades-dbn-v2"),
    pytest.param("xnas-itch.trades.sample.dbn.zst", 4, "NVDA", id="xnas-itch-trades"),
    pytest.param("live-session.sample.dbn.zst", 2, "ESZ4", id="live-capture-mixed-schemas"),
])
def test_sample_dbn_file_decodes_to_the_trades_databento_reads(name: str, count: int, symbol: str) -> None:
    path = needs(SAMPLES / name)
    expected = [r for r in decoded_by_databento(path) if isinstance(r, dbn.TradeMsg)]

    trades, letters = read(path)

    assert letters == []
    assert len(trades) == len(expected) == count
    first, want = trades[0], expected[0]
    assert int(first["ts_event"]) == want.ts_event
    assert int(first["ts_recv"]) == want.ts_recv
    assert float(first["price"]) == want.pretty_price
    assert int(first["size"]) == want.size
    assert int(first["publisher_id"]) == want.publisher_id
    assert int(first["instrument_id"]) == want.instrument_id
    assert int(first["sequence"]) == want.sequence
    assert int(first["flags"]) == int(want.flags)
    assert first["side"] == str(want.side.value).encode()
    assert set(trades["symbol"]) == {symbol}
    assert np.all(np.diff(trades["ts_event"]) >= 0)


def test_sample_mbp1_file_yields_no_trades_because_it_holds_only_book_adds() -> None:
    path = needs(SAMPLES / "xnas-itch.mbp-1.sample.dbn.zst")
    actions = {str(r.action.value) for r in decoded_by_databento(path)}

    trades, letters = read(path)

    assert actions == {"A"}
    assert len(trades) == 0 and letters == []


def test_mbp1_file_keeps_only_its_trade_actions(tmp_path: Path) -> None:
    book = flow(6)
    actions = np.array([b"A", b"T", b"C", b"T", b"M", b"T"])
    path = write_dbn(tmp_path / "book.mbp-1.dbn.zst", book, schema="mbp-1", actions=actions)

    trades, letters = read(path)

    assert letters == []
    assert trades["sequence"].tolist() == book["sequence"][actions == b"T"].tolist()


def test_impossible_dbn_values_are_refused_where_they_are_read_naming_their_record(tmp_path: Path) -> None:
    """An undefined price (NaN), a zero price, a zero size: the engine refuses them too, but once files
    are merged it cannot say where they were; the reader can."""
    trades = flow(4)
    trades["price"][1] = np.nan
    trades["price"][2] = 0.0
    trades["size"][3] = 0
    path = write_dbn(tmp_path / "odd.dbn", trades)

    got, letters = read(path)

    assert got["sequence"].tolist() == trades["sequence"][:1].tolist()
    assert [(d.reason, d.origin) for d in letters] == [("bad_price", f"{path}, record 2"),
                                                       ("bad_price", f"{path}, record 3"),
                                                       ("bad_size", f"{path}, record 4")]
    assert "price=nan" in letters[0].detail and "size=0" in letters[2].detail


# --- where a dead letter comes from ---------------------------------------------------------------

def test_dead_letters_name_the_position_counted_from_one_as_a_line_or_a_record(tmp_path: Path) -> None:
    """A DBN file's records were numbered from 0 (`x.dbn:0` for its first), a CSV's rows by their
    1-based line (`x.csv:2` for the first under the header): the same first record read as two
    different numbers. Both now count from 1 and say which they count."""
    trades = flow(5)
    trades["instrument_id"][0] = 999
    mappings = {"NVDA": [(dt.date(2025, 3, 4), dt.date(2025, 3, 5), 11667)]}
    dbn_path = write_dbn(tmp_path / "x.dbn", trades, mappings=mappings)
    lines = csv_lines(flow(5))
    lines[0] = lines[0].rsplit(",", 1)[0] + ","  # the first data row without its symbol
    csv_path = write_csv(tmp_path / "x.csv", lines)

    _, letters = read(dbn_path, csv_path)

    assert sorted(d.origin for d in letters) == [f"{csv_path}, line 2", f"{dbn_path}, record 1"]


@pytest.mark.parametrize("chunk_size", [7, 65_536])
def test_every_merged_trade_knows_its_file_and_line_or_record(tmp_path: Path, chunk_size: int) -> None:
    """A print the engine refuses after the merge (a duplicate, one out of order) had a dead letter
    with no origin: the merged trades no longer knew where they came from."""
    dbn_trades, csv_trades = flow(60, seed=1), flow(60, symbol="AMD", instrument_id=5, seed=2)
    csv_trades["ts_event"][10], csv_trades["ts_event"][11] = csv_trades["ts_event"][11], csv_trades["ts_event"][10]
    dbn_path = write_dbn(tmp_path / "x.dbn", dbn_trades)
    csv_path = write_csv(tmp_path / "y.csv.zst", csv_lines(csv_trades))
    file_rows = {str(dbn_path): {f"record {k + 1}": t for k, t in enumerate(dbn_trades)},
                 str(csv_path): {f"line {k + 2}": t for k, t in enumerate(csv_trades)}}

    seen = 0
    for chunk in DatabentoFileSource([dbn_path, csv_path], chunk_size=chunk_size).chunks():
        for row, trade in enumerate(chunk.trades):
            path, where = chunk.origin(row).split(", ")
            original = file_rows[path].pop(where)  # each place once
            assert (trade["symbol"], trade["ts_event"], trade["size"]) == \
                (original["symbol"], original["ts_event"], original["size"])
            seen += 1
    assert seen == 120 and not any(file_rows.values())


def test_a_dbn_file_cut_short_names_the_first_record_it_could_not_read(tmp_path: Path) -> None:
    data = dbn_bytes(flow(10))
    path = tmp_path / "cut.dbn"
    path.write_bytes(data[: len(data) - 3 * 48 - 20])  # records 1-6 whole, the seventh cut short

    trades, letters = read(path)

    assert len(trades) == 6
    assert [d.detail.split(":")[0] for d in letters] == ["unreadable from record 7 on"]


# --- symbology ------------------------------------------------------------------------------------

def test_instrument_without_mapping_becomes_a_dead_letter_with_its_record_index(tmp_path: Path) -> None:
    trades = flow(5)
    trades["instrument_id"][3] = 999
    mappings = {"NVDA": [(dt.date(2025, 3, 4), dt.date(2025, 3, 5), 11667)]}
    path = write_dbn(tmp_path / "x.dbn", trades, mappings=mappings)

    got, letters = read(path)

    assert len(got) == 4
    assert [(d.reason, d.origin) for d in letters] == [("unknown_instrument", f"{path}, record 4")]
    assert "instrument_id 999" in letters[0].detail


def test_a_symbol_longer_than_a_trade_holds_is_a_dead_letter_not_cut(tmp_path: Path) -> None:
    """Cut to 24 characters, two instruments' names would become one symbol (as CSV already refuses)."""
    trades = flow(6)
    trades["instrument_id"][2:4], trades["instrument_id"][4:] = 21, 22
    long_a, long_b = "ESM5-ESU5-ESZ5-ESH6 BUTTERFLY", "ESM5-ESU5-ESZ5-ESH6 CONDOR"
    mappings = {"NVDA": [(dt.date(2025, 3, 4), dt.date(2025, 3, 5), 11667)],
                long_a: [(dt.date(2025, 3, 4), dt.date(2025, 3, 5), 21)],
                long_b: [(dt.date(2025, 3, 4), dt.date(2025, 3, 5), 22)]}
    path = write_dbn(tmp_path / "long.dbn", trades, mappings=mappings)

    got, letters = read(path)

    assert got["symbol"].tolist() == ["NVDA"] * 2
    assert [(d.reason, d.origin) for d in letters] == [("bad_row", f"{path}, record {i}") for i in range(3, 7)]
    assert letters[0].detail == f"symbol longer than 24 characters: {long_a!r} (instrument_id 21)"
    assert letters[3].detail == f"symbol longer than 24 characters: {long_b!r} (instrument_id 22)"


def test_symbol_follows_the_mapping_in_force_on_each_utc_date(tmp_path: Path) -> None:
    day1 = flow(3, start=T0)
    day2 = flow(3, start=T0 + DAY, seed=2)
    day3 = flow(2, start=T0 + 2 * DAY, seed=3)
    mappings = {"OLD": [(dt.date(2025, 3, 4), dt.date(2025, 3, 5), 11667)],
                "NEW": [(dt.date(2025, 3, 5), dt.date(2025, 3, 6), 11667)]}
    path = write_dbn(tmp_path / "rename.dbn.zst", np.concatenate([day1, day2, day3]), mappings=mappings)

    got, letters = read(path)

    assert got["symbol"].tolist() == ["OLD"] * 3 + ["NEW"] * 3
    assert [d.reason for d in letters] == ["unknown_instrument"] * 2
    assert "2025-03-06" in letters[0].detail


# --- the real CSV day -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_day() -> tuple[np.ndarray, list[DeadLetter]]:
    return read(needs(REAL_DAY))


@pytest.mark.slow
def test_real_csv_day_decodes_every_trade_with_exact_first_row(real_day: tuple[np.ndarray, list]) -> None:
    trades, letters = real_day

    assert len(trades) == 183_301
    assert letters == []
    first = trades[0]
    assert (int(first["ts_event"]), int(first["ts_recv"])) == (1746432000675053891, 1746432000675221836)
    assert float(first["price"]) == 113.86
    assert (int(first["size"]), int(first["publisher_id"]), int(first["instrument_id"])) == (4, 2, 11667)
    assert (int(first["sequence"]), first["side"], int(first["flags"])) == (293508, b"N", 130)
    assert first["symbol"] == "NVDA"
    assert np.all(np.diff(trades["ts_event"]) >= 0)
    assert set(trades["symbol"]) == {"NVDA"}


# --- CSV representations --------------------------------------------------------------------------

@pytest.mark.parametrize(("pretty_px", "pretty_ts", "suffix"), [
    pytest.param(True, True, ".csv.zst", id="pretty-prices-iso-times-zstd"),
    pytest.param(False, True, ".csv", id="fixed-point-prices-iso-times-plain"),
    pytest.param(True, False, ".csv", id="pretty-prices-integer-times-plain"),
    pytest.param(False, False, ".csv.zst", id="fixed-point-prices-integer-times-zstd"),
])
def test_csv_variants_decode_to_the_same_trades_as_dbn(tmp_path: Path, pretty_px: bool, pretty_ts: bool,
                                                       suffix: str) -> None:
    trades = flow(2_000)
    trades["ts_event"] += np.arange(len(trades)) % 1000  # nanosecond digits that a float would lose
    reference, _ = read(write_dbn(tmp_path / "ref.dbn", trades))
    path = write_csv(tmp_path / f"t{suffix}", csv_lines(trades, pretty_px=pretty_px, pretty_ts=pretty_ts))

    got, letters = read(path, chunk_size=256)

    assert letters == []
    assert got.tobytes() == reference.tobytes()
    assert got["ts_event"].tolist() == trades["ts_event"].tolist()


def test_csv_with_book_actions_keeps_only_trades(tmp_path: Path) -> None:
    trades = flow(5)
    actions = np.array([b"A", b"T", b"C", b"T", b"F"])
    path = write_csv(tmp_path / "book.csv", csv_lines(trades, actions=actions))

    got, letters = read(path)

    assert letters == []
    assert got["sequence"].tolist() == trades["sequence"][[1, 3]].tolist()


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("column", "value", "detail"), [
    pytest.param(8, "11x.50", "unparseable price '11x.50'", id="unparseable-price"),
    pytest.param(9, "", "unparseable size ''", id="empty-size"),
    pytest.param(1, "2025-13-45T10:00:00.000000001Z", "unparseable ts_event", id="impossible-date"),
    pytest.param(1, "yesterday", "unparseable ts_event 'yesterday'", id="unparseable-timestamp"),
    # a local time as often as UTC: refused, saying what to add, not guessed
    pytest.param(1, "2025-05-05T10:00:00.000000001", "time zone missing (a Z for UTC, as Databento writes) in "
                 "ts_event '2025-05-05T10:00:00.000000001'", id="timestamp-without-zone"),
    pytest.param(3, "70000", "unparseable publisher_id '70000'", id="publisher-id-out-of-range"),
    pytest.param(13, "", "missing symbol", id="missing-symbol"),
    pytest.param(13, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_ONE", "symbol longer than 24 characters 'ABCDEFGHIJKLMNOPQRSTUVWXYZ_ONE'",
                 id="symbol-too-long"),  # cut to 24, two such names became one symbol
    pytest.param(6, "BB", "side not A, B or N 'BB'", id="side-too-long"),  # was read as B
    pytest.param(6, "Z", "side not A, B or N 'Z'", id="unknown-side"),
])
def test_bad_csv_value_becomes_dead_letter_with_file_and_line(tmp_path: Path, column: int, value: str,
                                                              detail: str) -> None:
    lines = csv_lines(flow(3_000))
    fields = lines[2_500].split(",")
    fields[column] = value
    lines[2_500] = ",".join(fields)
    lines[10] = lines[10] + ",extra"  # a skipped line before the bad one must not shift its number
    path = write_csv(tmp_path / "bad.csv.zst", lines)

    trades, letters = read(path, chunk_size=256)

    assert len(trades) == 2_998
    assert [(d.reason, d.origin) for d in letters] == [("bad_row", f"{path}, line 12"), ("bad_row", f"{path}, line 2502")]
    assert letters[0].detail == "expected 14 fields, got 15"
    assert letters[1].detail.startswith(detail)
    assert letters[1].raw == lines[2_500].encode()


def test_an_empty_side_is_none_given(tmp_path: Path) -> None:
    lines = csv_lines(flow(4))
    fields = lines[1].split(",")
    fields[6] = ""
    path = write_csv(tmp_path / "sides.csv", [",".join(fields) if i == 1 else line for i, line in enumerate(lines)])
    trades, letters = read(path)
    assert not letters and trades["side"].tolist() == [flow(4)["side"][0], b"N", *flow(4)["side"][2:]]


@pytest.mark.parametrize(("name", "said"), [
    ("day.csv.zst", "holds DBN records, not CSV text: name it .dbn (or .dbn.zst, compressed)"),
    ("day.csv", "is not CSV text (compressed? a .csv.zst is read as zstd"),
])
def test_a_dbn_file_named_as_csv_is_said_to_be_one_not_quoted_as_a_header(tmp_path: Path, name: str,
                                                                          said: str) -> None:
    """The error quoted the file's first bytes as its header: escapes and replacement characters."""
    path = write_dbn(tmp_path / "x.dbn.zst", flow(4)).rename(tmp_path / name)
    if name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(dbn_bytes(flow(4))))
    with pytest.raises(SourceError) as raised:
        read(path)
    assert str(raised.value).startswith(f"{path}: {said}")


@pytest.mark.parametrize("name", ["day.dbn", "day.dbn.zst"])
def test_a_csv_export_named_as_dbn_is_said_to_be_one(tmp_path: Path, name: str) -> None:
    """databento's own words were 'Could not determine compression format' (or 'unable to determine
    encoding'), as a dead letter for the file: nothing said it was a CSV export under a DBN name."""
    text = ("\n".join([HEADER, *csv_lines(flow(4))]) + "\n").encode()
    path = tmp_path / name
    path.write_bytes(zstandard.ZstdCompressor().compress(text) if name.endswith(".zst") else text)

    with pytest.raises(SourceError) as raised:
        read(path)

    assert str(raised.value) == f"{path}: holds CSV text, not DBN records: name it .csv (or .csv.zst, compressed)"


def test_row_with_too_few_fields_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    lines = csv_lines(flow(4))
    cut = lines[1][:40]
    path = write_csv(tmp_path / "short.csv", [lines[0], cut, *lines[2:]])

    trades, letters = read(path)

    assert len(trades) == 3
    assert [(d.reason, d.origin, d.raw) for d in letters] == [("bad_row", f"{path}, line 3", cut.encode())]


@pytest.mark.parametrize("chunk_size", [64, 65_536])
def test_rows_with_too_few_fields_in_every_block_of_a_file_are_each_reported(tmp_path: Path, chunk_size: int) -> None:
    """Arrow reads a file in blocks (of chunk_size rows' bytes, 64 KiB at least): those of the blocks
    after the first were lost."""
    lines = csv_lines(flow(3_000))
    for i in (10, 1_500, 2_999):
        lines[i] = lines[i][:40]
    path = write_csv(tmp_path / "short.csv", lines)

    trades, letters = read(path, chunk_size=chunk_size)

    assert len(trades) == 2_997
    assert [d.origin for d in letters] == [f"{path}, line {i + 2}" for i in (10, 1_500, 2_999)]


def test_a_row_of_bytes_that_are_not_text_is_one_bad_row_and_the_rest_kept(tmp_path: Path,
                                                                          capfd: pytest.CaptureFixture[str]) -> None:
    lines = csv_lines(flow(4))
    path = tmp_path / "binary.csv"
    path.write_bytes("\n".join([HEADER, lines[0], lines[1]]).encode() + b"\n\xff\xfeA,\x00\x1c\n"
                     + "\n".join(lines[2:]).encode() + b"\n")

    trades, letters = read(path)

    assert len(trades) == 4 and [(d.reason, d.origin) for d in letters] == [("bad_row", f"{path}, line 4")]
    assert "Exception ignored" not in capfd.readouterr().err  # Arrow could not show the row to our handler


def test_a_character_that_a_read_of_the_file_cuts_in_two_is_read_whole(tmp_path: Path) -> None:
    """Arrow reads 64 KiB at a time (its block size at chunk_size 256); the stream made each read valid
    UTF-8 on its own, so a character across two reads became two replacement characters in its symbol."""
    before = "ts_event,price,size,symbol\n" + "2025-05-05T12:00:00Z,113.70,100,NVDA\n" * 1_769
    zeros = (1 << 16) - len(before) - len("2025-05-05T12:00:01Z,113.7,100,") - 1  # to end the read in the Å
    path = tmp_path / "names.csv"
    path.write_bytes((before + "2025-05-05T12:00:01Z,113.7" + "0" * zeros + ",100,ÅÅÅÅ\n").encode())
    assert path.read_bytes()[1 << 16] & 0xC0 == 0x80  # the first read ends after the first byte of an Å

    trades, letters = read(path, chunk_size=256)

    assert letters == [] and trades["symbol"].tolist() == ["NVDA"] * 1_769 + ["ÅÅÅÅ"]


def test_a_file_of_binary_bytes_named_csv_is_one_printable_line(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 40)

    with pytest.raises(SourceError) as caught:
        read(path)

    assert str(caught.value).isprintable() and len(str(caught.value)) < 400


def test_blank_lines_are_skipped_without_shifting_line_numbers(tmp_path: Path) -> None:
    lines = csv_lines(flow(4))
    fields = lines[2].split(",")
    fields[9] = "x"
    path = write_csv(tmp_path / "blank.csv", [lines[0], "", lines[1], "", ",".join(fields), lines[3]])

    trades, letters = read(path)

    assert len(trades) == 3
    assert [(d.origin, d.detail) for d in letters] == [(f"{path}, line 6", "unparseable size 'x'")]


def test_empty_csv_price_is_an_undefined_price_refused_as_bad_price_not_a_bad_row(tmp_path: Path) -> None:
    lines = csv_lines(flow(2))
    fields = lines[0].split(",")
    fields[8] = ""
    path = write_csv(tmp_path / "undef.csv", [",".join(fields), lines[1]])

    trades, letters = read(path)

    assert len(trades) == 1 and trades["price"][0] > 0
    assert [(d.reason, d.origin) for d in letters] == [("bad_price", f"{path}, line 2")]
    assert "price=nan" in letters[0].detail and letters[0].raw == ",".join(fields).encode()


@pytest.mark.parametrize("kind", ["dbn", "csv"])
def test_truncated_file_reports_bad_file_keeps_what_came_before_and_other_files(tmp_path: Path,
                                                                                kind: str) -> None:
    early = flow(20_000, seed=1)  # several zstd blocks, so the cut leaves whole ones before it
    other = flow(50, symbol="AMD", instrument_id=77, seed=2)
    if kind == "dbn":
        data = dbn_bytes(early)
    else:
        data = ("\n".join([HEADER, *csv_lines(early)]) + "\n").encode()
    compressed = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    broken = tmp_path / f"broken.{kind}.zst"
    broken.write_bytes(compressed[: len(compressed) * 3 // 4])
    good = write_dbn(tmp_path / "good.dbn", other)

    trades, letters = read(broken, good, chunk_size=256)

    assert [(d.reason, d.origin) for d in letters if d.reason == "bad_file"] == [("bad_file", str(broken))]
    assert (trades["symbol"] == "AMD").sum() == 50
    nvda = trades[trades["symbol"] == "NVDA"]
    assert 0 < len(nvda) < 20_000
    # every row before the damage, and no line cut short by it passed off as a trade
    kept = early[: len(nvda)]
    for column in ("sequence", "ts_event", "price", "size"):
        assert nvda[column].tolist() == kept[column].tolist()


# A compressed DBN named plain (.dbn) is read by its content too: it was never checked for a cut.
@pytest.mark.parametrize("name", ["cut.dbn.zst", "cut.dbn"])
def test_dbn_zst_cut_on_a_frame_boundary_is_still_reported(tmp_path: Path, name: str) -> None:
    data = dbn_bytes(flow(100))
    head = len(data) - 50 * 48  # trades records are 48 bytes: the first frame ends on a record boundary
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    whole = compressor.compress(data[:head]) + compressor.compress(data[head:])
    path = tmp_path / name
    path.write_bytes(whole[: len(whole) - 10])

    trades, letters = read(path)

    assert len(trades) == 50
    assert [d.reason for d in letters] == ["bad_file"]


def test_uncompressed_dbn_named_zst_is_read_whole_without_a_damage_report(tmp_path: Path) -> None:
    """databento reads it (it detects compression by content), but the frame check went by the name
    and reported 'no zstd frame at byte 0' after every record had been read."""
    path = tmp_path / "plain.dbn.zst"
    path.write_bytes(dbn_bytes(flow(100)))

    trades, letters = read(path)

    assert len(trades) == 100
    assert letters == []


def test_corrupt_dbn_record_header_is_a_bad_row_and_the_rest_is_kept(tmp_path: Path) -> None:
    data = bytearray(dbn_bytes(flow(10)))
    record = 48
    data[len(data) - 7 * record + 1] = 99  # rtype of the fourth record
    path = tmp_path / "flip.dbn"
    path.write_bytes(bytes(data))

    trades, letters = read(path)

    assert len(trades) == 9
    assert [(d.reason, d.origin) for d in letters] == [("bad_row", f"{path}, record 4")]


def test_file_that_is_not_dbn_at_all_is_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.dbn"
    path.write_bytes(b"this is not dbn")

    trades, letters = read(path)

    assert len(trades) == 0 and [d.reason for d in letters] == ["bad_file"]


def test_dbn_schema_without_trades_is_a_source_error(tmp_path: Path) -> None:
    metadata = dbn.Metadata(dataset="XNAS.ITCH", schema=dbn.Schema.OHLCV_1M, stype_in=dbn.SType.RAW_SYMBOL,
                            stype_out=dbn.SType.INSTRUMENT_ID, start=0, end=1)
    path = tmp_path / "bars.dbn"
    path.write_bytes(metadata.encode())

    with pytest.raises(SourceError, match="ohlcv-1m"):
        read(path)


def test_csv_without_sequence_numbers_gives_each_row_its_line_as_its_sequence(tmp_path: Path) -> None:
    # Only the required columns: two different prints at one nanosecond, a blank line, a third.
    path = write_csv(tmp_path / "min.csv", ["2025-05-05T12:00:01.000000001Z,113.71,200,NVDA",
                                            "2025-05-05T12:00:01.000000001Z,113.70,400,NVDA", "",
                                            "2025-05-05T12:00:02.000000000Z,113.72,100,NVDA"],
                     header="ts_event,price,size,symbol")

    trades, letters = read(path)

    assert letters == [] and trades["sequence"].tolist() == [2, 3, 5]


@pytest.mark.parametrize(("separator", "quote", "said"), [
    (";", "", "its fields are separated by semicolons"),
    ("\t", '"', "its fields are separated by tabs and in double quotes"),
    (", ", "", "its fields are padded with spaces"),
    (', ', '"', "its fields are in double quotes and padded with spaces"),  # RFC 4180: the spaces are the field's
], ids=["semicolons", "tabs-quoted", "spaced", "spaced-quoted"])
def test_a_csv_written_in_another_dialect_is_said_to_be_one(tmp_path: Path, separator: str, quote: str,
                                                             said: str) -> None:
    """A spreadsheet's or script's rewrite of an export was refused as 'CSV header lacks ts_event, price,
    size, symbol (has "ts_recv", "ts_event", ...)': the columns it lacked listed among those it had."""
    lines = [separator.join(f"{quote}{field}{quote}" for field in line.split(","))
             for line in [HEADER, *csv_lines(flow(4))]]
    path = tmp_path / "rewritten.csv"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(SourceError) as raised:
        read(path)

    assert str(raised.value) == (f"{path}: {said}; this reader takes CSV as Databento exports it, comma-separated "
                                 "with nothing around the fields (which may be in double quotes): write it that way")


def quoted(line: str, columns: set[int] | None = None) -> str:
    """A CSV line with its fields (or those at `columns`) in double quotes, as other CSV tools write them."""
    return ",".join(f'"{field}"' if columns is None or i in columns else field
                    for i, field in enumerate(line.split(",")))


@pytest.mark.parametrize("columns", [None, {13}], ids=["every-field-header-too", "symbol-only"])
def test_quoted_fields_read_as_the_same_trades_as_unquoted_ones(tmp_path: Path, columns: set[int] | None) -> None:
    """A quoted symbol kept its quotes: '"NVDA"' was a symbol of its own, and --symbols NVDA missed it."""
    trades = flow(2_000)
    reference, _ = read(write_csv(tmp_path / "plain.csv", csv_lines(trades)))
    lines = [quoted(line, columns) for line in csv_lines(trades)]
    path = write_csv(tmp_path / "quoted.csv.zst", lines, header=HEADER if columns else quoted(HEADER))

    got, letters = read(path, chunk_size=256)

    assert letters == [] and got.tobytes() == reference.tobytes()


def test_a_quoted_field_holds_commas_and_doubled_quotes_as_rfc_4180_has_them(tmp_path: Path) -> None:
    lines = csv_lines(flow(3))
    lines[0] = lines[0].removesuffix(",NVDA") + ',"BRK,B"'
    lines[1] = lines[1].removesuffix(",NVDA") + ',"NV""DA"'
    bad = lines[2].split(",")
    bad[9] = '"1,000"'  # a size written with a thousands separator: one field, and not a size
    lines[2] = ",".join(bad)
    path = write_csv(tmp_path / "rfc.csv", lines)

    trades, letters = read(path)

    assert trades["symbol"].tolist() == ["BRK,B", 'NV"DA']
    assert [(d.origin, d.detail) for d in letters] == [(f"{path}, line 4", "unparseable size '1,000'")]
    assert letters[0].raw == lines[2].encode()  # written back quoted, so it reads as the same fields


@pytest.mark.parametrize("line", [
    '2025-05-05T12:00:01Z,113.70,100,"NVDA',
    '2025-05-05T12:00:01Z,"113.70,100,NVDA',
    '2025-05-05T12:00:01Z,113.70,100,"NV""DA',  # the doubled quote is a quote inside: still open
    '2025-05-05T12:00:01Z,113.70,1"00,"NVDA',  # a quote inside an unquoted field opens nothing
    '"2025-05-05T12:00:01Z"x,113.70,100,"NVDA\r',  # text after a closing quote; a CRLF line
], ids=["symbol", "price", "doubled-quote", "quote-inside-a-field", "after-a-closed-one"])
def test_a_quote_left_open_costs_its_line_only(tmp_path: Path, line: str) -> None:
    """Left to arrow, an open quote reads the next lines into its field, then the rest of the file is refused
    ('CSV parser got out of sync with chunk 0', one bad_file letter); before quotes were read, '"NVDA' was a
    symbol of its own."""
    lines = ["2025-05-05T12:00:00Z,113.60,100,NVDA", line, "2025-05-05T12:00:02Z,113.80,100,NVDA",
             "2025-05-05T12:00:03Z,113.90,1x,NVDA", '"2025-05-05T12:00:04Z",113.95,100,"NVDA"']
    path = write_csv(tmp_path / "open.csv", lines, header="ts_event,price,size,symbol")

    trades, letters = read(path, chunk_size=1)

    assert trades["sequence"].tolist() == [2, 4, 6] and set(trades["symbol"].tolist()) == {"NVDA"}
    assert [(d.origin, d.detail, d.raw) for d in letters] == [
        (f"{path}, line 3", "a quoted field is not closed on its line", line.encode()),
        (f"{path}, line 5", "unparseable size '1x'", b"2025-05-05T12:00:03Z,113.90,1x,NVDA")]


def test_the_lines_kept_to_themselves_are_exactly_those_arrow_would_read_past() -> None:
    """Every line of up to 6 characters of a, comma and quote: written as one field (close_open_quotes)
    exactly when arrow, given it and a line 'z', reads 'z' into one of its fields."""
    def arrow_reads_past(line: bytes) -> bool:
        texts: list[str] = []  # of the rows it refused

        def refused(row: pcsv.InvalidRow) -> str:
            texts.append(row.text)
            return "skip"

        table = pcsv.read_csv(io.BytesIO(b"h\n" + line + b"\nz\n"), read_options=pcsv.ReadOptions(use_threads=False),
                              parse_options=pcsv.ParseOptions(quote_char='"', ignore_empty_lines=False,
                                                              invalid_row_handler=refused),
                              convert_options=pcsv.ConvertOptions(strings_can_be_null=False))
        return table.column("h").to_pylist()[-1:] != ["z"] or any("\n" in text for text in texts)

    lines = [bytes(chars) for n in range(7) for chars in itertools.product(b'a,"', repeat=n)]
    kept = {line for line in lines if close_open_quotes(line, set()) != line}
    assert kept == {line for line in lines if arrow_reads_past(line)}


def test_a_header_that_leaves_a_quote_open_is_said_to(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "open.csv", ["2025-05-05T12:00:00Z,113.60,100,NVDA"],
                     header='ts_event,price,size,"symbol')

    with pytest.raises(SourceError) as raised:
        read(path)

    assert str(raised.value) == f'{path}: a quote in its header line is not closed (ts_event,price,size,"symbol)'


def test_csv_without_required_columns_is_a_source_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "odd.csv", ["1,2"], header="ts_event,size")

    with pytest.raises(SourceError, match="price, symbol"):
        read(path)


# --- paths ----------------------------------------------------------------------------------------

def test_directory_expands_to_its_databento_files_sorted(tmp_path: Path) -> None:
    write_dbn(tmp_path / "b.dbn.zst", flow(3))
    write_csv(tmp_path / "a.csv", csv_lines(flow(2, seed=2)))
    (tmp_path / "notes.txt").write_text("not data")

    source = DatabentoFileSource([str(tmp_path)])

    assert [p.name for p in source.files] == ["a.csv", "b.dbn.zst"]


def test_glob_expands_to_matching_files_once_each(tmp_path: Path) -> None:
    for name in ("x1.dbn", "x2.dbn", "y.dbn"):
        write_dbn(tmp_path / name, flow(2))

    source = DatabentoFileSource([str(tmp_path / "x*.dbn"), str(tmp_path / "x1.dbn")])

    assert [p.name for p in source.files] == ["x1.dbn", "x2.dbn"]


@pytest.mark.parametrize(("name", "message"), [
    pytest.param("missing.dbn", "no such file", id="missing-file"),
    pytest.param("nothing-*.dbn.zst", "glob matches no Databento files", id="glob-matching-nothing"),
    pytest.param("empty-dir", "directory has no Databento files", id="directory-without-data"),
    pytest.param("trades.parquet", "unsupported file type", id="unsupported-extension"),
    # It was 'no such file or directory', of a file that is there.
    pytest.param("pipe.csv", "not a regular file or directory", id="named-pipe"),
])
def test_path_naming_no_readable_file_is_a_source_error(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "trades.parquet").write_bytes(b"PAR1")
    os.mkfifo(tmp_path / "pipe.csv")

    with pytest.raises(SourceError, match=message):
        DatabentoFileSource([str(tmp_path / name)])


@pytest.mark.parametrize("unit", [10**9, 10**6, 10**3], ids=["seconds", "milliseconds", "microseconds"])
def test_integer_timestamps_too_small_for_nanoseconds_are_refused(tmp_path: Path, unit: int) -> None:
    """Read as nanoseconds they were prints of January 1970, every one accepted."""
    path = tmp_path / "day.csv"
    path.write_text("ts_event,price,size,symbol\n" + "".join(
        f"{(T0 + k * 10**9) // unit},100.5,10,ACME\n" for k in range(20)))

    with pytest.raises(SourceError, match="ts_event holds integers like .*, too small for nanoseconds"):
        list(DatabentoFileSource([str(path)]).chunks())


@pytest.mark.parametrize("name", [b"caf\xe9.csv", b"caf\xe9.csv.zst"], ids=["csv", "csv-zst"])
def test_a_csv_whose_name_is_not_utf8_is_read(tmp_path: Path, name: bytes) -> None:
    """A Latin-1 name (its byte surrogate-escaped by Python) was a UnicodeEncodeError traceback from arrow."""
    path = tmp_path / os.fsdecode(name)
    text = "ts_event,price,size,symbol\n" + "".join(f"{T0 + k * 10**9},100.5,10,ACME\n" for k in range(20))
    path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()) if name.endswith(b".zst") else text.encode())

    chunks = list(DatabentoFileSource([str(path)]).chunks())

    assert sum(len(c.trades) for c in chunks) == 20 and not [d for c in chunks for d in c.dead_letters]


# --- merge ----------------------------------------------------------------------------------------

def test_several_files_merge_into_event_time_order(tmp_path: Path) -> None:
    nvda = flow(3_000, seed=1, rate=20.0)
    amd = flow(2_000, symbol="AMD", instrument_id=77, seed=2, rate=10.0)
    msft = flow(1_000, symbol="MSFT", instrument_id=88, seed=3, start=T0 + 60 * 10**9)
    amd["ts_event"][:10] = nvda["ts_event"][:10]  # equal timestamps across files
    paths = [write_dbn(tmp_path / "nvda.dbn.zst", nvda),
             write_csv(tmp_path / "amd.csv", csv_lines(amd)),
             write_csv(tmp_path / "msft.csv.zst", csv_lines(msft, pretty_px=False, pretty_ts=False))]

    chunks = list(DatabentoFileSource([str(p) for p in paths], chunk_size=256).chunks())
    trades = np.concatenate([c.trades for c in chunks])

    assert len(chunks) > 10
    assert len(trades) == 6_000
    assert np.all(np.diff(trades["ts_event"]) >= 0)
    assert trades["symbol"][:2].tolist() == ["NVDA", "AMD"]  # a tie keeps the order files were given
    for symbol, original in (("NVDA", nvda), ("AMD", amd), ("MSFT", msft)):
        assert trades["sequence"][trades["symbol"] == symbol].tolist() == original["sequence"].tolist()


def merged(paths: list[Path], chunk_size: int, read_ahead: int = 0) -> tuple[np.ndarray, list[tuple[int, DeadLetter]]]:
    """The merged trades' places, and each dead letter with how many merged trades go before it."""
    places: list[np.ndarray] = []
    letters: list[tuple[int, DeadLetter]] = []
    sent = 0
    for chunk in DatabentoFileSource([str(p) for p in paths], chunk_size=chunk_size, read_ahead=read_ahead).chunks():
        assert chunk.letters_at() == sorted(chunk.letters_at()) and all(0 <= k <= len(chunk.trades)
                                                                        for k in chunk.letters_at())
        letters += [(sent + k, letter) for k, letter in zip(chunk.letters_at(), chunk.dead_letters)]
        places.append(chunk.places if chunk.places is not None else np.empty(0, np.int64))
        sent += len(chunk.trades)
    return np.concatenate(places), letters


def broken_lines(trades: np.ndarray, bad: list[int]) -> list[str]:
    """The trades as CSV lines, those at `bad` (indexes into them) made bad rows (price unreadable)."""
    lines = csv_lines(trades)
    for i in bad:
        fields = lines[i].split(",")
        fields[8] = "1l3.2"
        lines[i] = ",".join(fields)
    return lines


@pytest.mark.parametrize("chunk_size", [64, 256, 1_000, 65_536])
def test_a_bad_rows_dead_letter_comes_out_after_the_trades_above_it_and_before_those_below(
        tmp_path: Path, chunk_size: int) -> None:
    """Not with its chunk's first trades: ingest sends a letter with the trades around it, and a paced
    chunk spans hours of a thin day. The first row, rows in a run, a chunk's last, the file's last."""
    bad = [0, 63, 64, 65, 700, 701, 702, 1_500, 2_998, 2_999]
    path = write_csv(tmp_path / "bad.csv", [*broken_lines(flow(3_000), bad), "2025-05-05T13:30:09Z,short"])

    places, letters = merged([path], chunk_size)

    lines = {i + 2 for i in bad} | {3_002}  # the header is line 1; the short line is the last
    assert sorted(int(d.origin.rsplit(" ", 1)[1]) for _, d in letters) == sorted(lines)
    for at, letter in letters:
        line = int(letter.origin.rsplit(" ", 1)[1])
        assert at == int((places < line).sum()), letter.origin  # after the good rows above it, before the rest


@pytest.mark.parametrize("read_ahead", [0, 1, 100_000])
def test_merged_files_dead_letters_go_between_their_own_files_neighbours(tmp_path: Path, read_ahead: int) -> None:
    nvda = flow(3_000, seed=1, rate=20.0)
    amd = flow(2_000, symbol="AMD", instrument_id=77, seed=2, rate=10.0)
    compressed = zstandard.ZstdCompressor(write_checksum=True).compress(
        ("\n".join([HEADER, *broken_lines(flow(20_000, symbol="MSFT", instrument_id=88, seed=3), [10, 4_000])])
         + "\n").encode())
    broken = tmp_path / "broken.csv.zst"  # damaged: its stream ends with a bad_file letter, after all it read
    broken.write_bytes(compressed[: len(compressed) * 3 // 4])
    paths = [write_csv(tmp_path / "nvda.csv", broken_lines(nvda, [0, 5, 1_000, 2_999])),
             write_csv(tmp_path / "amd.csv.zst", broken_lines(amd, [255, 256, 1_999])), broken]

    places, letters = merged(paths, 256, read_ahead)

    assert len(letters) == 10 and [d.reason for _, d in letters].count("bad_file") == 1
    files = places // FILE_PLACES
    for at, letter in letters:
        n = next(k for k, p in enumerate(paths) if letter.origin.startswith(str(p)))
        mine = np.flatnonzero(files == n)
        line = int(letter.origin.rsplit(" ", 1)[1]) + n * FILE_PLACES if letter.reason == "bad_row" else None
        above = mine if line is None else mine[places[mine] < line]
        below = mine[~np.isin(mine, above)]
        assert not len(above) or above.max() < at, letter.origin  # never ahead of its file's trades above it
        assert not len(below) or below.min() >= at, letter.origin  # nor behind those below it
    in_turn_places, in_turn = merged(paths, 256, 0)  # decoded on threads or not, the same stream
    assert np.array_equal(in_turn_places, places) and in_turn == letters


def test_whole_dollar_prices_are_dollars_and_later_decimal_prices_read_alike(tmp_path: Path) -> None:
    """Integers in the head of the price column were taken for 1e-9 fixed point: $113 read as
    $0.000000113, and every later decimal price was refused as unparseable."""
    trades = flow(3_000)
    lines = csv_lines(trades)
    whole = [line.replace(f",{t['price']:.9f},", f",{round(float(t['price']))},") for line, t in zip(lines, trades)]
    path = write_csv(tmp_path / "mixed.csv", whole[:1_500] + lines[1_500:])
    got, letters = read(path)
    assert letters == [] and len(got) == 3_000
    assert got["price"][:1_500].tolist() == [float(round(float(p))) for p in trades["price"][:1_500]]
    assert got["price"][1_500:] == pytest.approx(trades["price"][1_500:])
    fixed, _ = read(write_csv(tmp_path / "fixed.csv", csv_lines(trades, pretty_px=False)))
    assert fixed["price"] == pytest.approx(trades["price"])  # Databento's fixed point still is


def test_one_feed_split_over_two_files_merges_back_into_its_own_order(tmp_path: Path) -> None:
    """Prints at one nanosecond in both files come back in sequence order: they came file by file, and
    the guard refused each sequence that went back as a resend (40,957 'duplicates' of a real day)."""
    nvda = flow(4_000, seed=1, rate=20.0)
    nvda["ts_event"] = nvda["ts_event"][::4].repeat(4)  # four prints at each timestamp
    first = np.arange(len(nvda)) % 3 == 0  # split unevenly: the files' chunks end at different times
    paths = [write_csv(tmp_path / "a.csv", csv_lines(nvda[first])),
             write_csv(tmp_path / "b.csv", csv_lines(nvda[~first]))]
    for chunk_size in (256, 255, 100):  # chunks that end between two prints of one timestamp
        source = DatabentoFileSource([str(p) for p in paths], chunk_size=chunk_size)
        trades = np.concatenate([c.trades for c in source.chunks()])
        assert trades["sequence"].tolist() == nvda["sequence"].tolist(), chunk_size


def test_a_late_print_is_reordered_or_kept_in_place_the_same_however_the_file_is_chunked(tmp_path: Path) -> None:
    """A print a little behind its file's newest (a consolidated feed in capture order) goes to its
    event-time place; one far behind keeps its place in the file, so the guard refuses it as out of
    order. Sorting each chunk instead made both depend on the chunk size: a print hours late in the
    same chunk was moved back and judged, one chunk later it was refused."""
    nvda = flow(3_000, seed=1, rate=20.0)  # a print every ~50 ms
    late = nvda.copy()
    slightly, far = late[1_000].copy(), late[20].copy()
    slightly["ts_event"] = late["ts_event"][1_010] - 2 * 10**9  # 2 s behind the print before it
    far_ts = int(late["ts_event"][20])
    late = np.concatenate((late[:1_010], [slightly], late[1_010:2_500], [far], late[2_500:]))
    late = np.delete(late, [1_000, 20])
    path = write_csv(tmp_path / "late.csv", csv_lines(late))

    orders = set()
    for chunk_size in (64, 255, 1_000, 100_000):
        trades = np.concatenate([c.trades for c in DatabentoFileSource([str(path)], chunk_size=chunk_size).chunks()])
        assert len(trades) == len(late)
        orders.add(trades.tobytes())
    assert len(orders) == 1
    ts = trades["ts_event"]
    slightly_at = int(np.flatnonzero(trades["sequence"] == slightly["sequence"])[0])
    assert ts[slightly_at - 1] <= ts[slightly_at] <= ts[slightly_at + 1]  # in its place
    far_at = int(np.flatnonzero(trades["sequence"] == far["sequence"])[0])
    # Behind the prints the file had passed (a time counts as passed once two prints have reached it).
    assert abs(far_at - int(np.flatnonzero(late["sequence"] == far["sequence"])[0])) <= 1
    assert ts[far_at] == far_ts < ts[far_at - 1]


def test_a_print_dated_far_ahead_waits_for_its_time_and_holds_nothing_else_back(tmp_path: Path) -> None:
    """One print with a typo'd year must not make the rest of the file late (all its symbol's prints
    refused as out of order) nor keep the whole file in memory waiting for that time. (Its receipt
    time unknown: with one, it is refused where it is read, as the next test shows.)"""
    nvda = flow(3_000, seed=1, rate=20.0)
    nvda["ts_event"][1_500] += 365 * 86_400 * 10**9
    nvda["ts_recv"][1_500] = 0
    path = write_csv(tmp_path / "ahead.csv", csv_lines(nvda))
    orders = set()
    for chunk_size in (64, 1_000, 100_000):
        chunks = list(DatabentoFileSource([str(path)], chunk_size=chunk_size).chunks())
        trades = np.concatenate([c.trades for c in chunks])
        orders.add(trades.tobytes())
    assert len(orders) == 1
    expected = np.concatenate((np.delete(nvda["sequence"], 1_500), [nvda["sequence"][1_500]]))
    assert trades["sequence"].tolist() == expected.tolist()  # the others in file order, that one last
    plain = nvda.copy()
    plain["ts_event"][1_500] -= 365 * 86_400 * 10**9
    sizes = [len(c.trades) for c in DatabentoFileSource([str(path)], chunk_size=64).chunks()]
    plain_sizes = [len(c.trades) for c in DatabentoFileSource([str(write_csv(tmp_path / "plain.csv", csv_lines(plain))),
                                                                ], chunk_size=64).chunks()]
    assert len(sizes) == len(plain_sizes) > 3 and max(sizes) <= max(plain_sizes) + 1  # emitted as read, not held


def test_two_prints_in_a_row_dated_far_after_their_receipt_hold_nothing_back(tmp_path: Path) -> None:
    """Two typo'd rows in a row passed the file on to their time: every later print of the file came
    out behind them and was refused as out of order (133,300 of a real day's). Dated over a minute
    after their receipt (ts_recv), they are refused where they are read (bad_timestamp, with their
    lines), and the rest comes out in file order."""
    nvda = flow(3_000, seed=1, rate=20.0)
    nvda["ts_event"][1_500:1_502] += 365 * 86_400 * 10**9
    path = write_csv(tmp_path / "ahead.csv", csv_lines(nvda))
    for chunk_size in (64, 100_000):
        chunks = list(DatabentoFileSource([str(path)], chunk_size=chunk_size).chunks())
        trades = np.concatenate([c.trades for c in chunks])
        assert trades["sequence"].tolist() == np.delete(nvda["sequence"], [1_500, 1_501]).tolist()
        assert [(d.reason, d.origin) for c in chunks for d in c.dead_letters] == [
            ("bad_timestamp", f"{path}, line 1502"), ("bad_timestamp", f"{path}, line 1503")]
    assert invalid_rows(trades)[0].tolist() == []


def test_files_decoded_on_threads_give_the_same_chunks_as_read_in_turn(tmp_path: Path) -> None:
    nvda = flow(3_000, seed=1, rate=20.0)
    amd = flow(2_000, symbol="AMD", instrument_id=77, seed=2, rate=10.0)
    lines = csv_lines(amd)
    lines[500] = lines[500].replace(",AMD", ",")  # one bad row: a dead letter at its place in the stream
    compressed = zstandard.ZstdCompressor(write_checksum=True).compress(
        ("\n".join([HEADER, *csv_lines(flow(20_000, symbol="MSFT", instrument_id=88, seed=3))]) + "\n").encode())
    broken = tmp_path / "broken.csv.zst"  # damaged: ends its stream with a bad_file dead letter
    broken.write_bytes(compressed[: len(compressed) * 3 // 4])
    paths = [str(write_dbn(tmp_path / "nvda.dbn.zst", nvda)), str(write_csv(tmp_path / "amd.csv", lines)),
             str(broken)]

    def chunks(read_ahead: int) -> list[tuple[bytes, list[tuple[str, str]]]]:
        source = DatabentoFileSource(paths, chunk_size=256, read_ahead=read_ahead)
        return [(c.trades.tobytes(), [(d.reason, d.origin) for d in c.dead_letters]) for c in source.chunks()]

    in_turn = chunks(0)
    letters = [letter for _, found in in_turn for letter in found]
    assert ("bad_row", f"{paths[1]}, line 502") in letters and ("bad_file", str(broken)) in letters
    # A budget smaller than a chunk (each file still holds one) and one that fits whole files.
    assert chunks(1) == in_turn
    assert chunks(100_000) == in_turn
    assert not [t for t in threading.enumerate() if t.name.startswith("read-")]


def test_an_error_in_one_of_several_files_stops_every_reader(tmp_path: Path) -> None:
    good = write_dbn(tmp_path / "good.dbn", flow(5_000))
    odd = write_csv(tmp_path / "odd.csv", ["1,2"], header="ts_event,size")

    with pytest.raises(SourceError, match="price, symbol"):
        list(DatabentoFileSource([str(good), str(odd)], chunk_size=64, read_ahead=1_000).chunks())

    assert not [t for t in threading.enumerate() if t.name.startswith("read-")]


def test_stopping_early_closes_every_file_and_its_reader(tmp_path: Path) -> None:
    paths = [str(write_dbn(tmp_path / f"{k}.dbn", flow(5_000, seed=k))) for k in range(3)]
    chunks = DatabentoFileSource(paths, chunk_size=64, read_ahead=256).chunks()

    first = next(chunks)
    chunks.close()  # type: ignore[attr-defined]

    assert len(first.trades) > 0
    assert not [t for t in threading.enumerate() if t.name.startswith("read-")]


@pytest.mark.parametrize("stops", ["refused_header", "consumer_stopped"])
def test_a_csv_reader_that_stops_leaves_no_read_of_its_file_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   stops: str) -> None:
    """Arrow reads a CSV ahead on a thread of its own, calling the stream (Python) there. Left reading
    when the reader stopped, that thread called into the interpreter as it shut down: a DBN file
    named .csv.zst aborted or hung `replay` at exit in about half the runs."""
    from adapters.databento import csv as csv_reader
    from adapters.databento.text_stream import WholeLineStream

    running: list[int] = []  # reads under way
    read_ahead = threading.Event()

    class SlowStream(WholeLineStream):  # a slow disk: arrow's read ahead is still inside a read
        reads = 0

        def read(self, size: int = -1) -> bytes:
            running.append(size)
            self.reads += 1
            try:
                if self.reads > 1:  # the header's block comes at once
                    read_ahead.set()
                    time.sleep(0.2)
                return super().read(size)
            finally:
                running.pop()

    def open_csv(*args: object, **kwargs: object) -> object:
        reader = real_open_csv(*args, **kwargs)
        read_ahead.wait(5)  # the read after the header's is under way
        return reader

    real_open_csv = csv_reader.pcsv.open_csv
    monkeypatch.setattr(csv_reader, "WholeLineStream", SlowStream)
    monkeypatch.setattr(csv_reader.pcsv, "open_csv", open_csv)
    if stops == "refused_header":
        path = write_csv(tmp_path / "odd.csv", ["1,2"] * 100_000, header="ts_event,size")
        with pytest.raises(SourceError, match="price, symbol"):
            list(csv_reader.read_csv(path, 512))
    else:
        chunks = csv_reader.read_csv(write_csv(tmp_path / "day.csv", csv_lines(flow(20_000))), 512)
        assert len(next(chunks).trades) > 0
        chunks.close()  # type: ignore[attr-defined]

    assert read_ahead.is_set() and running == []


def test_read_ahead_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="read_ahead"):
        DatabentoFileSource([str(write_dbn(tmp_path / "a.dbn", flow(10)))], read_ahead=-1)


def test_source_can_be_read_again(tmp_path: Path) -> None:
    source = DatabentoFileSource([str(write_dbn(tmp_path / "a.dbn", flow(10)))])

    first = np.concatenate([c.trades for c in source.chunks()])
    again = np.concatenate([c.trades for c in source.chunks()])

    assert first.tobytes() == again.tobytes()


def test_reading_csv_files_does_not_import_the_databento_client(tmp_path: Path) -> None:
    # The client (~0.35 s to import) is what DBN files are read with; CSV exports are read by Arrow.
    import subprocess
    import sys

    path = write_csv(tmp_path / "day.csv", csv_lines(flow(50)))
    probe = ("import sys; from adapters.databento import DatabentoFileSource; "
             f"n = sum(len(c.trades) for c in DatabentoFileSource([{str(path)!r}]).chunks()); "
             "print(n, 'databento' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["50", "False"]


def test_a_file_named_twice_is_read_once_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A glob and a path (or two spellings of one path) naming the same file: its trades once, and a
    warning rather than silence."""
    from structlog.testing import capture_logs

    from adapters.databento.paths import expand_paths

    (tmp_path / "d").mkdir()
    first = write_csv(tmp_path / "d" / "a.csv", csv_lines(calm_flow(10)))
    monkeypatch.chdir(tmp_path)
    with capture_logs() as logs:
        files = expand_paths(["d/*.csv", "d/../d/a.csv", str(first)])
    assert files == [Path("d/a.csv")]
    assert [(e["event"], e["file"]) for e in logs] == [("input_named_twice", "d/../d/a.csv"),
                                                       ("input_named_twice", str(first))]
