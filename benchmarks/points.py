"""What the core benchmarks share: their options, and each point run in a process of its own (so its
peak RSS and its numba/scikit-learn warm-up are its own) that prints one JSON line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable


def arguments(doc: str | None, default_repeat: int, default_symbols: str) -> argparse.Namespace:
    """The command line: --trades, --symbols (a comma-separated list), --repeat, --chunk."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--symbols", default=default_symbols)
    parser.add_argument("--repeat", type=int, default=default_repeat)
    parser.add_argument("--chunk", type=int, default=262_144, help="trades per detect call")
    parser.add_argument("--point", type=int, help=argparse.SUPPRESS)  # internal: run one point here
    args = parser.parse_args()
    if min(args.trades, args.repeat, args.chunk) < 1:
        parser.error("--trades, --repeat and --chunk must be at least 1")
    try:
        args.symbols = [int(s) for s in args.symbols.split(",")]
    except ValueError:
        parser.error(f"--symbols takes numbers separated by commas, not {args.symbols!r}")
    if min(args.symbols) < 1:
        parser.error("--symbols must be at least 1")
    return args


def run_each_point(script: str, args: argparse.Namespace) -> None:
    """`script --point N` with the same options, for every N of --symbols, one after the other."""
    for symbols in args.symbols:
        subprocess.run([sys.executable, script, "--point", str(symbols), "--trades", str(args.trades),
                        "--repeat", str(args.repeat), "--chunk", str(args.chunk)], check=True)


def main(script: str, doc: str | None, run_point: Callable[[int, int, int, int], dict[str, object]],
         default_repeat: int, default_symbols: str) -> None:
    """Run every point of --symbols in its own process; in that process (--point N), print
    run_point(N, trades, repeat, chunk) as one JSON line."""
    args = arguments(doc, default_repeat, default_symbols)
    if args.point is not None:
        print(json.dumps(run_point(args.point, args.trades, args.repeat, args.chunk)), flush=True)
        return
    run_each_point(script, args)
