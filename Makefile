# Two entry points a new user needs; everything else is the `stockanomaly` CLI.
.PHONY: setup replay test unit bench

setup:
	@bash scripts/setup.sh

replay: setup  ## the detection core, embedded, on the built-in sample (no Kafka, no Elasticsearch)
	@.venv/bin/stockanomaly replay $(ARGS)

test:  ## unit and integration tests, starting and stopping the real services
	@bash scripts/test.sh

unit: setup
	@.venv/bin/pytest -q tests/unit

bench: setup
	@.venv/bin/python benchmarks/core_scaling.py
