#!/usr/bin/env bash
# Create or update the project's virtualenv (.venv); a no-op when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${STOCKANOMALY_PYTHON:-python3}"
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating $venv with $("$python" --version)" >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.stockanomaly-install.sha256"
want="$(cat pyproject.toml <("$venv/bin/python" --version 2>&1) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "[setup] installing the project and its test dependencies into $venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e ".[test]"
    echo "$want" > "$stamp"
fi
