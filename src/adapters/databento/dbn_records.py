"""Trades from mixed-schema DBN (live captures): decoded record by record, symbols from SymbolMappingMsg."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import databento
import numpy as np
from databento.common.error import BentoError, BentoWarning
from databento_dbn import DBNError, MBP1Msg, MBP10Msg, SymbolMappingMsg, TradeMsg
from zstandard import ZstdError

from adapters.databento import dead_letters as dl
from adapters.databento.symbology import SYMBOL_WIDTH, SymbolTable
from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import SourceChunk

T = TypeVar("T")
TRADE_RECORDS = (TradeMsg, MBP1Msg, MBP10Msg)
READ_ERRORS = (BentoError, DBNError, ZstdError, ValueError, OSError)
UNDEF_PRICE = np.iinfo(np.int64).max
# A live session subscribed to several schemas gets the same print as a TradeMsg and as an MBP-1
# 'T' record; keys of recent trades tell the copies apart. Sized far beyond the gap between copies.
RECENT_TRADES = 100_000


def read_records(store: databento.DBNStore, path: Path, chunk_size: int) -> Iterator[SourceChunk]:
    reader = _RecordReader(store, path)
    records = iter(store)
    while True:
        batch, damage = _next_batch(records, chunk_size)
        if batch:
            yield reader.to_trades(batch)
        if damage is not None:
            yield dl.letters_only(dl.bad_file(path, dl.record(reader.index), damage))
            return
        if len(batch) < chunk_size:
            return


def _next_batch(records: Iterator[Any], size: int) -> tuple[list[Any], BaseException | str | None]:
    batch: list[Any] = []
    _, damage = noting_damage(lambda: batch.extend(itertools.islice(records, size)))
    return batch, damage


def noting_damage(read: Callable[[], T]) -> tuple[T | None, BaseException | str | None]:
    """Run one read: its result, and the error or databento truncated-file warning it ended with."""
    # databento reports a file ending mid-record only as a warning. It is caught around one read, never
    # across a generator's yields, so the consumer's own warnings are left alone.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BentoWarning)
        try:
            result = read()
        except READ_ERRORS as exc:
            return None, exc
    damage = None
    for warning in caught:
        if issubclass(warning.category, BentoWarning):
            damage = str(warning.message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return result, damage


class _RecordReader:
    """Symbol state and duplicate memory carried across the batches of one file."""

    def __init__(self, store: databento.DBNStore, path: Path) -> None:
        self.path = path
        self.index = 0
        self.live_symbols: dict[int, str] = {}
        self.metadata_symbols = SymbolTable.from_metadata(store.metadata) if store.metadata.mappings else None
        self.recent: dict[tuple[int, ...], type] = {}

    def to_trades(self, batch: list[Any]) -> SourceChunk:
        rows: list[tuple[Any, ...]] = []
        places: list[int] = []  # each row's record index
        letters: list[DeadLetter] = []
        for record in batch:
            index = self.index
            self.index += 1
            if isinstance(record, SymbolMappingMsg):
                self._map(record)
            elif isinstance(record, TRADE_RECORDS) and _value(record.action) == "T":
                if self._is_copy(record):
                    continue
                symbol = self._symbol(record)
                if symbol is None:
                    letters.append(dl.unknown_instrument(self.path, index, record.instrument_id,
                                                         record.ts_recv))
                    continue
                if len(symbol) > SYMBOL_WIDTH:  # cut to the width, two names could become one symbol
                    letters.append(dl.bad_row(self.path, dl.record(index), f"symbol longer than {SYMBOL_WIDTH} characters: "
                                                                f"{symbol!r} (instrument_id {record.instrument_id})"))
                    continue
                price = record.price
                rows.append((record.ts_event, record.ts_recv, np.nan if price == UNDEF_PRICE else price / 1e9,
                             record.size, record.publisher_id, record.instrument_id, record.sequence,
                             _value(record.side).encode(), int(record.flags), symbol))
                places.append(index)
        trades = np.array(rows, dtype=TRADE_DTYPE) if rows else np.empty(0, TRADE_DTYPE)
        chunk, refused = dl.refused_by_checks(trades, self.path, np.array(places, np.int64), dl.record)
        chunk.dead_letters = letters + [letter for _, letter in refused]
        return chunk

    def _map(self, record: SymbolMappingMsg) -> None:
        # Same choice as databento's InstrumentMap: the output symbol, unless it is a bare instrument id.
        out = record.stype_out_symbol
        self.live_symbols[record.instrument_id] = record.stype_in_symbol if out.isdigit() else out

    def _symbol(self, record: Any) -> str | None:
        symbol = self.live_symbols.get(record.instrument_id)
        if symbol is None and self.metadata_symbols is not None:
            names, known = self.metadata_symbols.resolve(np.array([record.instrument_id]),
                                                         np.array([record.ts_recv], np.uint64))
            symbol = str(names[0]) if known[0] else self.metadata_symbols.long_symbol(record.instrument_id,
                                                                                        record.ts_recv)
        return symbol

    def _is_copy(self, record: Any) -> bool:
        """True for the same print seen moments ago in another schema (an exact repeat in the same
        schema is a real duplicate, left for the domain to reject)."""
        key = (record.publisher_id, record.instrument_id, record.ts_event, record.sequence, record.price,
               record.size)
        seen = self.recent.get(key)
        if seen is not None and seen is not type(record):
            return True
        self.recent[key] = type(record)
        if len(self.recent) > RECENT_TRADES:
            del self.recent[next(iter(self.recent))]
        return False


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))
