"""Read DBN files (.dbn, .dbn.zst; DBN v1-v3) into trade batches: whole chunks with numpy, not records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import databento
import numpy as np
import zstandard
from databento_dbn import RType, Schema

from adapters.databento import dead_letters as dl
from adapters.databento.dbn_records import READ_ERRORS, noting_damage, read_records
from adapters.databento.symbology import SYMBOL_WIDTH, SymbolTable
from adapters.databento.zstd_check import zstd_damage
from domain.errors import SourceError
from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk

# Schemas whose records carry trades: every record (trades) or those with action 'T' (book schemas).
TRADE_SCHEMAS = (Schema.TRADES, Schema.TBBO, Schema.MBP_1, Schema.MBP_10)
UNDEF_PRICE = np.iinfo(np.int64).max
UNDEF_TIMESTAMP = np.iinfo(np.uint64).max
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def open_store(path: Path) -> databento.DBNStore:
    """The file's DBNStore; SourceError if it holds a schema that carries no trades."""
    store = databento.DBNStore.from_file(path)
    if store.schema is not None and store.schema not in TRADE_SCHEMAS:
        store.reader.close()
        names = ", ".join(str(s) for s in TRADE_SCHEMAS)
        raise SourceError(f"{path}: DBN schema {store.schema} carries no trades (expected {names})")
    return store


def read_dbn(path: Path, chunk_size: int) -> Iterator[SourceChunk]:
    """Trades of one DBN file in file order; damage ends the file with a bad_file dead letter."""
    if path.stat().st_size == 0:  # said as the CSV reader says it, not as databento's ValueError
        yield dl.letters_only(dl.bad_file(path, "the start", "the file is empty (no DBN header)"))
        return
    try:
        store = open_store(path)
    except READ_ERRORS as exc:
        if _holds_csv(path):  # as the CSV reader says of a DBN file named .csv
            raise SourceError(f"{path}: holds CSV text, not DBN records: name it .csv (or .csv.zst, compressed)") \
                from exc
        yield dl.letters_only(dl.bad_file(path, "the start", exc))
        return
    try:
        if store.schema is None or store.metadata.ts_out:
            # Live captures mix schemas (and ts_out changes the record size): decode record by record.
            yield from read_records(store, path, chunk_size)
        else:
            yield from _read_arrays(store, store.schema, path, chunk_size)
    finally:
        # DBNStore never closes its file; closing its reader (a fresh one) closes the file under it.
        store.reader.close()


def _holds_csv(path: Path) -> bool:
    """Whether the file (zstd-compressed or not, whatever its name says) begins with a CSV header line
    naming ts_event: a CSV export given a DBN name, which databento refuses without saying so."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if head == ZSTD_MAGIC:
                with zstandard.ZstdDecompressor().stream_reader(f) as text:
                    head = text.read(4096)
            else:
                head = f.read(4096)
    except (OSError, zstandard.ZstdError):
        return False
    line = head.split(b"\n", 1)[0].strip().lstrip(b"\xef\xbb\xbf")
    return line.isascii() and b"ts_event" in line.split(b",")


def _read_arrays(store: databento.DBNStore, schema: Schema, path: Path,
                 chunk_size: int) -> Iterator[SourceChunk]:
    symbols = _symbol_table(store, path)
    rtype = int(RType.from_schema(schema))
    chunks = store.to_ndarray(count=chunk_size)
    offset = 0
    while True:
        records, damage = _next_records(chunks)
        if records is not None:
            yield to_trades(records, offset, rtype, symbols, path)
            offset += len(records)
        if damage is not None:
            yield dl.letters_only(dl.bad_file(path, dl.record(offset), damage))
            return
        if records is None:
            break
    if _compressed(path) and (damage := zstd_damage(path)) is not None:
        yield dl.letters_only(dl.bad_file(path, dl.record(offset), damage))


def _compressed(path: Path) -> bool:
    """Whether the file is zstd by its content, as databento decides: by the name, a plain DBN named
    .dbn.zst was read whole and then reported damaged ('no zstd frame at byte 0'), and a cut-off
    compressed one named .dbn was never checked."""
    with open(path, "rb") as f:
        return f.read(4) == ZSTD_MAGIC


def _next_records(chunks: Iterator[np.ndarray]) -> tuple[np.ndarray | None, BaseException | str | None]:
    """The next array of records (None at the end) and what went wrong reading it, if anything."""
    return noting_damage(lambda: next(chunks, None))


def _symbol_table(store: databento.DBNStore, path: Path) -> SymbolTable:
    try:
        return SymbolTable.from_metadata(store.metadata)
    except ValueError as exc:
        raise SourceError(f"{path}: unusable symbology in DBN metadata: {exc}") from exc


def to_trades(records: np.ndarray, offset: int, rtype: int, symbols: SymbolTable,
              path: Path) -> SourceChunk:
    """Trades among one array of same-schema DBN records, each with its record index as its place;
    offset is the first record's index in the file."""
    letters: list[DeadLetter] = []
    well_formed = (records["rtype"] == rtype) & (records["length"].astype(np.int64) * 4 == records.itemsize)
    for i in np.flatnonzero(~well_formed):
        letters.append(dl.bad_row(path, dl.record(offset + int(i)),
                                  f"record header rtype={records['rtype'][i]} length={records['length'][i]}, "
                                  f"expected rtype={rtype} length={records.itemsize // 4}", place=offset + int(i)))
    rows = np.flatnonzero(well_formed & (records["action"] == b"T"))
    # Symbology dates follow ts_recv, as databento's own DataFrame mapping does.
    ts_recv = records["ts_recv"][rows]
    dates = np.where(ts_recv == UNDEF_TIMESTAMP, records["ts_event"][rows], ts_recv)
    symbol, known = symbols.resolve(records["instrument_id"][rows], dates)
    for i in np.flatnonzero(~known):
        row = int(rows[i])
        instrument = int(records["instrument_id"][row])
        name = symbols.long_symbol(instrument, int(dates[i]))
        if name is None:
            letters.append(dl.unknown_instrument(path, offset + row, instrument, int(dates[i])))
        else:  # cut to the width, two names could become one symbol
            letters.append(dl.bad_row(path, dl.record(offset + row), f"symbol longer than {SYMBOL_WIDTH} characters: "
                                                          f"{name!r} (instrument_id {instrument})", place=offset + row))
    keep = rows[known]
    # Gather field by field: a structured-array fancy index would copy every record's full width.
    whole = len(keep) == len(records)

    def field(name: str) -> np.ndarray:
        return records[name] if whole else records[name][keep]

    trades = np.empty(len(keep), TRADE_DTYPE)
    trades["ts_event"] = field("ts_event").astype(np.int64)
    trades["ts_recv"] = field("ts_recv").astype(np.int64)
    price = field("price")
    trades["price"] = np.where(price == UNDEF_PRICE, np.nan, price / 1e9)
    for name in ("size", "publisher_id", "instrument_id", "sequence", "side", "flags"):
        trades[name] = field(name)
    trades["symbol"] = symbol if len(keep) == len(rows) else symbol[known]
    chunk, refused = dl.refused_by_checks(trades, path, offset + keep, dl.record)
    chunk.dead_letters = letters + [letter for _, letter in refused]
    return chunk
