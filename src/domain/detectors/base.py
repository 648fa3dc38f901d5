"""What every detector is: a named step from (batch, state rows) to (new state rows, anomalies).

Detectors implement `update`, which changes the rows it is given in place (the engine hands it its
part of the batch's state records, so no copy is made per detector); `detect` is the pure form of
the same step, for callers that keep the rows they pass."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from domain.market import MarketBatch
from domain.model import Anomaly
from domain.state import copy_rows


class Detector(Protocol):
    """Hyperparameters live in `__init__`.

    `initial_state()` is one record (a shape-(1,) structured array) of fixed size: the state of a
    symbol never seen. `update` takes one such row per symbol of the batch (`batch.symbols`, in that
    order; any strides), brings them past the batch's trades and returns what it found; `detect` does
    the same on a copy and returns the updated rows too.
    """

    name: str

    def initial_state(self) -> np.ndarray: ...

    def update(self, batch: MarketBatch, state: np.ndarray) -> list[Anomaly]: ...

    def detect(self, batch: MarketBatch, state: np.ndarray) -> tuple[np.ndarray, list[Anomaly]]: ...


@runtime_checkable
class PooledDetector(Protocol):
    """A detector that also learns from many symbols at once: one state record per model pool."""

    name: str

    def initial_state(self) -> np.ndarray: ...

    def initial_pool_state(self) -> np.ndarray: ...

    def update_pooled(self, batch: MarketBatch, state: np.ndarray, pool_state: np.ndarray) -> list[Anomaly]: ...

    def detect_pooled(self, batch: MarketBatch, state: np.ndarray,
                      pool_state: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Anomaly]]: ...


AnyDetector = Detector | PooledDetector


class InPlace:
    """`detect` for a detector that implements `update`."""

    def update(self, batch: MarketBatch, state: np.ndarray) -> list[Anomaly]:
        raise NotImplementedError

    def detect(self, batch: MarketBatch, state: np.ndarray) -> tuple[np.ndarray, list[Anomaly]]:
        st = copy_rows(state)
        return st, self.update(batch, st)


class PooledInPlace:
    """`detect_pooled` for a detector that implements `update_pooled`."""

    def update_pooled(self, batch: MarketBatch, state: np.ndarray, pool_state: np.ndarray) -> list[Anomaly]:
        raise NotImplementedError

    def detect_pooled(self, batch: MarketBatch, state: np.ndarray,
                      pool_state: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Anomaly]]:
        st, ps = copy_rows(state), copy_rows(pool_state)
        return st, ps, self.update_pooled(batch, st, ps)


def record(dtype: np.dtype, **values: float) -> np.ndarray:
    """A shape-(1,) record of `dtype`, zero except for `values`."""
    row = np.zeros(1, dtype)
    for name, value in values.items():
        row[name] = value
    return row


def pct(x: float) -> str:
    """Percent with enough digits to show a tick-sized move (0.0042%) as well as a jump (4.10%)."""
    return f"{x * 100:.2f}%" if abs(x) >= 1e-3 else f"{x * 100:.4f}%"


def change(log_move: float) -> str:
    """A move measured in log price as the signed percent change an analyst reads: a doubling is
    +100.00%, a halving -50.00% (the log moves are +69.31% and -69.31%)."""
    simple = float(np.expm1(log_move))
    return f"{'+' if simple > 0 else '-'}{pct(abs(simple))}"


def change_bound(log_bound: float, log_move: float) -> str:
    """A bound on |log move| as the percent change it allows in the direction of `log_move`."""
    return pct(abs(float(np.expm1(log_bound if log_move > 0 else -log_bound))))


def price_text(x: float) -> str:
    """A price as quoted: cents (with thousands separators) from a dollar up, four decimals below."""
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.4f}"


def qty(x: float) -> str:
    return f"{x:,.0f}"


def level(x: float) -> str:
    """A norm or level per window, precise enough that the multiple quoted beside it can be checked by
    hand: one decimal from 10 up, three significant digits below (0.311, not 0.3: 102 trades are then
    328x it, not 340x)."""
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def odds(p: float) -> str:
    """A small probability an analyst can read: 'top 0.02%', and under 0.01% as one in so many, to
    two figures ('1 in 37,000', '1 in 11,000,000'), where a percent would need an exponent."""
    share = p * 100
    if share >= 0.01:
        return f"top {share:.2g}%"
    if p < 1e-12:  # exp(-nats) can underflow to 0
        return "1 in over 1,000,000,000,000"
    return f"1 in {float(f'{1 / p:.2g}'):,.0f}"
