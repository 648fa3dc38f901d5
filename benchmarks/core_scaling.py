"""Detection-core throughput against the number of symbols: the same number of trades spread over
1, 20, 500 and 5,000 generated symbols, all default detectors, embedded (in-process, one thread).

Prints one JSON line per point: symbols, trades, trades_per_second (best of --repeat runs, with the
runs' spread), state_bytes_per_symbol (one symbol's encoded state), rss_mib (peak, the point's own
process). Each point runs in a fresh process so its RSS and its numba/sklearn warm-up are its own;
the first run of a point also pays for loading compiled kernels, so the best run is reported.

Usage: python benchmarks/core_scaling.py [--trades 2000000] [--symbols 1,20,500,5000] [--repeat 3]
"""

from __future__ import annotations

import resource
import time

import points


def run_point(symbols: int, trades: int, repeat: int, chunk: int) -> dict[str, object]:
    from adapters.synthetic import generate_market
    from entrypoints.container import build_container

    # One injected event of each kind per symbol at most: quality is measured by `evaluate`, and a
    # single symbol cannot hold the ~300 events a 2M-trade market gets.
    market = generate_market(symbols=symbols, trades=trades, seed=3, events_per_type=min(20, symbols))
    tape = market.trades
    runs, anomalies = [], 0
    for _ in range(repeat):
        container = build_container(chunk_size=chunk)
        detect = container.detect()
        started = time.perf_counter()
        found = 0
        for start in range(0, len(tape), chunk):
            found += len(detect(tape[start:start + chunk]).anomalies)
        runs.append(time.perf_counter() - started)
        anomalies = found
    engine = container.engine()
    store = container.state_store()
    row = store.load([market.symbols[0]])
    best = min(runs)
    return {
        "benchmark": "core_scaling",
        "symbols": symbols,
        "trades": len(tape),
        "chunk": chunk,
        "trades_per_second": round(len(tape) / best),
        "runs_trades_per_second": [round(len(tape) / r) for r in runs],
        "seconds": round(best, 3),
        "anomalies": anomalies,
        "state_bytes_per_symbol": len(engine.schema.encode(row)[0]),
        "pool_state_bytes": engine.pool_schema.record_bytes,
        "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    points.main(__file__, __doc__, run_point, default_repeat=3, default_symbols="1,20,500,5000")
