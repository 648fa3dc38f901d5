"""What the core benchmarks share: their options, and each point run in a process of its own (so its
peak RSS and its numba/scikit-learn warm-up are its own) that prints one JSON line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


GENERATED_CHUNK = 262_144  # trades per detect call on a generated market


def arguments(doc: str | None, default_repeat: int, default_symbols: str, with_file: bool = False) -> argparse.Namespace:
    """The command line: --trades, --symbols (a comma-separated list), --repeat, --chunk, and with
    `with_file` --file (a Databento file's trades instead of the generated markets)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--symbols", default=default_symbols)
    parser.add_argument("--repeat", type=int, default=default_repeat)
    parser.add_argument("--chunk", type=int, help=f"trades per detect call (default {GENERATED_CHUNK:,}; with "
                                                  "--file, what replay reads at a time: STOCKANOMALY_CHUNK_SIZE)")
    if with_file:
        parser.add_argument("--file", help="a Databento file (DBN or CSV, .zst too), decoded before the clock "
                                           "starts: its trades instead of a generated market (--trades and "
                                           "--symbols are then not used)")
    parser.add_argument("--point", type=int, help=argparse.SUPPRESS)  # internal: run one point here
    args = parser.parse_args()
    args.file = getattr(args, "file", None)
    if args.file is not None and not Path(args.file).is_file():
        parser.error(f"--file {args.file}: no such file")
    if args.chunk is None:
        args.chunk = replay_chunk() if args.file is not None else GENERATED_CHUNK
    if min(args.trades, args.repeat, args.chunk) < 1:
        parser.error("--trades, --repeat and --chunk must be at least 1")
    try:
        args.symbols = [int(s) for s in args.symbols.split(",")]
    except ValueError:
        parser.error(f"--symbols takes numbers separated by commas, not {args.symbols!r}")
    if min(args.symbols) < 1:
        parser.error("--symbols must be at least 1")
    return args


def replay_chunk() -> int:
    """Trades `stockanomaly replay` reads at a time: the settings' chunk size (environment included)."""
    from entrypoints.settings import load_settings

    return int(load_settings().chunk_size)


def run_each_point(script: str, args: argparse.Namespace) -> None:
    """`script --point N` with the same options, for every N of --symbols, one after the other (with
    --file, one point: the file's)."""
    for symbols in args.symbols if args.file is None else [0]:
        subprocess.run([sys.executable, script, "--point", str(symbols), "--trades", str(args.trades),
                        "--repeat", str(args.repeat), "--chunk", str(args.chunk),
                        *(["--file", args.file] if args.file is not None else [])], check=True)


def main(script: str, doc: str | None, run_point: Callable[..., dict[str, object]],
         default_repeat: int, default_symbols: str, with_file: bool = False) -> None:
    """Run every point of --symbols in its own process; in that process (--point N), print
    run_point(N, trades, repeat, chunk) as one JSON line (with `with_file`, run_point(..., file=...))."""
    args = arguments(doc, default_repeat, default_symbols, with_file)
    if args.point is not None:
        extra = {"file": args.file} if with_file else {}
        print(json.dumps(run_point(args.point, args.trades, args.repeat, args.chunk, **extra)), flush=True)
        return
    run_each_point(script, args)
