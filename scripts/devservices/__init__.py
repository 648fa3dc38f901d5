"""Local Kafka, Elasticsearch and Prometheus for development and tests (scripts/services.sh)."""
