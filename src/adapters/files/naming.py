"""A failed write that says which file: the system's error for a full disk (ENOSPC) names none."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def naming(path: str | Path, via: str | Path | None = None) -> Iterator[None]:
    """Inside it, an OSError without a file name gets `path` ("Error: /dev/full: No space left on
    device", not "Error: No space left on device"); so does one naming `via`, the file written in
    its place and renamed to it when whole (the user never named `x.dbn.zst.partial`)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and (via is None or exc.filename != str(via)):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
