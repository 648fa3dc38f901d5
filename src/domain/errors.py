"""Domain exceptions: each names what was wrong with the input, for dead letters and CLI errors."""


class DomainError(Exception):
    """Base for errors the domain raises on purpose."""


class SourceError(DomainError):
    """A source that cannot be read at all (missing file, unknown format, bad schema)."""


class ConfigError(DomainError):
    """Configuration or thresholds that make no sense."""


class ResumeError(DomainError):
    """An ingest that cannot be resumed as asked: the trade log holds what the files do not explain."""


def unknown_detectors(unknown: list[str], known: tuple[str, ...] | list[str]) -> str:
    """The refusal of detector names none has: `unknown detector 'telepathy'; choose from ...`."""
    said = ", ".join(repr(name) for name in unknown)
    return f"unknown detector{'s' if len(unknown) > 1 else ''} {said}; choose from {', '.join(known)}"
