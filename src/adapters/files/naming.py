"""A failed write that says which file: the system's error for a full disk (ENOSPC) names none."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Inside it, an OSError without a file name gets `path` ("Error: /dev/full: No space left on
    device", not "Error: No space left on device")."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
