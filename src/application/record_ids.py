"""An anomaly's or incident's id from what an analyst typed: the whole id, or a unique start of it (as git takes commit ids)."""

from __future__ import annotations

from domain.errors import ConfigError, DomainError
from domain.model import is_record_id
from domain.ports import RecordLookup

ID_DIGITS = 32
MIN_PREFIX = 8  # two given ids share 8 digits once in 4 billion; a day of a market's ids already repeats 4
NAMED = 3  # ids an ambiguous prefix's error names
HEX = frozenset("0123456789abcdef")
NOT_AN_ID_NOR_PREFIX = ("is not an anomaly or incident id (32 hex digits, or the first 8 or more of them, as "
                        "replay --out and query show)")


class IdNotResolved(DomainError):
    """What was typed names no stored record, or more than one; `said` puts where it was looked for."""

    def said(self, where: str) -> str:
        return f"{self} in {where}"


class NotFound(IdNotResolved):
    """No anomaly or incident has the id asked for (or an id starting with it)."""


class AmbiguousId(IdNotResolved):
    """Several stored ids start with the prefix typed."""

    def __init__(self, prefix: str, count: int, named: list[str]) -> None:
        super().__init__(f"{prefix!r} starts {count:,} ids")
        self.prefix, self.count, self.named = prefix, count, named

    def said(self, where: str) -> str:
        more = f" and {self.count - len(self.named):,} more" if self.count > len(self.named) else ""
        return f"{self.prefix!r} starts {self.count:,} ids in {where}: {', '.join(self.named)}{more}; give more of it"


def typed_record_id(text: str) -> str:
    """`text` as an id or the start of one: trimmed and in lower case (hex reads the same in any case).
    ConfigError, in one line, when it cannot be either."""
    typed = text.strip().lower()
    if not typed or len(typed) > ID_DIGITS or not set(typed) <= HEX:
        raise ConfigError(f"{typed!r} {NOT_AN_ID_NOR_PREFIX}")
    if len(typed) < MIN_PREFIX:
        raise ConfigError(f"{typed!r} is too short for an id: give at least {MIN_PREFIX} of its {ID_DIGITS} hex digits")
    return typed


def resolve_record_id(text: str, lookup: RecordLookup, whole_too: bool = False) -> str:
    """The whole id that `text` names: itself when whole (stored or not, unless `whole_too`: the caller
    looks), else the one stored id that starts with it. NotFound when none does (or, `whole_too`, a
    whole id is not stored), AmbiguousId when several do."""
    typed = typed_record_id(text)
    if is_record_id(typed):
        if whole_too and lookup.ids_starting(typed, 1)[0] == 0:
            raise NotFound(f"no anomaly or incident has the id {typed!r}")
        return typed
    count, ids = lookup.ids_starting(typed, NAMED)
    if count == 0:
        raise NotFound(f"no anomaly or incident id starts with {typed!r}")
    if count > 1:
        raise AmbiguousId(typed, count, ids)
    return ids[0]
