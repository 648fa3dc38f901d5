"""File adapters: JSON-lines sinks, replay output read back, thresholds, suppressions and verdicts files."""
