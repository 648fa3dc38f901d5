"""Vectorised symbol string -> small int code, so trade batches can be grouped without string sorts."""

from __future__ import annotations

import numpy as np

_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads packed tickers over the table
_HIGH_BYTES = np.uint64(0xFFFFFF00FFFFFF00)  # the upper 3 bytes of each UCS-4 char in a word
_EMPTY = -1


def pack_short_symbols(symbols: np.ndarray) -> np.ndarray | None:
    """Each symbol as one exact uint64 when all are Latin-1 and at most 8 chars; else None.

    Sorting or comparing `<U24` strings costs ~0.8 µs a row; tickers fit in 8 bytes, so we look at
    the raw UCS-4 words instead: chars c0..c7 live in the low byte of each 32-bit half of words
    0..3, and shifting words 1..3 by 8, 16, 24 bits interleaves them into one word without overlap.
    """
    if symbols.dtype.kind != "U" or symbols.dtype.itemsize % 8 or symbols.ndim != 1:
        return None
    # A trailing axis of length 1 counts as contiguous, so a strided field view can be re-viewed.
    words = symbols[:, None].view(symbols.dtype.byteorder.replace("|", "=") + "u8")
    if words.shape[1] < 4:
        return None
    if words.shape[1] > 4 and words[:, 4:].any():
        return None
    w0, w1, w2, w3 = words[:, 0], words[:, 1], words[:, 2], words[:, 3]
    if ((w0 | w1 | w2 | w3) & _HIGH_BYTES).any():
        return None
    return w0 | (w1 << np.uint64(8)) | (w2 << np.uint64(16)) | (w3 << np.uint64(24))


class SymbolCodes:
    """Assigns each distinct symbol a dense int code, first seen first; remembers the names."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._by_name: dict[str, int] = {}
        self._keys: list[int | None] = []  # packed key of each code; None if seen only as long
        self._sorted_keys = np.empty(0, np.uint64)
        self._sorted_codes = np.empty(0, np.int64)
        self._shift = np.uint64(64)
        self._table_keys = np.empty(0, np.uint64)
        self._table_codes = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, symbols: np.ndarray) -> np.ndarray:
        """The int64 code of every row of a symbol column, registering new symbols."""
        packed = pack_short_symbols(symbols)
        if packed is None:
            return self._encode_strings(symbols)
        codes = np.full(len(packed), _EMPTY, np.int64)
        if len(self._table_keys):
            slot = ((packed * _MULT) >> self._shift).astype(np.intp)
            found = self._table_codes[slot]
            hit = (found != _EMPTY) & (self._table_keys[slot] == packed)
            codes[hit] = found[hit]
        miss = np.flatnonzero(codes == _EMPTY)
        if len(miss):
            codes[miss] = self._encode_misses(packed[miss], symbols[miss])
        return codes

    def _encode_misses(self, packed: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        # Rows whose key lost its hash slot to another key, or symbols never seen before.
        pos = np.searchsorted(self._sorted_keys, packed).clip(max=max(len(self._sorted_keys) - 1, 0))
        codes = np.full(len(packed), _EMPTY, np.int64)
        if len(self._sorted_keys):
            known = self._sorted_keys[pos] == packed
            codes[known] = self._sorted_codes[pos[known]]
        new = np.flatnonzero(codes == _EMPTY)
        if len(new):
            keys, first, inverse = np.unique(packed[new], return_index=True, return_inverse=True)
            fresh = np.array([self._register(str(symbols[new[i]]), int(k))
                              for i, k in zip(first, keys)], np.int64)
            codes[new] = fresh[inverse]
            self._rebuild_index()
        return codes

    def _encode_strings(self, symbols: np.ndarray) -> np.ndarray:
        # Slow path for long or non-Latin-1 symbols (options, some futures): sorts the strings.
        names, inverse = np.unique(symbols.astype(str), return_inverse=True)
        codes = np.array([self._register(str(name), None) for name in names], np.int64)
        return codes[inverse.reshape(-1)]

    def _register(self, name: str, key: int | None) -> int:
        code = self._by_name.get(name)
        if code is None:
            code = len(self.names)
            self._by_name[name] = code
            self.names.append(name)
            self._keys.append(key)
        elif key is not None:
            self._keys[code] = key  # first seen in a batch that took the string path
        return code

    def _rebuild_index(self) -> None:
        codes = np.array([c for c, k in enumerate(self._keys) if k is not None], np.int64)
        keys = np.array([k for k in self._keys if k is not None], np.uint64)
        order = np.argsort(keys)
        self._sorted_keys, self._sorted_codes = keys[order], codes[order]
        # Table 16x the key count keeps primary-slot collisions (which fall back to the
        # binary search above) to a few percent of symbols.
        bits = max(10, int(len(keys) * 16).bit_length())
        self._shift = np.uint64(64 - bits)
        slot = ((keys * _MULT) >> self._shift).astype(np.intp)
        self._table_keys = np.zeros(1 << bits, np.uint64)
        self._table_codes = np.full(1 << bits, _EMPTY, np.int64)
        # One key per slot; the keys that lose a slot are found by the binary search.
        _, winners = np.unique(slot, return_index=True)
        self._table_keys[slot[winners]] = keys[winners]
        self._table_codes[slot[winners]] = codes[winners]

    def code_of(self, name: str) -> int | None:
        return self._by_name.get(name)
