"""Domain exceptions: each names what was wrong with the input, for dead letters and CLI errors."""


class DomainError(Exception):
    """Base for errors the domain raises on purpose."""


class SourceError(DomainError):
    """A source that cannot be read at all (missing file, unknown format, bad schema)."""


class ConfigError(DomainError):
    """Configuration or thresholds that make no sense."""
