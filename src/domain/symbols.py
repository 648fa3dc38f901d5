"""Symbols of a batch as small integer codes, found with one hashing pass instead of a string sort."""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel


@kernel
def _factorize(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes (first-appearance order) of the rows of `words`, and the first row of each code."""
    n, width = words.shape
    size = 16
    while size < 2 * n:
        size <<= 1
    mask = size - 1
    table = np.full(size, -1, np.int32)
    first = np.empty(n, np.int64)
    codes = np.empty(n, np.int32)
    k = 0
    for i in range(n):
        h = np.uint64(1469598103934665603)
        for w in range(width):
            c = words[i, w]
            if c == 0:
                break
            h = (h ^ np.uint64(c)) * np.uint64(1099511628211)
        j = np.int64(h & np.uint64(mask))
        while True:
            code = table[j]
            if code < 0:
                table[j] = k
                first[k] = i
                codes[i] = k
                k += 1
                break
            r = first[code]
            same = True
            for w in range(width):
                if words[r, w] != words[i, w]:
                    same = False
                    break
            if same:
                codes[i] = code
                break
            j = (j + 1) & mask
    return codes, first[:k]


def factorize(symbols: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(code per row, symbol per code) for a fixed-width unicode column, codes in order of appearance."""
    if len(symbols) == 0:
        return np.empty(0, np.int32), []
    chars = symbols.dtype.itemsize // 4
    words = np.ascontiguousarray(symbols).view(np.uint32).reshape(len(symbols), chars)
    codes, first = _factorize(words)
    return codes, [str(s) for s in symbols[first]]
