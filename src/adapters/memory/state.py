"""Per-symbol state in a dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class InMemoryStateStore:
    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def get_many(self, symbols: Sequence[str]) -> dict[str, Any]:
        return {s: self.states[s] for s in symbols if s in self.states}

    def put_many(self, states: Mapping[str, Any]) -> None:
        self.states.update(states)
