"""Where the detection core's time goes, step by step, against the number of symbols.

The same generated markets as `core_scaling.py` (seed 3, the same number of trades over each number
of symbols, batches of --chunk trades, the replay's use case with in-memory state, one thread),
with every step of a batch timed: `prepare` (record checks, symbol coding, pools), the state
stores' `load` and `save`, `group` (MarketBatch.of: columns, grouped by symbol), the duplicate
`guard`, each detector's update, and the Isolation Forest's scikit-learn model fits apart from the
rest of that detector. `other` is what no step accounts for (auction flags, context, sorting).

Prints one JSON line per point: the best run (least total time) of --repeat runs, its steps in
milliseconds, how many models it fitted, and `seconds_without_fits`: comparing that between points
separates what a market costs in model fits (one pool per Kafka partition, so a market of four or
more symbols fits four times the models a single symbol does) from what it costs in per-symbol work.

With --file, the trades of a Databento file (a real day, say) instead, decoded before the clock
starts and judged in the chunks `stockanomaly replay` reads (16,384 trades by default): what of a real day's
replay is detection and what model fits (`symbols` is then the file's count; decoding is reported
apart as `decode_seconds`, one read of the file on one thread).

Usage: python benchmarks/core_steps.py [--trades 2000000] [--symbols 1,5000] [--repeat 5]
       python benchmarks/core_steps.py --file ../shared/data/nasdaq/xnas-itch-20250505.trades.csv.zst
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import points


def timed(steps: defaultdict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            steps[name] += time.perf_counter() - started
    return call


def read_file(path: str, chunk: int) -> tuple[Any, float]:
    """Every trade of a Databento file in file order, and how long one read took."""
    import numpy as np

    from adapters.databento import DatabentoFileSource

    started = time.perf_counter()
    parts = [c.trades for c in DatabentoFileSource([path], chunk_size=chunk).chunks() if len(c.trades)]
    seconds = time.perf_counter() - started
    if not parts:
        raise SystemExit(f"core_steps: {path} holds no trades")
    return np.concatenate(parts), seconds


def run_point(symbols: int, trades: int, repeat: int, chunk: int, file: str | None = None) -> dict[str, object]:
    import sklearn.ensemble

    import domain.engine as engine_module
    from adapters.synthetic import generate_market
    from domain.market import MarketBatch
    from entrypoints.container import build_container

    steps: defaultdict[str, float] = defaultdict(float)  # seconds per step
    fits: defaultdict[str, float] = defaultdict(float)  # count and seconds of the scikit-learn fits

    class TimedIsolationForest(sklearn.ensemble.IsolationForest):  # type: ignore[misc]
        def fit(self, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return super().fit(*args, **kwargs)
            finally:
                fits["count"] += 1
                fits["seconds"] += time.perf_counter() - started

    # Names the engine and the detector look up at call time (the detector imports the model class
    # at its first fit): wrapped for this process only.
    sklearn.ensemble.IsolationForest = TimedIsolationForest  # type: ignore[misc]
    grouped = MarketBatch.of.__func__  # type: ignore[attr-defined]
    engine_module.MarketBatch.of = classmethod(timed(steps, "group", grouped))  # type: ignore[method-assign]

    source: dict[str, object] = {}  # with --file: the file and how long one read of it took
    if file is None:
        tape = generate_market(symbols=symbols, trades=trades, seed=3, events_per_type=min(20, symbols)).trades
    else:
        tape, decode_seconds = read_file(file, chunk)
        source = {"file": file, "decode_seconds": round(decode_seconds, 3)}
        symbols = len(set(tape["symbol"].tolist()))
    best: dict[str, object] | None = None
    for _ in range(repeat):
        steps.clear()
        fits.clear()
        container = build_container(chunk_size=chunk)
        detect, engine = container.detect(), container.engine()
        engine.prepare = timed(steps, "prepare", engine.prepare)  # type: ignore[method-assign]
        engine.guard.check = timed(steps, "guard", engine.guard.check)  # type: ignore[method-assign]
        for store in {id(s): s for s in (detect.states, detect.pool_states, detect.tapes) if s is not None}.values():
            store.load = timed(steps, "state_load", store.load)
            store.save = timed(steps, "state_save", store.save)
        for det in engine.enabled:
            method = "update_pooled" if hasattr(det, "update_pooled") else "update"
            setattr(det, method, timed(steps, det.name, getattr(det, method)))
        started = time.perf_counter()
        for start in range(0, len(tape), chunk):
            detect(tape[start:start + chunk])
        total = time.perf_counter() - started
        if best is not None and total >= float(best["seconds"]):  # type: ignore[arg-type]
            continue
        parts = dict(steps)
        if "isolation_forest" in parts:
            parts["isolation_forest"] -= fits["seconds"]  # the fits are reported on their own
        parts["model_fits"] = fits["seconds"]
        parts["other"] = total - sum(parts.values())
        best = {
            "benchmark": "core_steps",
            **source,
            "symbols": symbols,
            "trades": len(tape),
            "chunk": chunk,
            "seconds": round(total, 3),
            "seconds_without_fits": round(total - fits["seconds"], 3),
            "model_fits": int(fits["count"]),
            "steps_ms": {name: round(seconds * 1e3, 1) for name, seconds in sorted(parts.items())},
        }
    assert best is not None
    return best


if __name__ == "__main__":
    points.main(__file__, __doc__, run_point, default_repeat=5, default_symbols="1,5000", with_file=True)
