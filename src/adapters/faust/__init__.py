"""The streaming adapter: a Faust app whose agents call the same detect use case as `replay`."""
