"""The `stockanomaly-ingest` header: which of a source's trades a message's publish covered."""

from __future__ import annotations

import re
from collections.abc import Sequence

from domain.ports import IngestMark

HEADER = "stockanomaly-ingest"
_MARK = re.compile(rb"source=([0-9a-f]{1,64});trades=(\d{1,19})-(\d{1,19});partitions=(\d{1,9})")


def mark_header(mark: IngestMark, partitions: int) -> tuple[str, bytes]:
    """The header saying `mark` of a message written for `partitions` partitions, readable as text
    (`source=3f0c...;trades=65536-131072;partitions=4`)."""
    return HEADER, f"source={mark.source};trades={mark.first}-{mark.stop};partitions={partitions}".encode()


def read_mark(headers: Sequence[tuple[str, bytes]] | None) -> tuple[IngestMark, int] | None:
    """(the mark, the partition count) a message's headers say; None when they say none. A header
    of that name that does not read as one raises ValueError."""
    for key, value in headers or ():
        if key == HEADER:
            found = _MARK.fullmatch(value or b"")
            if found is None:
                raise ValueError(f"a {HEADER} header that does not read as one: {value!r}")
            source, first, stop, partitions = found.groups()
            return IngestMark(source.decode(), int(first), int(stop)), int(partitions)
    return None
