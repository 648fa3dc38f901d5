"""The suppressions file: JSON, {"suppressions": [{"symbol", "detector", "between", "until", "note"}, ...]}."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from adapters.files.naming import naming
from domain.errors import ConfigError
from domain.suppressions import Suppression, Suppressions

log = structlog.get_logger()


class SuppressionsUnreadable(ConfigError):
    """A suppressions file that does not hold rules this release reads (a replay says how to do
    without it)."""

KNOWN = {"id", "symbol", "detector", "between", "until", "note"}


def load_suppressions(path: str | Path) -> list[Suppression]:
    """The rules of `path` ([] when it does not exist yet: nothing suppressed)."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuppressionsUnreadable(f"suppressions file {p} is not readable JSON: {exc}") from None
    rules = data.get("suppressions") if isinstance(data, dict) else None
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise SuppressionsUnreadable(f"suppressions file {p} must hold {{\"suppressions\": [rule, ...]}}")
    out = []
    for n, rule in enumerate(rules, 1):
        unknown = sorted(set(rule) - KNOWN)
        if unknown:
            raise SuppressionsUnreadable(f"suppressions file {p}, rule {n}: unknown fields {unknown}")
        not_text = sorted(k for k, v in rule.items() if v is not None and not isinstance(v, str))
        if not_text:
            raise SuppressionsUnreadable(f"suppressions file {p}, rule {n}: {', '.join(not_text)} must be text "
                              f"(as `stockanomaly suppress` writes them)")
        try:
            out.append(Suppression.of(rule.get("symbol"), rule.get("detector"), rule.get("between"),
                                      rule.get("until"), rule.get("note") or ""))
        except ConfigError as exc:
            raise SuppressionsUnreadable(f"suppressions file {p}, rule {n}: {exc}") from None
    return out


def save_suppressions(path: str | Path, rules: list[Suppression]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with naming(p):
        tmp.write_text(json.dumps({"suppressions": [r.to_dict() for r in rules]}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p)  # never a half-written file for a worker to read


class SuppressionsFile:
    """The rules of a file as they are now: re-read whenever the file changes (a worker honours a
    suppression added while it runs, from its next batch). A change that does not parse keeps the
    rules in force and logs why."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._rules = Suppressions(load_suppressions(self.path))  # a bad file at start-up is an error
        self._stamp = self._now()

    def _now(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def __call__(self) -> Suppressions:
        stamp = self._now()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._rules = Suppressions(load_suppressions(self.path))
                log.info("suppressions_loaded", path=str(self.path), rules=len(self._rules.rules))
            except ConfigError as exc:
                log.error("suppressions_unreadable", path=str(self.path), error=str(exc), action="keeping the rules in force")
        return self._rules
