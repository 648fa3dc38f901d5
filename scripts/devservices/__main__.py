"""Entry point for `python -m devservices`, called by scripts/services.sh."""

import sys

from .cli import main

sys.exit(main())
