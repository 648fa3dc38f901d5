"""Compiled kernels: the per-trade recurrences run as numba loops over the whole market batch.

Each detector walks the batch's trades once (each symbol's in arrival order, which the guard has
made event-time order) and updates the state row of the trade's symbol (`slot[i]`), so the cost per
trade is the same for one symbol or five thousand and the result is the same however the stream
is cut. Kernels are compiled on first use and cached on disk (`cache=True`: next to the sources,
or in NUMBA_CACHE_DIR), so only the first run ever waits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

HIT_FIELDS = 4  # detail columns a kernel can report per hit

_DISPATCHERS: list[Any] = []  # every kernel and helper made below, for `compiled_in_this_process`


def kernel(fn: F) -> F:
    """numba-compile `fn` with an on-disk cache and numpy's error model (x / 0 -> inf, not an exception).
    Kernels release the GIL, so a source can decode the next chunk on another thread meanwhile."""
    dispatcher = numba.njit(cache=True, nogil=True, error_model="numpy")(fn)
    _DISPATCHERS.append(dispatcher)
    return cast(F, dispatcher)


def inline(fn: F) -> F:
    """A small compiled helper, inlined into the kernels that call it (no call per trade)."""
    dispatcher = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")(fn)
    _DISPATCHERS.append(dispatcher)
    return cast(F, dispatcher)


def compiled_in_this_process() -> int:
    """How many kernel specialisations this process compiled (numba's on-disk cache had none for them:
    a fresh checkout, edited sources, another CPU) instead of loading them from the cache. A process
    that compiled keeps what LLVM built for as long as it runs: a worker that compiled its kernels at
    start sat ~200 MiB above one that loaded them (648 against 451 MiB), and freeing memory
    (gc, malloc_trim) gives none of it back."""
    # Under NUMBA_DISABLE_JIT a "kernel" is the plain function: nothing compiled.
    return sum(sum(d.stats.cache_misses.values()) for d in _DISPATCHERS if hasattr(d, "stats"))


def kernels_cached(kernel: Any = None) -> bool:
    """Whether numba has a kernel compiled on disk (default: the record checks, the first kernel any
    detecting run calls). Read from its index file, an attribute path of numba's own: True when it
    cannot tell."""
    if kernel is None:
        from domain.validation import _verdicts as kernel

    try:
        return os.path.exists(kernel._cache._cache_file._index_path)
    except AttributeError:
        return True


@inline
def mix64(x: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a well-spread 64-bit hash of a 64-bit value."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@inline
def trade_key(publisher_id: int, instrument_id: int, ts_event: int, sequence: int) -> np.uint64:
    """A 64-bit digest of what identifies a trade: (publisher, instrument, event time, sequence)."""
    h = mix64(np.uint64(ts_event) ^ np.uint64(0x9E3779B97F4A7C15))
    h = mix64(h ^ np.uint64(sequence))
    return mix64(h ^ (np.uint64(publisher_id) << np.uint64(32)) ^ np.uint64(instrument_id))


def new_hits(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Room for up to one hit per trade: trade index, score, detail columns (filled by a kernel)."""
    return np.empty(n, np.int64), np.empty(n, np.float64), np.empty((n, HIT_FIELDS), np.float64)
