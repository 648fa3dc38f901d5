"""Analysts' verdicts on anomalies, as JSON lines: {"id", "verdict", "note", "at"}; the last line for an id wins."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from adapters.files.naming import naming
from domain.errors import ConfigError

VERDICTS = ("confirmed", "false_positive")
ANOMALY_ID = re.compile(r"^[0-9a-f]{32}$")


def append_verdict(path: str | Path, anomaly_id: str, verdict: str, note: str = "") -> dict[str, str]:
    if not ANOMALY_ID.match(anomaly_id):
        raise ConfigError(f"{anomaly_id!r} is not an anomaly id (32 hex digits, as replay --out and query show)")
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    record = {"id": anomaly_id, "verdict": verdict, "note": note,
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with naming(p), p.open("a+b") as f:
        # A last line without its newline (an editor, a cut copy) would swallow this verdict into it.
        if f.seek(0, 2) > 0:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")  # (append mode: every write goes to the end)
        f.write(json.dumps(record).encode() + b"\n")
    return record


def load_verdicts(path: str | Path) -> dict[str, str]:
    """anomaly id -> its latest verdict."""
    p = Path(path)
    out: dict[str, str] = {}
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"verdicts file {p} does not exist (stockanomaly label writes it)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"verdicts file {p} is not readable: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            anomaly_id, verdict = record["id"], record["verdict"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"verdicts file {p}, line {n}: not a verdict written by stockanomaly label") from None
        if verdict not in VERDICTS:
            raise ConfigError(f"verdicts file {p}, line {n}: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        out[str(anomaly_id)] = verdict
    return out
