"""Read Databento CSV exports (.csv, .csv.zst) in streamed pyarrow blocks; bad rows become dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from adapters.databento import columns
from adapters.databento import dead_letters as dl
from adapters.databento.paths import is_zstd
from adapters.databento.quoting import as_csv_field, line_left_open
from adapters.databento.text_stream import WholeLineStream
from domain.errors import SourceError
from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk
from domain.symbols import words_of

REQUIRED = ("ts_event", "price", "size", "symbol")
_TEXT = ("ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "depth", "price", "size", "flags",
         "ts_in_delta", "sequence")
_CODES = ("action", "side", "symbol")
# Everything is read as text so one bad value costs one row, not the block; the low-cardinality
# columns come dictionary-encoded, which makes symbol/side/action conversion a lookup per block.
COLUMN_TYPES = {name: pa.string() for name in _TEXT} | {name: pa.dictionary(pa.int32(), pa.string())
                                                        for name in _CODES}
# (column, arrow type it must parse as, TRADE_DTYPE default when the export lacks the column; None:
# required, or for `sequence` each row's line, see _convert)
_INTEGERS = (("publisher_id", pa.uint16(), 0), ("instrument_id", pa.uint32(), 0), ("size", pa.int64(), None),
             ("flags", pa.uint8(), 0), ("sequence", pa.uint64(), None))
SIDES = ("A", "B", "N", "")
BYTES_PER_ROW = 128  # a real XNAS.ITCH trades row is ~120 bytes


# Integer timestamps are nanoseconds since the epoch; any after 1973-03-03 are at least this. Seconds,
# milliseconds and microseconds of any date since 1970 stay under it: read as nanoseconds they would
# be prints of January 1970, every one accepted.
NS_FLOOR = 10**17


class _Formats:
    """How this file writes timestamps and prices, decided once from its first block."""

    def __init__(self, batch: pa.RecordBatch, path: Path) -> None:
        names = batch.schema.names
        self.int_ts = {name: columns.looks_like_integers(batch.column(name))
                       for name in ("ts_event", "ts_recv") if name in names}
        for name, integers in self.int_ts.items():
            median = columns.integer_median(batch.column(name)) if integers else None
            if median is not None and median < NS_FLOOR:
                raise SourceError(f"{path}: {name} holds integers like {median:.0f}, too small for nanoseconds since "
                                  "the epoch (seconds, milliseconds or microseconds?); write integer timestamps in "
                                  "nanoseconds, or ISO 8601")
        self.fixed_price = columns.looks_like_fixed_point_prices(batch.column("price"))


def read_csv(path: Path, chunk_size: int) -> Iterator[SourceChunk]:
    """Trades of one CSV export in file order; a damaged stream ends it with a bad_file dead letter."""
    try:
        stream = WholeLineStream(path, "zstd" if is_zstd(path) else None)
    except OSError as exc:
        yield dl.letters_only(dl.bad_file(path, dl.line(1), exc))
        return
    with stream:
        yield from _read_stream(stream, path, chunk_size)


def _read_stream(stream: WholeLineStream, path: Path, chunk_size: int) -> Iterator[SourceChunk]:
    skipped: list[int] = []
    pending: list[DeadLetter] = []

    def invalid_row(row: pcsv.InvalidRow) -> str:
        # Lines arrow cannot split into the header's fields (wrong count, a line cut short, a quote left open).
        skipped.append(row.number if row.number is not None else -1)
        left_open = line_left_open(row.text, stream.unclosed)
        detail = ("a quoted field is not closed on its line" if left_open is not None
                  else f"expected {row.expected_columns} fields, got {row.actual_columns}")
        pending.append(dl.bad_row(path, dl.line(row.number if row.number is not None else "?"), detail,
                                  (row.text if left_open is None else left_open).encode(),
                                  row.number if row.number is not None else -1))
        return "skip"

    try:
        reader = pcsv.open_csv(
            stream,
            # One thread: the invalid-row callback then sees lines in order, which line numbers rely on.
            read_options=pcsv.ReadOptions(block_size=max(1 << 16, chunk_size * BYTES_PER_ROW),
                                          use_threads=False),
            # Quoted fields read as RFC 4180 has them (other CSV tools quote what Databento does not),
            # each within its line: the stream keeps a quote left open to its own line.
            parse_options=pcsv.ParseOptions(quote_char='"', double_quote=True, ignore_empty_lines=False,
                                            invalid_row_handler=invalid_row),
            convert_options=pcsv.ConvertOptions(column_types=COLUMN_TYPES, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        empty = stream.damage is None and "Empty CSV file" in str(exc)  # not even a header line
        yield dl.letters_only(*pending, dl.bad_file(path, dl.line(1), "the file is empty (no header line)" if empty
                                                    else stream.damage or exc))
        return
    try:
        yield from _read_batches(reader, stream, path, pending, skipped)
    finally:
        _finish(reader, stream)


def _other_dialect(names: list[str]) -> str | None:
    """How a header that holds the required columns in another CSV dialect (fields separated by
    semicolons or tabs, or padded with spaces, quoted or not, as spreadsheets and scripts write them)
    is written; None for any other. (Quotes alone are read: RFC 4180, see `_read_stream`.)"""
    for separator, said in ((",", ""), (";", "separated by semicolons"), ("\t", "separated by tabs")):
        fields = [field for name in names for field in name.split(separator)]
        if all(name in [field.strip().strip('"') for field in fields] for name in REQUIRED):
            ways = [said, "in double quotes" if any('"' in field for field in fields) else "",
                    "padded with spaces" if any(field != field.strip() for field in fields) else ""]
            return "its fields are " + " and ".join(way for way in ways if way)
    return None


def _finish(reader: pcsv.CSVStreamingReader, stream: WholeLineStream) -> None:
    """Let arrow's reader run out before the stream closes. It reads ahead on a thread of its own, in
    Python (the stream is a Python object), and `close()` does not wait for it: left reading when the
    file is refused (a DBN file named .csv.zst) or its consumer stops early, that thread would call
    into an interpreter that is shutting down, and the process would abort or hang at exit."""
    stream.end()
    try:
        while True:
            reader.read_next_batch()
    except StopIteration:
        pass
    except (pa.ArrowException, OSError):
        pass  # what is left unread is abandoned on purpose; an error in it is no news
    reader.close()


def _read_batches(reader: pcsv.CSVStreamingReader, stream: WholeLineStream, path: Path,
                  pending: list[DeadLetter], skipped: list[int]) -> Iterator[SourceChunk]:
    missing = [name for name in REQUIRED if name not in reader.schema.names]
    if missing:
        header = ", ".join(reader.schema.names)
        if header.startswith("DBN"):  # DBN's magic: its metadata read as a header line
            raise SourceError(f"{path}: holds DBN records, not CSV text: name it .dbn (or .dbn.zst, compressed)")
        if not header.replace("\t", " ").isprintable():  # compressed or binary bytes, not a header
            raise SourceError(f"{path}: is not CSV text (compressed? a .csv.zst is read as zstd, a .csv as plain "
                              "text, a .dbn/.dbn.zst as DBN)")
        if len(reader.schema.names) == 1 and reader.schema.names[0] in stream.unclosed:
            raise SourceError(f"{path}: a quote in its header line is not closed ({dl.printable(header)})")
        dialect = _other_dialect(reader.schema.names)
        if dialect:  # the columns are there, written another way: 'lacks ts_event (has "ts_event", ...)' said neither
            raise SourceError(f"{path}: {dialect}; this reader takes CSV as Databento exports it, comma-separated "
                              "with nothing around the fields (which may be in double quotes): write it that way")
        raise SourceError(f"{path}: CSV header lacks {', '.join(missing)} (has {dl.printable(header)})")
    # A column the reader uses named twice: which one holds the value is anyone's guess.
    names = reader.schema.names
    twice = sorted({name for name in names if name in COLUMN_TYPES and names.count(name) > 1})
    if twice:
        raise SourceError(f"{path}: CSV header names {', '.join(twice)} more than once")
    formats: _Formats | None = None
    done = 0  # rows arrow has delivered so far; with `skipped` this gives each row's line number
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError) as exc:
            pending.append(dl.bad_file(path, dl.line(_next_line(done, skipped)), exc))
            break
        formats = formats or _Formats(batch, path)
        chunk = _convert(batch, formats, _LineNumbers(done, skipped), path)
        done += batch.num_rows
        # Taken out of the list the invalid-row handler appends to (a new list lost the letters of every
        # block after the first); what it adds meanwhile goes with the next chunk.
        taken = len(pending)
        chunk.dead_letters = pending[:taken] + chunk.dead_letters
        del pending[:taken]
        yield chunk
    if stream.damage is not None:
        pending.append(dl.bad_file(path, dl.line(_next_line(done, skipped)), stream.damage))
    if pending:
        yield dl.letters_only(*pending)


def _next_line(rows_done: int, skipped: list[int]) -> int:
    return int(_line_numbers(np.array([rows_done]), skipped)[0])


class _LineNumbers:
    def __init__(self, first_row: int, skipped: list[int]) -> None:
        self.first_row, self.skipped = first_row, skipped

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return _line_numbers(rows + self.first_row, self.skipped)


def _line_numbers(rows: np.ndarray, skipped: list[int]) -> np.ndarray:
    """1-based physical lines of data rows (0-based, counting only rows arrow delivered)."""
    lines = np.sort(np.asarray(skipped, np.int64))
    # The j-th skipped line has (line - 2 - j) delivered rows before it (line 1 is the header).
    rows_before = lines - 2 - np.arange(len(lines))
    return rows + 2 + np.searchsorted(rows_before, rows, side="right")


def _convert(batch: pa.RecordBatch, formats: _Formats, lines: _LineNumbers, path: Path) -> SourceChunk:
    """The batch's trades, each with its line as its place, and the dead letters of its other rows."""
    n = batch.num_rows
    names = batch.schema.names
    symbol_table, symbol_index, symbol_empty = _dictionary(batch.column("symbol"), "U24")
    if "action" in names:
        action, action_empty = _codes(batch.column("action"), "U4")
        wanted = (action == "T") | action_empty
    else:
        action_empty, wanted = np.zeros(n, bool), np.ones(n, bool)
    # (what is wrong, the column to quote in the dead letter, rows it applies to)
    width = TRADE_DTYPE["symbol"].itemsize // 4
    too_long = np.array([len(v) > width for v in batch.column("symbol").dictionary.to_pylist()], bool)
    problems: list[tuple[str, str | None, np.ndarray]] = [
        ("missing action", None, action_empty), ("missing symbol", None, symbol_empty),
        # Cut to the width, two names would become one symbol.
        (f"symbol longer than {width} characters", "symbol", too_long[symbol_index])]
    out = np.empty(n, TRADE_DTYPE)  # every field is assigned below
    for name, is_int in formats.int_ts.items():
        out[name], bad = columns.parse_timestamps(batch.column(name), is_int)
        local = np.zeros(n, bool) if is_int else columns.zoneless(batch.column(name), bad)
        problems.append((f"unparseable {name}", name, bad & ~local))
        problems.append((f"time zone missing (a Z for UTC, as Databento writes) in {name}", name, local))
    if "ts_recv" not in names:
        out["ts_recv"] = out["ts_event"]
    out["price"], bad = columns.parse_prices(batch.column("price"), formats.fixed_price)
    problems.append(("unparseable price", "price", bad))
    for name, arrow_type, default in _INTEGERS:
        if name in names:
            out[name], bad = columns.parse(batch.column(name), arrow_type, columns.INT_PATTERN)
            problems.append((f"unparseable {name}", name, bad))
        elif default is not None:
            out[name] = default
    if "sequence" not in names:
        # Without the feed's sequence numbers, prints of one instrument at the same nanosecond would
        # all look like one trade sent again (the duplicate guard's key): each row's line instead,
        # unique within the file and rising, so only the same line read twice is a duplicate.
        out["sequence"] = lines(np.arange(n))
    if "side" in names:
        # Databento's sides: A, B, or N (none, as an empty one reads). Any other would have been cut
        # to its first character (BB as B) or taken as given (Z): one a cross exemption misreads.
        values = batch.column("side").dictionary.to_pylist()
        index = batch.column("side").indices.to_numpy(zero_copy_only=False)
        out["side"] = np.array([(v or "N").encode()[:1] for v in values], "S1")[index]
        problems.append(("side not A, B or N", "side", np.array([v not in SIDES for v in values], bool)[index]))
    else:
        out["side"] = b"N"
    # Copied as the characters' uint32 words: numpy's unicode copy is several times slower.
    words_of(out["symbol"])[:] = words_of(symbol_table)[symbol_index]

    bad = np.zeros(n, bool)
    for _, _, mask in problems:
        bad |= mask
    bad &= wanted
    letters: list[tuple[int, DeadLetter]] = []  # (line, letter): in file order once both kinds are in
    if bad.any():
        rows = np.flatnonzero(bad)
        blank = _blank_lines(batch, rows)
        rows = rows[~blank]
        for row, line in zip(rows.tolist(), lines(rows).tolist()):
            detail = "; ".join(what if name is None else f"{what} {batch.column(name)[row].as_py()!r}"
                               for what, name, mask in problems if mask[row])
            letters.append((line, dl.bad_row(path, dl.line(line), detail, _raw(batch, row), line)))
    keep = wanted & ~bad
    kept = np.flatnonzero(keep)
    at = lines(kept)
    chunk, refused = dl.refused_by_checks(out if keep.all() else out[keep], path, at, dl.line,
                                          lambda row: _raw(batch, int(kept[row])))
    if refused:
        letters = sorted(letters + [(int(at[row]), letter) for row, letter in refused], key=lambda x: x[0])
    chunk.dead_letters = [letter for _, letter in letters]
    return chunk


def _dictionary(column: pa.DictionaryArray, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dictionary column as (its values as a fixed-width numpy array, each row's index into them,
    the mask of empty rows)."""
    values = column.dictionary.to_pylist()
    table = np.array(values, dtype)
    indices = column.indices.to_numpy(zero_copy_only=False)
    empty = np.array([v == "" for v in values], bool)
    return table, indices, empty[indices]


def _codes(column: pa.DictionaryArray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A dictionary column as a fixed-width numpy array, and the mask of empty values."""
    table, indices, empty = _dictionary(column, dtype)
    return table[indices], empty


def _blank_lines(batch: pa.RecordBatch, rows: np.ndarray) -> np.ndarray:
    """Rows that are empty lines: nothing to lose, so no dead letter."""
    taken = batch.take(pa.array(rows))
    blank = np.ones(len(rows), bool)
    for column in taken.columns:
        text = column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
        blank &= np.asarray(pc.equal(text, "").to_numpy(zero_copy_only=False), bool)
    return blank


def _raw(batch: pa.RecordBatch, row: int) -> bytes:
    """The row as CSV: as it stood in the file when unquoted (as exports are), else a line that reads
    back to the same values (only the fields that need them quoted)."""
    return ",".join("" if c[row].as_py() is None else as_csv_field(str(c[row].as_py()))
                    for c in batch.columns).encode()
