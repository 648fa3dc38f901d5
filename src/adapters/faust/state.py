"""Per-symbol detector state in a Faust table (RocksDB-backed, with a changelog topic)."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any


class FaustTableStateStore:
    """StateStore over a Faust table whose values are pickled `SymbolState`s.

    Every put assigns the key again (`table[k] = v`): a value changed in place would never
    reach the changelog, and a restarted or rebalanced worker would resume from stale state.
    """

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def get_many(self, symbols: Sequence[str]) -> dict[str, Any]:
        found = {}
        for symbol in symbols:
            raw = self.table.get(symbol)
            if raw is not None:
                found[symbol] = pickle.loads(raw)
        return found

    def put_many(self, states: Mapping[str, Any]) -> None:
        for symbol, state in states.items():
            self.table[symbol] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
