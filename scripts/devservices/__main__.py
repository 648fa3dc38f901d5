"""Entry point for `python -m devservices`, called by scripts/services.sh."""

import os
import sys

from .cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:
    # The reader went away (`services.sh status | head -3`): nothing more to say, and no traceback.
    # Point stdout at /dev/null so the interpreter's own flush at exit does not fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 1  # what was asked for was not all shown
sys.exit(code)
