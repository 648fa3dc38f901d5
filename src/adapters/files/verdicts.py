"""Analysts' verdicts on anomalies or incidents, JSON lines {"id", "verdict", "note", "at"}; an id's last wins."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from adapters.files.naming import naming
from domain.errors import ConfigError
from domain.model import NOT_AN_ID, is_record_id

VERDICTS = ("confirmed", "false_positive")


def append_verdict(path: str | Path, anomaly_id: str, verdict: str, note: str = "") -> dict[str, str]:
    return append_verdicts(path, [anomaly_id], verdict, note)[0]


def append_verdicts(path: str | Path, anomaly_ids: Sequence[str], verdict: str, note: str = "") -> list[dict[str, str]]:
    """One verdict (and note) on each of the ids, in one append: every id is checked first, so a
    mistyped one writes none of them (a triage of many ids is not left half recorded)."""
    bad = [i for i in anomaly_ids if not is_record_id(i)]
    if bad:
        raise ConfigError(f"{bad[0]!r} {NOT_AN_ID}" + (f" (and {len(bad) - 1} more ids)" if len(bad) > 1 else "")
                          + ("; nothing written" if len(anomaly_ids) > 1 else ""))
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = [{"id": i, "verdict": verdict, "note": note, "at": at} for i in anomaly_ids]
    p = Path(path)
    if p.is_file() and p.stat().st_size:
        # --file naming another file (a replay's --out, a labels file, a day's data) would be appended
        # to and spoilt; a verdicts file spoilt by hand is said now, not at the next evaluate.
        try:
            load_verdicts(p)
        except ConfigError as exc:
            raise ConfigError(f"{p} holds something other than verdicts ({exc}); nothing written") from None
    p.parent.mkdir(parents=True, exist_ok=True)
    with naming(p), p.open("a+b") as f:
        # A last line without its newline (an editor, a cut copy) would swallow this verdict into it.
        if f.seek(0, 2) > 0:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")  # (append mode: every write goes to the end)
        f.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    return records


def load_verdicts(path: str | Path, changed: dict[str, int] | None = None) -> dict[str, str]:
    """anomaly id -> its latest verdict. Every line is checked as `label` writes it, a hand-edited one
    too: one that is not (not JSON, a field missing, an id that is not one, a verdict not known) is a
    ConfigError naming the file and line, never a verdict lost in silence (an id of another type or
    case would match no anomaly and count as one 'this run did not find'). An id is read as `label` takes
    it (trimmed, lower case). `changed`, when given, gets each id whose verdicts disagree (relabelled,
    or two analysts) with the line of the last one, the one that counts."""
    p = Path(path)
    out: dict[str, str] = {}
    try:
        # utf-8-sig: an editor's byte-order mark is not part of the first line
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"verdicts file {p} does not exist (stockanomaly label writes it)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"verdicts file {p} is not readable: {exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"verdicts file {p}, line {n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not a verdict written by stockanomaly label (not JSON: {exc.msg}, "
                              f"column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: not a verdict written by stockanomaly label "
                              f"(a JSON object with id and verdict, not {type(record).__name__})")
        missing = [name for name in ("id", "verdict") if name not in record]
        if missing:
            raise ConfigError(f"{where}: lacks {' and '.join(missing)}")
        anomaly_id, verdict = record["id"], record["verdict"]
        if not isinstance(anomaly_id, str) or not is_record_id(anomaly_id.strip().lower()):
            raise ConfigError(f"{where}: id {anomaly_id!r} {NOT_AN_ID}")
        if verdict not in VERDICTS:
            raise ConfigError(f"{where}: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        anomaly_id = anomaly_id.strip().lower()
        if changed is not None and (anomaly_id in changed or out.get(anomaly_id, verdict) != verdict):
            changed[anomaly_id] = n
        out[anomaly_id] = verdict
    return out
