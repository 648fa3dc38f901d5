"""A replay's output files read back: its anomalies (`--out`) and incidents (beside them) by id."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from domain.errors import SourceError
from domain.incidents import Incident
from domain.model import Anomaly

T = TypeVar("T")


def incidents_path(out: str | Path) -> Path:
    """Where a replay with `--out FILE` writes its incidents: FILE's name with `.incidents` before its
    suffix (anomalies.jsonl -> anomalies.incidents.jsonl)."""
    p = Path(out)
    return p.with_name(f"{p.stem}.incidents{p.suffix or '.jsonl'}")


def _read(path: Path, parse: Callable[[dict[str, Any]], T], what: str) -> list[T]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist (replay --out writes it)") from None
    except UnicodeDecodeError:  # a file of trades (DBN, zstd) given where replay's output is wanted
        raise SourceError(f"{path} is not text: give the JSON lines replay --out wrote") from None
    except OSError as exc:
        raise SourceError(f"{path} is not readable: {exc.strerror or exc}") from None
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(parse(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            # The incidents file is the last replay names ('incidents written to ...'): said what it is.
            if parse == Anomaly.from_dict and _is_incident(line):
                beside = anomalies_path(path)
                raise SourceError(f"{path} holds a replay's incidents: give the --out file they were written beside"
                                  f"{f' ({beside})' if beside != path else ''}; show reads both") from None
            raise SourceError(f"{path}, line {n}: not {what} as replay --out writes it") from None
    return items


def anomalies_path(incidents: Path) -> Path:
    """The `--out` file an incidents file was written beside: `incidents_path`'s inverse (the path
    itself when it is not named as one). An --out without a suffix (`anomalies`) got `.jsonl` for its
    incidents: that one, when it is there."""
    stem = incidents.stem.removesuffix(".incidents")
    if stem == incidents.stem:
        return incidents
    bare = incidents.with_name(stem)
    return bare if incidents.suffix == ".jsonl" and bare.is_file() else incidents.with_name(stem + incidents.suffix)


def _out_file(path: Path) -> Path:
    """The --out file for a path given as one: the incidents file (which replay names last, so it is
    the one copied) stands for the --out file beside it, when that is there."""
    beside = anomalies_path(path)
    if beside == path or not beside.is_file():
        return path
    try:
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return path  # said by _read, as for any path
    return beside if _is_incident(first) else path


def _is_incident(line: str) -> bool:
    try:
        Incident.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError):
        return False
    return True


class ReplayRecords:
    """RecordLookup over `replay --out FILE`'s anomalies and the incidents written beside them (a replay
    interrupted before its end may have no incidents file: its anomalies are still found)."""

    def __init__(self, out: str | Path) -> None:
        self.anomaly_path = _out_file(Path(out))
        self.incident_path = incidents_path(self.anomaly_path)
        self._anomalies = {a.id: a for a in _read(self.anomaly_path, Anomaly.from_dict, "an anomaly")}
        self._incidents = (_read(self.incident_path, Incident.from_dict, "an incident")
                           if self.incident_path.exists() else [])

    def anomalies(self, ids: Sequence[str]) -> list[Anomaly]:
        return [self._anomalies[i] for i in ids if i in self._anomalies]

    def incident(self, incident_id: str) -> Incident | None:
        return next((i for i in self._incidents if i.id == incident_id), None)

    def incident_of(self, anomaly_id: str) -> Incident | None:
        return next((i for i in self._incidents if anomaly_id in i.members), None)

    def ids_starting(self, prefix: str, most: int) -> tuple[int, list[str]]:
        found = sorted({i for i in self._anomalies if i.startswith(prefix)}
                       | {i.id for i in self._incidents if i.id.startswith(prefix)})
        return len(found), found[:most]
