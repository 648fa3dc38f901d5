"""File adapters: JSON-lines sinks and the thresholds file."""
