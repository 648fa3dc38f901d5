"""Whether a file a command will write can be written, found by trying before the command's work."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from entrypoints import nearest_existing


def unwritable(path: Path) -> str | None:
    """Why the file `path` cannot be written (None: it can, a missing directory being created).

    Tried, not asked: os.access, asked of the nearest directory, said yes to a file through a link to
    a missing directory, or (to root) under /proc, and the report was refused only once the run it
    reports was over. A file that is there is opened for appending (nothing written, nothing changed);
    one that is not is created and removed, in its missing directories, made for the trial and removed
    after it. What no trial foresees (a disk that fills up during the run) is said when it happens."""
    exists = False
    made: list[Path] = []  # directories made for the trial, deepest last
    try:  # (a name too long for the system fails even the questions)
        if path.is_dir():
            return f"{str(path)!r} is a directory"
        ancestor = nearest_existing(path.parent)
        if not ancestor.is_dir():
            return f"{str(path)!r} cannot be created: {str(ancestor)!r} is not a directory"
        exists = path.exists()
        if exists and not path.is_file():  # a pipe or a device: opened, one would wait for its reader
            return None if os.access(path, os.W_OK) else f"{str(path)!r} is not writable"
        for directory in reversed([path.parent, *path.parent.parents]):
            if not directory.exists():
                directory.mkdir()
                made.append(directory)
        # A link to nowhere is written through, as the writers do: O_EXCL would refuse any link.
        flags = os.O_WRONLY | os.O_APPEND
        if not exists:
            flags |= os.O_CREAT | (0 if path.is_symlink() else os.O_EXCL)
        os.close(os.open(path, flags, 0o600))
        if not exists:
            os.unlink(os.path.realpath(path))
    except OSError as exc:
        return f"{str(path)!r} {'is not writable' if exists else 'cannot be created'}: {exc.strerror or exc}"
    finally:
        for directory in reversed(made):
            with contextlib.suppress(OSError):  # another process put something there meanwhile: left
                directory.rmdir()
    return None
