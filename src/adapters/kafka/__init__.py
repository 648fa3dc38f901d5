"""Kafka adapters: wire format, producer, topics, dead letters, records read back, notifier, Databento live feed."""
