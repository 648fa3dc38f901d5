"""What every detector is: a named, pure step from (batch, state) to (state, anomalies)."""

from __future__ import annotations

from typing import Any, Protocol

from domain.batch import SymbolBatch
from domain.model import Anomaly


class Detector(Protocol):
    """Hyperparameters live in `__init__`; `detect` never mutates the state it is given."""

    name: str

    def initial_state(self) -> Any: ...

    def detect(self, batch: SymbolBatch, state: Any) -> tuple[Any, list[Anomaly]]: ...


def decay_factor(half_life_bars: float, bars: int = 1) -> float:
    """Weight left on history after `bars` bars with the given half-life."""
    return float(0.5 ** (bars / half_life_bars))


def pct(x: float) -> str:
    """Percent with enough digits to show a tick-sized move (0.0042%) as well as a jump (4.10%)."""
    return f"{x * 100:.2f}%" if abs(x) >= 1e-3 else f"{x * 100:.4f}%"


def qty(x: float) -> str:
    return f"{x:,.0f}"
