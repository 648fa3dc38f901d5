"""The detection step: validate, code symbols, guard, and run every detector over the whole batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np

from domain.context import BatchTape, before, last_trades, remember, tape_state
from domain.detectors.base import AnyDetector, Detector, PooledDetector
from domain.errors import ConfigError, unknown_detectors
from domain.guard import ACCEPTED, VERDICTS, SequenceGuard, explain, initial_guard_state
from domain.market import MarketBatch
from domain.model import TRADE_DTYPE, Anomaly, DeadLetter
from domain.sessions import SessionCalendar
from domain.state import StateSchema, copy_rows
from domain.symbols import factorize
from domain.validation import dead_letter_for, dead_letters_for, invalid_rows


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Valid trades with their symbol codes: what the state to load depends on."""

    trades: np.ndarray
    codes: np.ndarray
    symbols: tuple[str, ...]
    pools: tuple[int, ...]
    pool_of_symbol: np.ndarray  # per symbol code: row in `pools`
    dead_letters: list[DeadLetter]
    positions: np.ndarray | None = None  # per valid trade: its row in the batch given; None: the same

    @property
    def pool_keys(self) -> list[str]:
        return [str(p) for p in self.pools]


@dataclass(slots=True)
class DetectionResult:
    states: np.ndarray  # one row per PreparedBatch.symbols
    pool_states: np.ndarray  # one row per PreparedBatch.pools
    anomalies: list[Anomaly] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    accepted: int = 0
    # Per PreparedBatch.symbols, the event time of its last accepted trade (-1: none): each symbol's
    # clock, how far its own tape has got (what incident grouping closes incidents by).
    last_seen: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # One tape_state row per PreparedBatch.symbols (their last trades, domain.context), and the batch's
    # accepted trades by symbol, where the trades after its anomalies are read from.
    tapes: np.ndarray | None = None
    tape: BatchTape = field(default_factory=BatchTape)


class DetectionEngine:
    """Pure: the same batch and states always give the same states, anomalies and dead letters.

    Per-symbol state is one fixed-size record (`schema`) holding the guard's and every detector's
    part; pooled detectors also keep one record per model pool (`pool_schema`). `pool_of` names the
    pool of a symbol (by default one pool for all); streaming workers pool by Kafka partition.
    """

    def __init__(self, detectors: Sequence[AnyDetector], guard: SequenceGuard | None = None,
                 calendar: SessionCalendar | None = None, pool_of: Callable[[str], int] | None = None,
                 enabled: Sequence[str] | None = None) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        self.detectors = list(detectors)
        if enabled is not None:
            unknown = sorted(set(enabled) - set(names))
            if unknown:
                raise ConfigError(unknown_detectors(unknown, names))
            if not enabled:
                raise ConfigError(f"no detector selected; choose from {', '.join(names)}")
        self.enabled = [d for d in self.detectors if enabled is None or d.name in enabled]
        # Checked once: a runtime Protocol check walks the protocol's members (about 1% of a
        # streaming worker's time if done per detector and batch).
        self._pooled = [isinstance(d, PooledDetector) for d in self.enabled]
        self.guard = guard or SequenceGuard()
        self.calendar = calendar or SessionCalendar()
        self.pool_of = pool_of or (lambda symbol: 0)
        self._pools: dict[str, int] = {}
        # Every known detector has its part in the layout, enabled or not, so turning one off and on
        # again keeps the stored state readable.
        self.schema = StateSchema.of("symbol", [("guard", initial_guard_state())]
                                     + [(d.name, d.initial_state()) for d in self.detectors])
        # Each symbol's last trades (the context of its next anomaly), kept apart from the detectors'
        # state: they are what an analyst reads, not what any detector decides by.
        self.tape_schema = StateSchema.of("tape", [("tape", tape_state())])
        self.pool_schema = StateSchema.of("pool", [(d.name, d.initial_pool_state()) for d in self.detectors
                                                   if isinstance(d, PooledDetector)])

    @property
    def report_lateness_ns(self) -> int:
        """The longest an anomaly can be reported after the print it is anchored at (a rate episode
        is reported once its peak is known): what incident grouping waits for."""
        return max((int(getattr(d, "settle_ns", 0)) for d in self.enabled), default=0)

    def prepare(self, trades: np.ndarray) -> PreparedBatch:
        bad, reasons = invalid_rows(trades)
        dead = [dead_letter_for(trades[i], reason, row=i) for i, reason in zip(bad.tolist(), reasons)]
        valid = np.delete(trades, bad) if len(bad) else trades
        codes, symbols = factorize(valid["symbol"])
        known = list(map(self._pools.get, symbols))  # symbols seen before: looked up in C
        pool_ids = [self._pool(s) for s in symbols] if None in known else cast(list[int], known)
        pools = tuple(sorted(set(pool_ids)))
        return PreparedBatch(valid, codes, tuple(symbols), pools,
                             np.searchsorted(np.array(pools), np.array(pool_ids)).astype(np.int32), dead,
                             np.delete(np.arange(len(trades)), bad) if len(bad) else None)

    def detect(self, batch: PreparedBatch, states: np.ndarray, pool_states: np.ndarray,
               tapes: np.ndarray | None = None, owned: bool = False) -> DetectionResult:
        """`states`: one schema row per batch.symbols; `pool_states`: one pool_schema row per batch.pools;
        `tapes`: one tape_schema row per batch.symbols (None: anomalies get no context). None is
        modified, unless `owned` (the caller hands the rows over: they are updated in place, saving a
        copy of every symbol's state per batch); the result holds the new rows."""
        keep = (lambda rows: rows) if owned else copy_rows
        rows, pool_rows = keep(states), keep(pool_states)
        tape_rows = None if tapes is None else keep(tapes)
        result = DetectionResult(rows, pool_rows, dead_letters=list(batch.dead_letters), tapes=tape_rows)
        if len(batch.trades) == 0:
            return result
        # Symbol by symbol (each in arrival order): a symbol's state then stays in cache while its trades
        # are judged, which is what keeps the cost per trade flat from one symbol to thousands.
        # Per-symbol results are the same in any interleaving; pooled detectors walk `arrival`.
        market = MarketBatch.of(batch.trades, batch.symbols, batch.codes, np.zeros(len(batch.codes), bool),
                                batch.pools, batch.pool_of_symbol[batch.codes], group=len(batch.symbols) > 1)
        codes = market.slot
        verdict, passed = self.guard.check(codes, market.ts, market.publisher, market.instrument,
                                           market.sequence, rows["guard"])
        refused = np.flatnonzero(verdict != ACCEPTED)
        if len(refused):
            refused = refused[np.argsort(market.index[refused])]  # dead letters in arrival order
            given = market.index[refused] if batch.positions is None else batch.positions[market.index[refused]]
            codes_refused = verdict[refused].tolist()
            why = [explain(v, t, p) for v, t, p in zip(codes_refused, market.ts[refused].tolist(),
                                                        passed[refused].tolist())]
            result.dead_letters += dead_letters_for(market.rows[market.index[refused]],
                                                    [VERDICTS[v] for v in codes_refused], given.tolist(), why=why)
        if len(refused):
            market = market.select(verdict == ACCEPTED)
        result.accepted = len(market)
        result.last_seen = np.full(len(batch.symbols), -1, np.int64)
        if not len(market):
            return result
        starts = np.flatnonzero(np.r_[True, market.slot[1:] != market.slot[:-1]])  # grouped: one run per symbol
        result.last_seen[market.slot[starts]] = np.maximum.reduceat(market.ts, starts)
        market = market.with_auctions(self.calendar.auction_mask(market.ts, market.side))
        for det, pooled in zip(self.enabled, self._pooled):
            if pooled:
                result.anomalies += cast(PooledDetector, det).update_pooled(market, rows[det.name],
                                                                             pool_rows[det.name])
            else:
                result.anomalies += cast(Detector, det).update(market, rows[det.name])
        if tape_rows is not None:
            tape = tape_rows["tape"]
            # A rate episode is found at the print that completed its measure, not at its own.
            result.anomalies = [a if a.found < 0 else
                                replace(a, context=before(market, starts, a.found, tape[market.slot[a.found]],
                                                          through=int(market.ts[a.found]) != a.ts_event
                                                          or int(market.sequence[a.found]) != a.sequence))
                                for a in result.anomalies]
            remember(market, tape)
            result.tape = BatchTape(market, starts)
        result.anomalies = self._stamped_and_sorted(result.anomalies)
        return result

    def unfinished(self, symbols: Sequence[str], states: np.ndarray,
                   tapes: np.ndarray | None = None) -> list[Anomaly]:
        """What detectors still measure when the input ends (a rate episode within its measure),
        reported with what is known: an embedded run's end, never a stream's. `states` (one row per
        symbol) are updated in place so that nothing is reported twice; each anomaly's context is
        its symbol's last trades (`tapes`: tape_schema rows)."""
        found: list[Anomaly] = []
        last_ts = states["guard"]["last_ts"]
        for det in self.enabled:
            unfinished = getattr(det, "unfinished", None)
            if unfinished is not None:
                found += unfinished(symbols, states[det.name], last_ts)
        if tapes is not None:
            slot = {symbol: k for k, symbol in enumerate(symbols)}
            found = [replace(a, context=last_trades(tapes["tape"][slot[a.symbol]])) for a in found]
        return self._stamped_and_sorted(found)

    def _stamped_and_sorted(self, anomalies: Iterable[Anomaly]) -> list[Anomaly]:
        """The anomalies with their session and exchange-local time, in (time, symbol, detector) order."""
        return sorted((replace(a, session=self.calendar.session_of(a.ts_event),
                               ts_local=self.calendar.local_time(a.ts_event)) for a in anomalies),
                      key=lambda a: (a.ts_event, a.symbol, a.detector))

    def warm_up(self) -> None:
        """Run every detector on short made-up tapes (fresh state, results discarded), so compiled
        kernels are loaded from numba's cache (or compiled, on the very first run) and every path
        (sampling, sealing, a model fit) has run once before real trades wait on it: a worker's first
        batch and a replay's clock then see only steady-state cost. Kernels are specialised on array
        layout, and numpy calls an array of one element contiguous whatever its stride, so one
        symbol (or pool) and several, one trade and several, are each a shape of their own: a worker
        meets them all (a take with one trade for a partition), and a shape left out here would be
        compiled in the middle of its first batch (2-9 s of a fresh container's stream)."""
        names = [f"WARM{k}" for k in range(64)]
        same = next((n for n in names[1:] if self._pool(n) == self._pool(names[0])), names[1])
        other = next((n for n in names[1:] if self._pool(n) != self._pool(names[0])), names[1])
        for symbols in ([names[0]], [names[0], same], [names[0], other]):
            tape = _warm_up_tape(symbols)
            # The whole tape, then one print of each symbol, then a single print.
            for trades in (tape, tape[:len(symbols)].copy(), tape[:1].copy()):
                batch = self.prepare(trades)
                self.detect(batch, self.schema.initial(len(batch.symbols)),
                            self.pool_schema.initial(len(batch.pools)), self.tape_schema.initial(len(batch.symbols)))
        for name in names:
            self._pools.pop(name, None)

    def _pool(self, symbol: str) -> int:
        pool = self._pools.get(symbol)
        if pool is None:
            pool = self._pools[symbol] = int(self.pool_of(symbol))
        return pool


def _warm_up_tape(symbols: list[str]) -> np.ndarray:
    """Prints every second for 80 minutes (past the first model epoch) over `symbols`, with a large
    print that also moves the price near the end, so the Isolation Forest fits and scores once."""
    rng = np.random.default_rng(0)
    n = 4_800
    trades = np.zeros(n, TRADE_DTYPE)
    trades["ts_event"] = trades["ts_recv"] = 1_741_100_400_000_000_000 + np.arange(n) * 1_000_000_000
    trades["symbol"] = np.array(symbols)[np.arange(n) % len(symbols)]
    trades["price"] = np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n))), 2)
    trades["size"] = np.maximum(1, rng.lognormal(4.0, 1.0, n)).astype(np.int64)
    trades["side"], trades["sequence"] = b"B", np.arange(n)
    last = n - len(symbols)
    trades["size"][last], trades["price"][last] = 50_000, trades["price"][last - len(symbols)] * 1.01
    return trades
