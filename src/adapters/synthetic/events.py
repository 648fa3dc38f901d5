"""Which anomalies go where: the deterministic plan of labelled events, made before any trade exists."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from adapters.synthetic.arrivals import NS, Activity, Session

# The injected type and the detector expected to catch it.
EXPECTED_DETECTOR = {
    "block_trade": "high_volume",
    "price_spike": "price_change",
    "trade_burst": "trade_burst",
    "volume_surge": "volume_surge",
    "ramp": "vwap_deviation",
    "unusual_trade": "isolation_forest",
}
EVENT_TYPES = tuple(EXPECTED_DETECTOR)
EVENTS_PER_MILLION = (20, 40)
QUIET_START_NS = 30 * 60 * NS  # no event in the first 30 minutes: detectors are still learning
AUCTION_CLEARANCE_NS = 2 * 60 * NS
PREFERRED_GAP_NS = 15 * 60 * NS  # between two events of one symbol, so one never colours the next
SURGE_NS = 60 * NS
SURGE_MIN_PRINTS = 10
RAMP_STEP = 0.001  # largest intended drift per ramp print (0.1%): far under a quarter of any spike
BURST_RATE_MULTIPLE = 60.0  # burst arrival rate over the symbol's normal rate at that moment
MIN_TRADES_FOR_EVENTS = 1_000  # a symbol with fewer prints a day gets no injected anomaly


@dataclass(slots=True)
class EventPlan:
    kind: str
    symbol_index: int
    t0: int  # first injected trade (or window start for surges and ramps), UTC ns
    duration_ns: int = 0
    n_extra: int = 0  # trades added to the tape; surges and ramps also take over the normal trades in their window
    params: dict[str, float] = field(default_factory=dict)


def draw_event_counts(rng: np.random.Generator, trades: int) -> dict[str, int]:
    lo, hi = EVENTS_PER_MILLION
    return {kind: max(1, int(round(rng.uniform(lo, hi) * trades / 1e6))) for kind in EVENT_TYPES}


def plan_events(rng: np.random.Generator, session: Session, weights: np.ndarray, activity: Activity,
                counts: dict[str, int], day_trades: np.ndarray) -> list[EventPlan]:
    """Place events per symbol, well apart, away from the open, the close and the auctions.

    `activity` gives each symbol's share of its day's prints per second of the session (from its open
    + 1 s) and `day_trades[s]` its expected prints for the day: only symbols with MIN_TRADES_FOR_EVENTS get events,
    since an anomaly needs a history to stand out from.
    """
    eligible = day_trades >= MIN_TRADES_FOR_EVENTS
    if not eligible.any():
        raise ValueError(f"no symbol gets {MIN_TRADES_FOR_EVENTS} trades, so no anomaly can be placed; "
                         "ask for more trades or fewer symbols")
    pick = np.where(eligible, np.sqrt(weights), 0.0)
    pick /= pick.sum()  # busier names get somewhat more events
    kinds = [k for k, n in counts.items() for _ in range(n)]
    owners = rng.choice(len(weights), len(kinds), p=pick)
    plans: list[EventPlan] = []
    for s in range(len(weights)):
        mine = [kinds[i] for i in np.flatnonzero(owners == s)]
        rng.shuffle(mine)
        durations = [_duration(rng, k) for k in mine]
        for kind, t0, dur in zip(mine, _place(rng, session, durations), durations):
            plans.append(_shape(rng, EventPlan(kind, s, t0, dur), activity, s, float(day_trades[s]), session))
    return sorted(plans, key=lambda p: (p.t0, p.symbol_index))


def _duration(rng: np.random.Generator, kind: str) -> int:
    if kind == "volume_surge":
        return SURGE_NS
    if kind == "ramp":
        return int(rng.uniform(30, 90) * NS)
    if kind == "trade_burst":
        return NS  # an upper bound; the real span depends on the symbol's rate
    return 0


def _place(rng: np.random.Generator, session: Session, durations: list[int]) -> list[int]:
    """Random starts in order, each event ending at least `gap` before the next one starts."""
    if not durations:
        return []
    lo = session.open_ns + QUIET_START_NS
    hi = session.close_ns - AUCTION_CLEARANCE_NS
    k = len(durations)
    room = hi - lo - sum(durations)
    gap = min(PREFERRED_GAP_NS, room // (k + 1))
    if gap <= 0:
        raise ValueError(f"{k} events do not fit in one symbol's session; ask for fewer")
    slack = room - (k - 1) * gap
    offsets = np.sort(rng.integers(0, slack, k))
    starts, used = [], 0
    for off, dur in zip(offsets.tolist(), durations):
        starts.append(lo + off + used)
        used += dur + gap
    return starts


def _shape(rng: np.random.Generator, plan: EventPlan, activity: Activity, symbol: int, day_trades: float,
           session: Session) -> EventPlan:
    """Size the event against the symbol's expected activity at that moment."""
    sec = min(len(activity.curve) - 1, max(0, (plan.t0 - session.open_ns) // NS - 1))
    per_s = activity.at(symbol, int(sec)) * day_trades
    if plan.kind in ("block_trade", "price_spike", "unusual_trade"):
        plan.n_extra = 1
    elif plan.kind == "trade_burst":
        plan.n_extra = int(rng.integers(200, 401))
        span = plan.n_extra / (BURST_RATE_MULTIPLE * max(per_s, 1e-3))
        plan.duration_ns = int(np.clip(span, 0.02, 1.0) * NS)
        plan.params["normal_rate_per_s"] = per_s
    elif plan.kind == "volume_surge":
        expected = per_s * plan.duration_ns / NS
        # At most ~2x the normal count on a busy name; on a quiet one at least SURGE_MIN_PRINTS in all,
        # since a surge is an order worked through many child prints, not one or two big ones.
        plan.n_extra = max(int(round(rng.uniform(0.5, 0.8) * expected)) + 1,
                           SURGE_MIN_PRINTS - int(round(expected)))
        plan.params.update(factor=float(rng.uniform(15, 30)), expected_trades=expected)
    elif plan.kind == "ramp":
        move = float(rng.uniform(0.04, 0.08))
        expected = per_s * plan.duration_ns / NS
        need = int(np.ceil(move / RAMP_STEP))
        plan.n_extra = max(0, need - int(0.7 * expected))
        plan.params.update(move=move * float(rng.choice([-1.0, 1.0])))
    return plan
