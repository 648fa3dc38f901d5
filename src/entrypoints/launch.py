"""The `stockanomaly` command's entry point.

Loading the CLI takes about half a second (numpy, numba, the detectors): Ctrl-C meanwhile ends it as
Ctrl-C within a command does, "interrupted" and exit status 130, not a traceback from an import.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from entrypoints.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    cli()
