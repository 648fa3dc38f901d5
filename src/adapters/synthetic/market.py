"""The synthetic market: one regular session of many symbols with labelled anomalies, pure numpy."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from adapters.synthetic.arrivals import NS, Activity, Session, draw_times
from adapters.synthetic.events import (EVENT_TYPES, EXPECTED_DETECTOR, MIN_TRADES_FOR_EVENTS, EventPlan,
                                       draw_event_counts, plan_events)
from adapters.synthetic.injection import NORMAL, SymbolTape, apply_overrides, extra_times, ramp_shift
from adapters.synthetic.prices import log_returns, quote_prices
from adapters.synthetic.profiles import SymbolProfile, draw_sizes, make_profiles
from domain.model import empty_trades

PUBLISHER_ID = 2  # XNAS.ITCH
F_LAST = 128
MIN_TRADES_PER_SYMBOL = 20
# The whole day in time order. Prices are integer cents (the $0.01 tick); `event` is the index into
# `SyntheticMarket.events` of the labelled event a print belongs to, or -1 for a normal print.
TAPE_DTYPE = np.dtype([
    ("ts_event", "i8"), ("ts_recv", "i8"), ("ts_in_delta", "i4"), ("cents", "i8"), ("size", "u4"),
    ("side", "S1"), ("flags", "u1"), ("sequence", "u4"), ("symbol_index", "i2"), ("event", "i4"),
])


@dataclass(frozen=True, slots=True)
class InjectedEvent:
    id: str
    type: str
    symbol: str
    ts_start: int  # first injected print's ts_event
    ts_end: int  # last injected print's ts_event (== ts_start for a single print)
    n_trades: int
    expected_detector: str
    details: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "symbol": self.symbol, "ts_start": self.ts_start,
                "ts_end": self.ts_end, "n_trades": self.n_trades, "expected_detector": self.expected_detector,
                "details": dict(self.details)}


@dataclass(frozen=True)
class SyntheticMarket:
    seed: int
    session: Session
    profiles: tuple[SymbolProfile, ...]
    tape: np.ndarray  # TAPE_DTYPE, sorted by ts_event
    events: tuple[InjectedEvent, ...]

    @property
    def symbols(self) -> list[str]:
        return [p.symbol for p in self.profiles]

    @property
    def instrument_ids(self) -> np.ndarray:
        return np.array([p.instrument_id for p in self.profiles], np.uint32)

    @cached_property
    def trades(self) -> np.ndarray:
        """The tape as the domain's TRADE_DTYPE batch (prices in dollars, symbol strings), built once."""
        out = empty_trades(len(self.tape))
        for name in ("ts_event", "ts_recv", "size", "side", "flags", "sequence"):
            out[name] = self.tape[name]
        out["price"] = self.tape["cents"] / 100.0
        out["publisher_id"] = PUBLISHER_ID
        out["instrument_id"] = self.instrument_ids[self.tape["symbol_index"]]
        out["symbol"] = np.array(self.symbols)[self.tape["symbol_index"]]
        return out

    def labels(self) -> dict[str, Any]:
        return {
            "format": 1,
            "seed": self.seed,
            "date": self.session.day.isoformat(),
            "dataset": "XNAS.ITCH",
            "symbols": self.symbols,
            "total_trades": int(len(self.tape)),
            "anomalous_trades": int(sum(e.n_trades for e in self.events)),
            "events": [e.to_dict() for e in self.events],
        }


def simulate(symbols: int = 20, trades: int = 1_000_000, seed: int = 7, date: str = "2025-03-03",
             events_per_type: int | None = None) -> SyntheticMarket:
    """Exactly `trades` prints (normal ones, two auction crosses per symbol, and the injected events)."""
    rng = np.random.default_rng(seed)
    session = Session.on(date)
    profiles = make_profiles(rng, symbols)
    weights = np.array([p.weight for p in profiles])
    seconds = session.seconds - 1  # normal trading starts one second after the opening cross
    activity = Activity.draw(rng, symbols, seconds)
    budget = trades - 2 * symbols
    counts = draw_event_counts(rng, trades) if events_per_type is None else dict.fromkeys(EVENT_TYPES, events_per_type)
    if budget * weights.min() < MIN_TRADES_PER_SYMBOL:
        raise ValueError(f"{trades:,} trades are too few for {symbols:,} symbols: the quietest would get under "
                         f"{MIN_TRADES_PER_SYMBOL} prints; ask for at least {_enough(symbols, weights):,} trades")
    if budget * weights.max() < MIN_TRADES_FOR_EVENTS:
        raise ValueError(f"{trades:,} trades are too few for an injected anomaly: the busiest of {symbols:,} "
                         f"symbols would get {int(budget * weights.max()):,} prints and an anomaly needs "
                         f"{MIN_TRADES_FOR_EVENTS:,} of history; ask for at least {_enough(symbols, weights):,} trades")
    plans = plan_events(rng, session, weights, activity, counts, budget * weights)
    normal = _split(budget - sum(p.n_extra for p in plans), weights)
    parts = []
    for s, profile in enumerate(profiles):
        mine = [i for i, p in enumerate(plans) if p.symbol_index == s]
        day = _symbol_day(rng, session, profile, activity.per_second(s), int(normal[s]), [plans[i] for i in mine],
                          mine)
        parts.append(_with_auctions(rng, session, profile, day, s))
    tape = _finish(rng, np.concatenate(parts))
    return SyntheticMarket(seed, session, tuple(profiles), *_label(tape, plans, profiles))


def _enough(symbols: int, weights: np.ndarray) -> int:
    """The fewest trades that pass both checks above: each refusal asks for them, or the count one
    asked for could be refused by the other (100 symbols: 11,200 asked for, then 22,360)."""
    quietest = int(np.ceil(MIN_TRADES_PER_SYMBOL / weights.min() / 1000) * 1000)
    busiest = int(np.ceil(MIN_TRADES_FOR_EVENTS / weights.max()))
    return max(quietest, busiest) + 2 * symbols


def _split(n: int, weights: np.ndarray) -> np.ndarray:
    """Largest-remainder split of n trades by weight: deterministic and exact."""
    raw = n * weights
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(out - raw)[: n - out.sum()]] += 1
    return out


def _symbol_day(rng: np.random.Generator, session: Session, profile: SymbolProfile, per_second: np.ndarray,
                n_normal: int, plans: list[EventPlan], index: list[int]) -> SymbolTape:
    start = session.open_ns + NS
    parts = [draw_times(rng, per_second, n_normal, start, session.close_ns)]
    owners = [np.full(n_normal, NORMAL, np.int32)]
    for plan, e in zip(plans, index):
        parts.append(extra_times(rng, plan))
        owners.append(np.full(plan.n_extra, e, np.int32))
    ts = np.concatenate(parts)
    order = np.argsort(ts, kind="stable")
    ts, event = ts[order], np.concatenate(owners)[order]
    n = len(ts)
    side = rng.choice(np.array([b"A", b"B", b"N"]), n, p=[0.4, 0.4, 0.2])
    is_normal = event == NORMAL
    returns = np.zeros(n)  # injected prints leave the price path where it was
    minute = (ts[is_normal] - start) // (60 * NS)
    sigma = profile.daily_vol / np.sqrt(n_normal)
    returns[is_normal] = log_returns(rng, minute, session.seconds // 60 + 1, sigma)
    tape = SymbolTape(ts, draw_sizes(rng, profile, n), np.zeros(n, np.int64), side, event)
    log_mid = np.log(profile.price0) + np.cumsum(returns) + ramp_shift(tape, plans, index)
    tape.cents = quote_prices(log_mid, side, profile.spread_ticks)
    apply_overrides(rng, tape, profile, plans, index)
    return tape


def _with_auctions(rng: np.random.Generator, session: Session, profile: SymbolProfile, tape: SymbolTape,
                   s: int) -> np.ndarray:
    """The day's prints plus the opening (09:30:00.xxx) and closing (16:00:00.0xx) crosses, side N."""
    out = np.zeros(len(tape.ts) + 2, TAPE_DTYPE)
    cross_sizes = np.round(profile.size_median * np.exp(rng.uniform(np.log(50), np.log(500), 2)) / 100) * 100
    open_ts = session.open_ns + int(rng.integers(1, 1000)) * 1_000_000
    close_ts = session.close_ns + int(rng.integers(1, 100)) * 1_000_000
    out["ts_event"] = np.concatenate(([open_ts], tape.ts, [close_ts]))
    out["cents"] = np.concatenate(([round(profile.price0 * 100)], tape.cents, [tape.cents[-1]]))
    out["size"] = np.concatenate(([max(100, cross_sizes[0])], tape.size, [max(100, cross_sizes[1])]))
    out["side"] = np.concatenate(([b"N"], tape.side, [b"N"]))
    out["event"] = np.concatenate(([NORMAL], tape.event, [NORMAL]))
    out["symbol_index"] = s
    return out


def _finish(rng: np.random.Generator, tape: np.ndarray) -> np.ndarray:
    """Feed order across symbols, ITCH-like sequence numbers, receive times and F_LAST."""
    tape = tape[np.argsort(tape["ts_event"], kind="stable")]
    n = len(tape)
    # ITCH numbers every message of the day; trades are a thin slice of them, hence the gaps.
    tape["sequence"] = int(rng.integers(2_000_000, 30_000_000)) + np.cumsum(rng.geometric(1 / 40, n))
    latency = (150_000 + rng.lognormal(np.log(20_000), 0.6, n)).astype(np.int64)
    tape["ts_recv"] = np.maximum.accumulate(tape["ts_event"] + latency)
    tape["ts_in_delta"] = tape["ts_recv"] - tape["ts_event"]
    ts = tape["ts_event"]
    tape["flags"] = np.where(np.append(ts[1:] != ts[:-1], True), F_LAST, 0)
    return tape


def _label(tape: np.ndarray, plans: list[EventPlan],
           profiles: list[SymbolProfile]) -> tuple[np.ndarray, tuple[InjectedEvent, ...]]:
    """Events described from the prints they own, numbered in time order; the tape re-pointed to them."""
    rows = np.flatnonzero(tape["event"] != NORMAL)
    owner = tape["event"][rows]
    events = []
    for e, plan in enumerate(plans):
        ts = tape["ts_event"][rows[owner == e]]
        if len(ts) == 0:
            raise AssertionError(f"event {plan.kind} at {plan.t0} ended with no trades")
        details = {k: round(float(v), 6) for k, v in plan.params.items()}
        events.append((int(ts[0]), plan.symbol_index, e, int(ts[-1]), len(ts), plan.kind, details))
    events.sort()
    renumber = np.empty(len(plans), np.int32)
    out = []
    for new, (start, s, old, end, n, kind, details) in enumerate(events):
        renumber[old] = new
        out.append(InjectedEvent(f"ev{new + 1:06d}", kind, profiles[s].symbol, start, end, n,
                                 EXPECTED_DETECTOR[kind], details))
    tape["event"][rows] = renumber[owner]
    return tape, tuple(out)
