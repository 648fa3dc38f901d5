"""Entry points: the CLI, the Faust worker and indexer apps, and the container that wires them.

Importing this package first makes sure the detectors' compiled kernels have somewhere to be cached
(below), since the modules here import the domain, which compiles them on import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_DOMAIN = Path(__file__).resolve().parents[1] / "domain"


def nearest_existing(path: Path) -> Path:
    """`path` if it exists, else its nearest ancestor that does (where creating it would start)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(path: Path) -> bool:
    """Whether `path` can be written, or created under its nearest existing ancestor."""
    start = nearest_existing(path)
    return start.is_dir() and os.access(start, os.W_OK | os.X_OK)


def kernel_cache_dir(domain: Path = _DOMAIN, home_cache: Path | None = None) -> str | None:
    """Where numba must be told to cache the kernels: None when it finds a place itself (beside the
    sources, or the user's ~/.cache/numba); else a folder of this user's under the temporary
    directory. Without one, an install the user cannot write to, run by a user without a home
    (a service account), fails at start-up ("no locator available")."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    home = home_cache or Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "numba"
    if _writable(domain / "__pycache__") or _writable(home):
        return None
    return str(Path(tempfile.gettempdir()) / f"stockanomaly-numba-{os.getuid()}")


if (_fallback := kernel_cache_dir()) is not None:
    os.environ["NUMBA_CACHE_DIR"] = _fallback
