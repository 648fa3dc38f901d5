#!/usr/bin/env bash
# Create or update the project's virtualenv (.venv); a no-op when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
touch "$stamp"
