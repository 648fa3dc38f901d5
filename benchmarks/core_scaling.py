"""Detection-core throughput against the number of symbols: the same number of trades spread over
1, 20, 500 and 5,000 generated symbols, all default detectors, embedded (in-process, one thread).

Prints one JSON line per point: symbols, trades, trades_per_second (best of --repeat runs, with the
runs' spread), state_bytes_per_symbol (one symbol's encoded state), rss_mib (peak, the point's own
process). Each point runs in a fresh process so its RSS and its numba/sklearn warm-up are its own;
the first run of a point also pays for loading compiled kernels, so the best run is reported.

Usage: python benchmarks/core_scaling.py [--trades 2000000] [--symbols 1,20,500,5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--symbols", default="1,20,500,5000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=262_144, help="trades per detect call (replay's default)")
    parser.add_argument("--point", type=int, help=argparse.SUPPRESS)  # internal: run one point here
    args = parser.parse_args()
    if args.point is not None:
        print(json.dumps(run_point(args.point, args.trades, args.repeat, args.chunk)), flush=True)
        return
    for symbols in (int(s) for s in args.symbols.split(",")):
        subprocess.run([sys.executable, __file__, "--point", str(symbols), "--trades", str(args.trades),
                        "--repeat", str(args.repeat), "--chunk", str(args.chunk)], check=True)


if __name__ == "__main__":
    main()
