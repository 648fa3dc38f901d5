"""Test builders: single trades and calm synthetic flows for one symbol."""

from __future__ import annotations

import asyncio

import numpy as np

from adapters.elasticsearch.bulk import FailedAnomaly, SinkCounters
from domain.detectors.base import PooledDetector
from domain.market import MarketBatch
from domain.model import TRADE_DTYPE, Anomaly, Trade, trades_to_batch
from domain.symbols import factorize

# 2025-03-04 15:00:00 UTC = 10:00 New York: inside the regular session, away from the crosses.
T0 = 1_741_100_400_000_000_000
S = 1_000_000_000


def make_trade(symbol: str = "ACME", ts_event: int = T0, price: float = 100.0, size: int = 100,
               sequence: int = 1, side: str = "B", **kw: object) -> Trade:
    return Trade(symbol=symbol, ts_event=ts_event, price=price, size=size, sequence=sequence, side=side,
                 publisher_id=2, instrument_id=kw.pop("instrument_id", 7), **kw)  # type: ignore[arg-type]


def batch_of(*trades: Trade) -> np.ndarray:
    return trades_to_batch(list(trades))


def calm_flow(n: int = 20_000, symbol: str = "ACME", start: int = T0, rate: float = 5.0, price: float = 100.0,
              tick_sigma: float = 2e-4, seed: int = 1, first_sequence: int = 1) -> np.ndarray:
    """A quiet market: Poisson arrivals, small random-walk moves on a 1-cent grid, log-normal sizes."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, TRADE_DTYPE)
    gaps = rng.exponential(1 / rate, n) * S
    out["ts_event"] = start + np.cumsum(gaps).astype(np.int64)
    out["ts_recv"] = out["ts_event"] + 20_000
    walk = np.exp(np.cumsum(rng.normal(0, tick_sigma, n)))
    out["price"] = np.round(price * walk, 2)
    out["size"] = np.maximum(1, np.round(rng.lognormal(4.0, 1.0, n))).astype(np.int64)
    out["publisher_id"] = 2
    out["instrument_id"] = 7
    out["sequence"] = np.arange(first_sequence, first_sequence + n)
    out["side"] = rng.choice(np.array([b"A", b"B"]), n)
    out["symbol"] = symbol
    return out


def market_batch(trades: np.ndarray, auction: np.ndarray | None = None) -> MarketBatch:
    """A batch of one or many symbols, in the order given (one pool)."""
    codes, symbols = factorize(trades["symbol"])
    return MarketBatch.of(trades, tuple(symbols), codes, np.zeros(len(trades), bool) if auction is None else auction)


class DetectorRun:
    """Feeds trades to one detector batch by batch, keeping its state per symbol (and its pool state)."""

    def __init__(self, detector: object) -> None:
        self.detector = detector
        self.states: dict[str, np.ndarray] = {}
        self.pool = detector.initial_pool_state() if isinstance(detector, PooledDetector) else None
        self.found: list = []

    def feed(self, trades: np.ndarray, auction: np.ndarray | None = None) -> list:
        batch = market_batch(trades, auction)
        initial = self.detector.initial_state()  # type: ignore[attr-defined]
        rows = np.concatenate([self.states.get(s, initial) for s in batch.symbols])
        if self.pool is not None:
            new, self.pool, got = self.detector.detect_pooled(batch, rows, self.pool)  # type: ignore[attr-defined]
        else:
            new, got = self.detector.detect(batch, rows)  # type: ignore[attr-defined]
        self.states.update({s: new[i:i + 1] for i, s in enumerate(batch.symbols)})
        self.found += got
        return got

    def state(self, symbol: str = "ACME") -> np.ndarray:
        return self.states[symbol][0]


def run_detector(detector: object, trades: np.ndarray, chunk: int | None = None) -> tuple[DetectorRun, list]:
    """Feed trades to one detector in chunks; return the run (its states) and all anomalies."""
    run = DetectorRun(detector)
    step = chunk or len(trades)
    for start in range(0, len(trades), step):
        run.feed(trades[start:start + step])
    return run, run.found


def insert(flow: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Merge extra trades into a flow in event-time order, renumbering sequences."""
    merged = np.concatenate((flow, extra))
    merged = merged[np.argsort(merged["ts_event"], kind="stable")]
    merged["sequence"] = np.arange(1, len(merged) + 1)
    return merged


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for the agent's take (closed after `take_within`) to be processed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the agent did not get there in time"
        await asyncio.sleep(0.01)


class FakeIndexSink:
    """An Elasticsearch sink of the indexer's kind: writes what it is given but the ids in `reject`
    (refused for good, as a mapping would: `drain_failed`), or fails every flush with `refuse`."""

    def __init__(self, refuse: Exception | None = None, reject: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.counters = SinkCounters()
        self.buffered: list[Anomaly] = []
        self.written: list[Anomaly] = []
        self.failed: list[FailedAnomaly] = []
        self.refuse, self.reject = refuse, reject
        self.closed = False

    async def publish(self, anomalies):  # type: ignore[no-untyped-def]
        self.buffered += anomalies

    async def flush(self) -> None:
        if self.refuse is not None:
            raise self.refuse
        for a in self.buffered:
            if a.id in self.reject:
                self.failed.append(FailedAnomaly(a, 400, "mapper_parsing_exception"))
                self.counters.failed += 1
            else:
                self.written.append(a)
                self.counters.written += 1
        self.buffered = []

    def drain_failed(self) -> list[FailedAnomaly]:
        failed, self.failed = self.failed, []
        return failed

    async def close(self, flush: bool = True) -> None:
        self.closed = True
