"""Domain exceptions: each names what was wrong with the input, for dead letters and CLI errors."""


class DomainError(Exception):
    """Base for errors the domain raises on purpose."""


class InvalidTrade(DomainError):
    """A trade that cannot be processed; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SourceError(DomainError):
    """A source that cannot be read at all (missing file, unknown format, bad schema)."""


class ConfigError(DomainError):
    """Configuration or thresholds that make no sense."""
