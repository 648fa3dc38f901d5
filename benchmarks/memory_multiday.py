"""Memory over a multi-day replay: RSS after each replayed day should stay flat.

Replays both real NVDA days DAYS/2 times through one engine, each copy shifted forward in
event time (as consecutive trading days), and prints one JSON line with the RSS after each day.
Usage: python benchmarks/memory_multiday.py [--days 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from adapters.databento import DatabentoFileSource
from entrypoints.container import build_container

NASDAQ = Path(__file__).resolve().parents[1].parent / "shared/data/nasdaq"
DAY_NS = 86_400 * 1_000_000_000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=20)
    args = parser.parse_args()
    days = [np.concatenate([c.trades for c in DatabentoFileSource([str(f)]).chunks()])
            for f in sorted(NASDAQ.glob("*.csv.zst"))]
    detect = build_container().detect()  # the replay's use case: engine, in-memory state stores
    rss, anomalies = [], 0
    started = time.perf_counter()
    for d in range(args.days):
        trades = days[d % len(days)].copy()
        trades["ts_event"] += (d // len(days)) * len(days) * DAY_NS
        trades["ts_recv"] += (d // len(days)) * len(days) * DAY_NS
        for start in range(0, len(trades), 65_536):
            anomalies += len(detect(trades[start:start + 65_536]).anomalies)
        rss.append(round(rss_mib(), 1))
    print(json.dumps({"benchmark": "memory_multiday", "days": args.days, "anomalies": anomalies,
                      "seconds": round(time.perf_counter() - started, 2), "rss_mib_after_each_day": rss,
                      "rss_growth_after_day_2_mib": round(rss[-1] - rss[min(1, len(rss) - 1)], 1)}))


if __name__ == "__main__":
    main()
