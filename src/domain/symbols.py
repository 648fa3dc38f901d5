"""Symbols of a batch as small integer codes, found with one hashing pass instead of a string sort."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from domain.compiled import inline, kernel


@inline
def _hash(words: np.ndarray, i: int) -> np.uint64:
    h = np.uint64(1469598103934665603)  # FNV-1a over the characters, up to the padding
    for w in range(words.shape[1]):
        c = words[i, w]
        if c == 0:
            break
        h = (h ^ c) * np.uint64(1099511628211)
    return h ^ (h >> np.uint64(29))


@kernel
def _factorize(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes (first-appearance order) of the rows of `words`, and the first row of each code."""
    n, width = words.shape
    # The table starts small (it stays in cache for a few thousand symbols) and doubles when half full.
    size = 1024
    table = np.full(size, -1, np.int32)
    hashes = np.empty(size // 2 + 1, np.uint64)
    known = np.empty((size // 2 + 1, width), words.dtype)  # each code's characters, compact: stays in cache
    first = np.empty(n, np.int64)
    codes = np.empty(n, np.int32)
    k = 0
    for i in range(n):
        if i > 0:  # a run of one symbol (one symbol's message, or a single-name tape): no hashing
            same = True
            for w in range(width):
                if words[i, w] != words[i - 1, w]:
                    same = False
                    break
                if words[i, w] == 0:
                    break
            if same:
                codes[i] = codes[i - 1]
                continue
        h = _hash(words, i)
        j = np.int64(h & np.uint64(size - 1))
        while True:
            code = table[j]
            if code < 0:
                table[j] = k
                hashes[k] = h
                known[k] = words[i]
                first[k] = i
                codes[i] = k
                k += 1
                break
            same = hashes[code] == h
            if same:
                for w in range(width):
                    if known[code, w] != words[i, w]:
                        same = False
                        break
                    if known[code, w] == 0:
                        break
            if same:
                codes[i] = code
                break
            j = (j + 1) & (size - 1)
        if 2 * k > size:
            size *= 2
            table = np.full(size, -1, np.int32)
            for c in range(k):
                j = np.int64(hashes[c] & np.uint64(size - 1))
                while table[j] >= 0:
                    j = (j + 1) & (size - 1)
                table[j] = c
            grown_hashes = np.empty(size // 2 + 1, np.uint64)
            grown_hashes[:k] = hashes[:k]
            grown_known = np.empty((size // 2 + 1, width), words.dtype)
            grown_known[:k] = known[:k]
            hashes, known = grown_hashes, grown_known
    return codes, first[:k]


@kernel
def group_positions(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable grouping of the rows by code (a counting sort: linear, unlike a comparison sort):
    (order, position) with order[g] the g-th row in grouped order and position[i] row i's place."""
    start = np.zeros(n_codes + 1, np.int64)
    for c in codes:
        start[c + 1] += 1
    for c in range(n_codes):
        start[c + 1] += start[c]
    order = np.empty(len(codes), np.int64)
    position = np.empty(len(codes), np.int64)
    for i in range(len(codes)):
        g = start[codes[i]]
        position[i] = g
        order[g] = i
        start[codes[i]] = g + 1
    return order, position


def group_by_code(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """The rows in a stable order grouped by code."""
    return group_positions(codes, n_codes)[0]


def words_of(symbols: np.ndarray) -> np.ndarray:
    """A fixed-width unicode column's characters as uint32 words, read in place (no copy)."""
    return symbols.view(np.dtype((np.uint32, symbols.dtype.itemsize // 4)))


def factorize(symbols: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(code per row, symbol per code) for a fixed-width unicode column, codes in order of appearance."""
    if len(symbols) == 0:
        return np.empty(0, np.int32), []
    # Two characters per word: half the hashing and comparing of one character per word.
    codes, first = _factorize(symbols.view(np.dtype((np.uint64, symbols.dtype.itemsize // 8))))
    names: list[str] = symbols[first].tolist()
    return codes, names


@kernel
def runs_by_span(codes: np.ndarray, span: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """(run of each row, code of each run): a run is one code's rows within one span (`span` is per
    row, non-decreasing), runs numbered span by span, within a span in order of first appearance."""
    seen_in = np.full(n_codes, -1, np.int64)  # the span a code last started a run in
    current = np.empty(n_codes, np.int64)  # that run
    run_of = np.empty(len(codes), np.int64)
    run_code = np.empty(len(codes), np.int64)
    runs = 0
    for i in range(len(codes)):
        c = codes[i]
        if seen_in[c] != span[i]:
            seen_in[c] = span[i]
            current[c] = runs
            run_code[runs] = c
            runs += 1
        run_of[i] = current[c]
    return run_of, run_code[:runs]


@dataclass(frozen=True, slots=True)
class SymbolRuns:
    """Trades cut into runs of one symbol each: run i is rows `starts[i]` to `starts[i] + lengths[i]`
    of `trades` in `order` (positions in `trades`; None: as they are), all of them symbol
    `names[codes[i]]`, runs in the order they are to be sent. Iterating gives (symbol, trades) pairs;
    the columns serve whoever handles thousands of runs at once (see `rows`)."""

    trades: np.ndarray
    names: tuple[str, ...]
    codes: np.ndarray  # int64 per run
    starts: np.ndarray  # int64 per run
    lengths: np.ndarray  # int64 per run
    order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for code, start, length in zip(self.codes.tolist(), self.starts.tolist(), self.lengths.tolist()):
            yield self.names[code], self.rows(np.arange(start, start + length)) if self.order is not None \
                else self.trades[start:start + length]

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The trades at `positions` of the runs' order, copied in one gather."""
        return self.trades[positions if self.order is None else self.order[positions]]
