"""Reading and writing the calibrated thresholds JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.files.naming import naming
from domain.errors import ConfigError
from domain.thresholds import Thresholds


def load_thresholds(path: str | Path) -> Thresholds:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"thresholds file {p} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"thresholds file {p} is not valid JSON: {exc}") from exc
    try:
        return Thresholds.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"thresholds file {p}: {exc}") from None


def save_thresholds(thresholds: Thresholds, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with naming(p):
        p.write_text(json.dumps(thresholds.to_dict(), indent=2) + "\n", encoding="utf-8")
