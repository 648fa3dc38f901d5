"""DatabentoFileSource: the TradeSource over Databento files (DBN and CSV, plain or zstd)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from adapters.databento.csv import read_csv
from adapters.databento.dbn import read_dbn
from adapters.databento.merge import merge_by_event_time
from adapters.databento.paths import expand_paths, file_kind
from domain.errors import SourceError
from domain.ports import SourceChunk

_READERS = {"dbn": read_dbn, "csv": read_csv}


class DatabentoFileSource:
    """Trades from files, globs or directories, merged into event-time order across files.

    Paths are checked when the source is built (SourceError for a path that names nothing or an
    unsupported file); files are opened when `chunks()` is iterated, and every iteration re-reads them.
    """

    def __init__(self, paths: Sequence[str | Path], chunk_size: int = 65_536) -> None:
        if chunk_size < 1:
            raise SourceError(f"chunk_size must be positive, got {chunk_size}")
        self.files = expand_paths(paths)
        self.chunk_size = chunk_size

    def chunks(self) -> Iterator[SourceChunk]:
        streams = [_READERS[file_kind(path)](path, self.chunk_size) for path in self.files]
        return merge_by_event_time(streams)

    def __repr__(self) -> str:
        return f"DatabentoFileSource({[str(p) for p in self.files]!r}, chunk_size={self.chunk_size})"
