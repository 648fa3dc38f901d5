"""Detection core throughput on a real NVDA day: all default detectors, in-process, one core.

Prints one JSON line. The file is decoded first (timed separately) so the number is the core's.
Usage: python benchmarks/core_throughput.py [FILE] [--chunk N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from adapters.databento import DatabentoFileSource
from entrypoints.container import build_container

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data/nasdaq/xnas-itch-20250505.trades.csv.zst"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", nargs="?", default=str(DEFAULT))
    parser.add_argument("--chunk", type=int, default=65_536, help="trades per detect call")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    args = parser.parse_args()

    started = time.perf_counter()
    trades = np.concatenate([c.trades for c in DatabentoFileSource([args.file]).chunks()])
    load_s = time.perf_counter() - started

    runs = []
    for _ in range(args.repeat):
        container = build_container()
        container.engine().warm_up()
        detect = container.detect()  # the replay's use case: engine, in-memory state stores
        found: Counter[str] = Counter()
        started = time.perf_counter()
        for start in range(0, len(trades), args.chunk):
            found.update(a.detector for a in detect(trades[start:start + args.chunk]).anomalies)
        runs.append((time.perf_counter() - started, found))
    seconds, found = min(runs, key=lambda r: r[0])
    print(json.dumps({
        "benchmark": "core_throughput",
        "file": Path(args.file).name,
        "trades": len(trades),
        "chunk": args.chunk,
        "seconds": round(seconds, 4),
        "trades_per_second": round(len(trades) / seconds),
        "decode_seconds": round(load_s, 4),
        "decode_trades_per_second": round(len(trades) / load_s),
        "anomalies": sum(found.values()),
        "by_detector": dict(sorted(found.items())),
        "runs_seconds": [round(r[0], 4) for r in runs],
    }))


if __name__ == "__main__":
    main()
