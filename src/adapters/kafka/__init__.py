"""Kafka adapters: the trades wire format and the producer that publishes trade batches."""
