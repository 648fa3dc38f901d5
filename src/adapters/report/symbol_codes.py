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
    try:
        words = symbols[:, None].view(symbols.dtype.byteorder.replace("|", "=") + "u8")
    except ValueError:  # a layout numpy cannot re-view; the string path still works
        return None
    if words.shape[1] < 4:
        return None
    if words.shape[1] > 4 and words[:, 4:].any():
        return None
    w0, w1, w2, w3 = words[:, 0], words[:, 1], words[:, 2], words[:, 3]
    spare = np.bitwise_or(w0, w1)
    spare |= w2
    spare |= w3
    spare &= _HIGH_BYTES
    if spare.any():
        return None
    packed = np.left_shift(w1, np.uint64(8))
    packed |= w0
    np.left_shift(w2, np.uint64(16), out=spare)
    packed |= spare
    np.left_shift(w3, np.uint64(24), out=spare)
    packed |= spare
    return packed


class SymbolCodes:
    """Assigns each distinct symbol a dense int code, first seen first; remembers the names.

    Packed keys are looked up in an open hash table (one probe; a key that lost its slot to
    another goes to a binary search over all keys), so a batch costs a few ns a row once every
    symbol has been seen.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._by_name: dict[str, int] = {}
        self._sorted_keys = np.empty(0, np.uint64)
        self._sorted_codes = np.empty(0, np.int64)
        self._shift = np.uint64(64)
        self._table_keys = np.empty(0, np.uint64)
        self._table_codes = np.empty(0, np.int32)

    def __len__(self) -> int:
        return len(self.names)

    def code_of(self, name: str) -> int | None:
        return self._by_name.get(name)

    def encode(self, symbols: np.ndarray) -> np.ndarray:
        """The int64 code of every row of a symbol column, registering new symbols."""
        packed = pack_short_symbols(symbols)
        if packed is None:
            return self._encode_strings(symbols)
        if len(self._table_keys):
            slot = self._slot(packed)
            # An empty slot holds key 0 and code -1, so it never yields a code.
            codes = np.where(self._table_keys[slot] == packed, self._table_codes[slot], _EMPTY)
        else:
            codes = np.full(len(packed), _EMPTY, np.int64)
        miss = np.flatnonzero(codes < 0)
        if len(miss):
            codes[miss] = self._encode_misses(packed[miss], symbols[miss])
        return codes

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * _MULT) >> self._shift).astype(np.intp)

    def _encode_misses(self, packed: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._sorted_keys, packed)
        pos[pos == len(self._sorted_keys)] = 0
        codes = np.full(len(packed), _EMPTY, np.int64)
        if len(self._sorted_keys):
            known = self._sorted_keys[pos] == packed
            codes[known] = self._sorted_codes[pos[known]]
        new = np.flatnonzero(codes == _EMPTY)
        if len(new):
            keys, first, inverse = np.unique(packed[new], return_index=True, return_inverse=True)
            fresh = np.array([self._register(str(symbols[new[i]])) for i in first], np.int64)
            codes[new] = fresh[inverse.reshape(-1)]
            self._index(keys, fresh)
        return codes

    def _encode_strings(self, symbols: np.ndarray) -> np.ndarray:
        # Slow path for long or non-Latin-1 symbols (options, some futures): sorts the strings.
        names, inverse = np.unique(symbols.astype(str), return_inverse=True)
        codes = np.array([self._register(str(name)) for name in names], np.int64)
        return codes[inverse.reshape(-1)]

    def _register(self, name: str) -> int:
        code = self._by_name.get(name)
        if code is None:
            code = len(self.names)
            self._by_name[name] = code
            self.names.append(name)
        return code

    def _index(self, keys: np.ndarray, codes: np.ndarray) -> None:
        """Add keys not indexed yet (sorted, distinct) to the sorted arrays and the table."""
        at = np.searchsorted(self._sorted_keys, keys)
        self._sorted_keys = np.insert(self._sorted_keys, at, keys)
        self._sorted_codes = np.insert(self._sorted_codes, at, codes)
        if len(self._sorted_keys) * 8 > len(self._table_keys):
            # Regrow to 16-32x the key count: collisions (binary-search fallbacks) stay rare
            # and the table stays small enough for the cache.
            bits = max(10, (len(self._sorted_keys) * 16).bit_length())
            self._shift = np.uint64(64 - bits)
            self._table_keys = np.zeros(1 << bits, np.uint64)
            self._table_codes = np.full(1 << bits, _EMPTY, np.int32)
            keys, codes = self._sorted_keys, self._sorted_codes
        slot = self._slot(keys)
        free = self._table_codes[slot] == _EMPTY
        slot, keys, codes = slot[free], keys[free], codes[free]
        _, winners = np.unique(slot, return_index=True)  # one key per slot
        self._table_keys[slot[winners]] = keys[winners]
        self._table_codes[slot[winners]] = codes[winners]
