"""Where trades print: Student-t returns under GARCH(1,1) volatility, quoted on a one-cent grid."""

from __future__ import annotations

import numpy as np

T_DOF = 4.0
# Innovations beyond this many standard deviations are clipped: a natural jump that large would be an
# unlabelled anomaly, and the labels must be the only anomalies on the tape.
Z_CLIP = 7.0
GARCH_ALPHA, GARCH_BETA = 0.08, 0.90


def student_t(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance Student-t draws, clipped at Z_CLIP."""
    z = rng.standard_t(T_DOF, n) / np.sqrt(T_DOF / (T_DOF - 2.0))
    return np.clip(z, -Z_CLIP, Z_CLIP)


def garch_variance(minute_shock: np.ndarray) -> np.ndarray:
    """Per-minute variance multiplier (mean 1) from GARCH(1,1) fed by each minute's standardised return.

    `minute_shock[m]` is the sum of the minute's unit innovations over sqrt(count); the realised minute
    return is sqrt(h[m]) times it, and a large one raises the next minutes' volatility.
    """
    omega = 1.0 - GARCH_ALPHA - GARCH_BETA
    h = np.empty(len(minute_shock))
    level = 1.0
    for m, shock in enumerate(minute_shock.tolist()):  # 390 steps: cheap
        h[m] = level
        level = min(8.0, max(0.15, omega + GARCH_ALPHA * level * shock * shock + GARCH_BETA * level))
    return h


def log_returns(rng: np.random.Generator, minute: np.ndarray, n_minutes: int, sigma: float) -> np.ndarray:
    """Per-trade log returns: heavy-tailed innovations scaled by the GARCH volatility of their minute."""
    z = student_t(rng, len(minute))
    counts = np.bincount(minute, minlength=n_minutes)
    sums = np.bincount(minute, weights=z, minlength=n_minutes)
    shock = np.divide(sums, np.sqrt(counts), out=np.zeros(n_minutes), where=counts > 0)
    h = garch_variance(shock)
    return sigma * np.sqrt(h[minute]) * z


def quote_prices(log_mid: np.ndarray, side: np.ndarray, spread_ticks: int) -> np.ndarray:
    """Integer-cent prints: a buyer-initiated trade (side B) lifts the ask, a seller (A) hits the bid,
    an unattributed one (N) prints at the nearest cent to the mid."""
    mid = np.exp(log_mid) * 100.0
    bid = np.round(mid - spread_ticks / 2.0)
    ask = bid + spread_ticks
    cents = np.where(side == b"B", ask, np.where(side == b"A", bid, np.round(mid)))
    return np.maximum(1, cents).astype(np.int64)


def typical_move(cents: np.ndarray) -> float:
    """Mean absolute tick-to-tick log move of a run of prints (0 for fewer than two)."""
    if len(cents) < 2:
        return 0.0
    return float(np.mean(np.abs(np.diff(np.log(cents)))))
