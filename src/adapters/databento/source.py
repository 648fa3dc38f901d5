"""DatabentoFileSource: the TradeSource over Databento files (DBN and CSV, plain or zstd)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from adapters.databento import dead_letters as dl
from adapters.databento.csv import read_csv
from adapters.databento.merge import merge_by_event_time
from adapters.databento.paths import expand_paths, file_kind
from adapters.prefetch import ReadAheadBudget, read_ahead
from domain.errors import SourceError
from domain.ports import SourceChunk


def _numbered(read: Callable[[Path, int], Iterator[SourceChunk]], path: Path, chunk_size: int,
              number: int) -> Iterator[SourceChunk]:
    """A file's chunks with their trades' and dead letters' places made the file's `number`'s (see FILE_PLACES)."""
    chunks = read(path, chunk_size)
    try:
        for chunk in chunks:
            if chunk.places is not None:
                chunk.places = chunk.places + number * FILE_PLACES
            if number:
                chunk.dead_letters = [replace(d, place=d.place + number * FILE_PLACES) if d.place >= 0 else d
                                      for d in chunk.dead_letters]
            yield chunk
    finally:  # closed with this one, not when collected: the CSV reader's thread stops now
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _read_dbn(path: Path, chunk_size: int) -> Iterator[SourceChunk]:
    # Imported when a DBN file is read: the databento client takes ~0.35 s to import, which a
    # replay or ingest of CSV files need not pay.
    from adapters.databento.dbn import read_dbn

    return read_dbn(path, chunk_size)


_READERS = {"dbn": _read_dbn, "csv": read_csv}
# A trade's place across the files: its file's number times FILE_PLACES plus its line (CSV) or record
# index (DBN) in that file.
FILE_PLACES = 1 << 40
# What a caller whose bottleneck is reading (ingest) gives as `read_ahead`: trades the files of a
# multi-file source may hold decoded ahead of the merge, all files together (~36 MiB of records).
# Each file is then decoded on a thread of its own (Arrow's CSV parser and zstd release the GIL), so
# the next day's file is parsed while this one's trades are sent. Ingest of the two real NVDA days,
# alternating rounds (benchmarks/ingest_throughput.py, best of 3 each): 0.258-0.284 s against
# 0.295-0.322 s read one file after the other. Not the default: where the consumer needs the same
# cores (replay's detection, which already overlaps one reader thread), it measured slower
# (both days replayed: 579,000-653,000 against 657,000-688,000 trades/s).
FILES_READ_AHEAD_TRADES = 262_144


class DatabentoFileSource:
    """Trades from files, globs or directories, merged into event-time order across files.

    Paths are checked when the source is built (SourceError for a path that names nothing or an
    unsupported file); files are opened when `chunks()` is iterated, and every iteration re-reads them.
    With several files and `read_ahead` > 0, each is decoded on its own thread, all of them together
    holding at most `read_ahead` trades (and one chunk each) that the merge has not taken yet; 0
    reads them in turn on the caller's thread. Either way the chunks, trades and dead letters are the same.
    """

    def __init__(self, paths: Sequence[str | Path], chunk_size: int = 65_536,
                 read_ahead: int = 0) -> None:
        if chunk_size < 1:
            raise SourceError(f"chunk_size must be positive, got {chunk_size}")
        if read_ahead < 0:
            raise SourceError(f"read_ahead must be 0 or more trades, got {read_ahead}")
        self.files = expand_paths(paths)
        self.chunk_size = chunk_size
        self.read_ahead = read_ahead
        # Each file's name and how its places read, worked out once: a day read twice names one per trade.
        self._places = [(str(path), dl.line if file_kind(path) == "csv" else dl.record) for path in self.files]

    def chunks(self) -> Iterator[SourceChunk]:
        readers = [partial(_numbered, _READERS[file_kind(path)], path, self.chunk_size, n)
                   for n, path in enumerate(self.files)]
        if len(readers) < 2 or self.read_ahead == 0:
            return merge_by_event_time([read() for read in readers], self.origin)
        budget = ReadAheadBudget(self.read_ahead)
        return merge_by_event_time([read_ahead(read, budget, name=f"read-{path.name}")
                                    for read, path in zip(readers, self.files)], self.origin)

    def fingerprint(self) -> str:
        """A name for these files as ingest marks its messages with (adapters.kafka.marks): each file's
        name and size, in order. Moving the files keeps it; another day's file, or one re-exported,
        changes it; a file changed in place is caught by resuming, which compares the trades too."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(f"{path.name}\0{path.stat().st_size}\n".encode())
        return digest.hexdigest()[:16]

    def origin(self, place: int) -> str:
        """Where a trade of these files is, by its place: `x.csv, line 7` or `x.dbn, record 3`."""
        path, where = self._places[place // FILE_PLACES]
        return dl.origin(path, where(place % FILE_PLACES))

    def __repr__(self) -> str:
        return (f"DatabentoFileSource({[str(p) for p in self.files]!r}, chunk_size={self.chunk_size}, "
                f"read_ahead={self.read_ahead})")
