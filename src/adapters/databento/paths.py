"""Expand user-given paths (files, globs, directories) into the Databento files they name."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import structlog

from domain.errors import SourceError

DBN_SUFFIXES = (".dbn", ".dbn.zst")
CSV_SUFFIXES = (".csv", ".csv.zst")
SUPPORTED_SUFFIXES = DBN_SUFFIXES + CSV_SUFFIXES
_GLOB_CHARS = frozenset("*?[")
log = structlog.get_logger()


def file_kind(path: Path) -> str:
    """'dbn' or 'csv' by file name; SourceError for anything else."""
    name = path.name.lower()
    if name.endswith(DBN_SUFFIXES):
        return "dbn"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise SourceError(
        f"unsupported file type: {path} (expected one of {', '.join(SUPPORTED_SUFFIXES)})"
    )


def is_zstd(path: Path) -> bool:
    return path.name.lower().endswith(".zst")


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files in the order given; a directory contributes its supported files, sorted by name."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise SourceError("no input paths given")
    found: dict[Path, Path] = {}  # the file itself -> as first named
    for raw in paths:
        for file in _expand_one(str(raw)):
            # The same file named twice (a glob and an explicit path) would replay its trades twice.
            first = found.setdefault(file.resolve(), file)
            if first is not file:
                log.warning("input_named_twice", file=str(file), read_once_as=str(first))
    return list(found.values())


def _expand_one(raw: str) -> list[Path]:
    if not raw.strip():
        raise SourceError("an empty input path was given (Path('') would be the current directory)")
    path = Path(raw).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _supported(p))
        if not files:
            raise SourceError(f"directory has no Databento files ({', '.join(SUPPORTED_SUFFIXES)}): {raw} "
                              f"(its subdirectories are not searched: name them, or a glob like {raw.rstrip('/')}/**/*.zst)")
        return files
    if path.is_file():
        file_kind(path)
        return [path]
    if _GLOB_CHARS & set(raw):
        matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
        files = [m for m in matches if m.is_file() and _supported(m)]
        if not files:
            detail = f" ({len(matches)} matched, none a supported file)" if matches else ""
            raise SourceError(f"glob matches no Databento files: {raw}{detail}")
        return files
    if path.exists():  # a named pipe, a device, a socket: there is a file, but not one to read to its end
        raise SourceError(f"not a regular file or directory: {raw} (give a Databento file, not a pipe or device)")
    raise SourceError(f"no such file or directory: {raw}")


def _supported(path: Path) -> bool:
    return path.name.lower().endswith(SUPPORTED_SUFFIXES)
