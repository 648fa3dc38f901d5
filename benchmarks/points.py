"""What the core benchmarks share: their options, and each point run in a process of its own (so its
peak RSS and its numba/scikit-learn warm-up are its own)."""

from __future__ import annotations

import argparse
import subprocess
import sys


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
