"""How planned anomalies change one symbol's tape: extra prints, and sizes, prices or drift overridden."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters.synthetic.events import EventPlan
from adapters.synthetic.prices import typical_move
from adapters.synthetic.profiles import SymbolProfile, draw_sizes

NORMAL = -1
SPIKE_FLOOR = 0.015
SPIKE_K = 40.0
TYPICAL_LOOKBACK = 500  # prints that define "the symbol's current typical per-trade move"
SURGE_CAP = 2.9  # surge prints stay under 3x the symbol's p99.9 size
SURGE_SHAPE = 0.4


@dataclass(slots=True)
class SymbolTape:
    """One symbol's day in time order; `event[i]` is the plan index a print belongs to, or NORMAL."""

    ts: np.ndarray
    size: np.ndarray
    cents: np.ndarray
    side: np.ndarray
    event: np.ndarray


def extra_times(rng: np.random.Generator, plan: EventPlan) -> np.ndarray:
    """Timestamps of the prints an event adds to the tape."""
    n, t0, span = plan.n_extra, plan.t0, plan.duration_ns
    if n == 0:
        return np.empty(0, np.int64)
    if plan.kind == "trade_burst":
        rest = np.sort(rng.integers(1, span, n - 1))
        return np.concatenate(([t0], t0 + rest)).astype(np.int64)
    if plan.kind == "volume_surge":
        return np.sort(t0 + rng.integers(0, span, n)).astype(np.int64)
    if plan.kind == "ramp":  # evenly spread, so the drift is shared out over the whole window
        step = span / n
        return (t0 + (np.arange(n) + 0.5 + rng.uniform(-0.3, 0.3, n)) * step).astype(np.int64)
    return np.array([t0] * n, np.int64)


def ramp_shift(tape: SymbolTape, plans: list[EventPlan], index: list[int]) -> np.ndarray:
    """Log-price drift: each ramp print adds an equal step in one direction, and the level stays after."""
    shift = np.zeros(len(tape.ts))
    for plan, e in zip(plans, index):
        if plan.kind != "ramp":
            continue
        lo, hi = np.searchsorted(tape.ts, [plan.t0, plan.t0 + plan.duration_ns], side="left")
        k = hi - lo
        if k == 0:
            continue
        tape.event[lo:hi] = e
        shift[lo:hi] += plan.params["move"] * np.arange(1, k + 1) / k
        shift[hi:] += plan.params["move"]
        plan.params["steps"] = float(k)
    return shift


def apply_overrides(rng: np.random.Generator, tape: SymbolTape, profile: SymbolProfile,
                    plans: list[EventPlan], index: list[int]) -> None:
    """Sizes and prices of injected prints, judged against the symbol's normal prints before them."""
    normal = tape.event == NORMAL
    sizes = tape.size[normal]
    p999 = float(np.percentile(sizes, 99.9))
    mean_size = float(sizes.mean())
    for plan, e in zip(plans, index):
        mine = np.flatnonzero(tape.event == e)
        before = np.flatnonzero(normal[: mine[0]]) if len(mine) else np.empty(0, int)
        current = int(tape.cents[before[-1]])
        typical = typical_move(tape.cents[before[-TYPICAL_LOOKBACK:]])
        spike = max(SPIKE_FLOOR, SPIKE_K * typical)
        plan.params.update(p999_size=p999, typical_move=typical, spike_threshold=spike)
        if plan.kind == "block_trade":
            tape.size[mine] = int(round(rng.uniform(20, 80) * p999))
            tape.cents[mine] = current
            plan.params["size_x_p999"] = float(tape.size[mine[0]] / p999)
        elif plan.kind == "price_spike":
            tape.cents[mine] = _off(current, spike * rng.uniform(1.0, 1.25), rng, at_least=True)
            plan.params["move"] = float(np.log(tape.cents[mine[0]] / current))
        elif plan.kind == "unusual_trade":
            tape.size[mine] = max(1, int(round(rng.uniform(2.0, 4.0) * p999)))
            move = min(rng.uniform(12, 16) * typical, 0.95 * spike / 3)
            tape.cents[mine] = _off(current, move, rng, at_least=False, cap=spike / 3)
            plan.params.update(size_x_p999=float(tape.size[mine[0]] / p999),
                               move=float(np.log(tape.cents[mine[0]] / current)))
        elif plan.kind == "trade_burst":
            offsets = rng.choice([-1, 0, 1], len(mine), p=[0.15, 0.7, 0.15])
            tape.cents[mine] = np.maximum(1, current + offsets)
        elif plan.kind == "volume_surge":
            _surge(rng, tape, profile, plan, e, p999, mean_size)
        if plan.kind in ("block_trade", "price_spike", "unusual_trade", "trade_burst"):
            tape.side[mine] = rng.choice(np.array([b"A", b"B"]), len(mine))


def _off(current: int, move: float, rng: np.random.Generator, at_least: bool, cap: float = np.inf) -> int:
    """A price `move` (log) away from `current` cents, up or down, on the cent grid."""
    up = rng.random() < 0.5
    target = current * np.exp(move if up else -move)
    ticks = int(np.ceil(abs(target - current))) if at_least else max(1, int(round(abs(target - current))))
    while not at_least and ticks > 1 and abs(np.log((current + ticks) / current)) >= cap:
        ticks -= 1
    if not up and current - ticks < 1:  # a spike down cannot go through zero: go up instead
        up = True
    return current + ticks if up else current - ticks


def _surge(rng: np.random.Generator, tape: SymbolTape, profile: SymbolProfile, plan: EventPlan, e: int,
           p999: float, mean_size: float) -> None:
    """A minute whose volume is `factor` x normal, none of its prints above SURGE_CAP x p99.9.

    Sizes are multiplied with their spread compressed (size ** SURGE_SHAPE), as when an algorithm
    slices a parent order: the volume comes from many similar mid-sized prints, not a few huge ones
    that would read as blocks and would inflate the symbol's size quantiles for the rest of the day.
    """
    lo, hi = np.searchsorted(tape.ts, [plan.t0, plan.t0 + plan.duration_ns], side="left")
    window = np.arange(lo, hi)
    extra = tape.event[window] == e
    tape.event[window] = e
    base = tape.size[window].astype(float)
    base[extra] = draw_sizes(rng, profile, int(extra.sum()))
    base = base ** SURGE_SHAPE
    cap = int(SURGE_CAP * p999)
    target = plan.params["factor"] * plan.params["expected_trades"] * mean_size
    lo_c, hi_c = 0.0, 1e6
    for _ in range(60):  # bisection on the common multiplier
        c = (lo_c + hi_c) / 2
        if np.minimum(np.round(c * base), cap).sum() < target:
            lo_c = c
        else:
            hi_c = c
    tape.size[window] = np.maximum(1, np.minimum(np.round(hi_c * base), cap)).astype(np.int64)
    normal_volume = plan.params["expected_trades"] * mean_size
    plan.params.update(multiplier=hi_c, volume_factor=float(tape.size[window].sum() / normal_volume),
                       size_cap=float(cap))
