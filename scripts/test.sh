#!/usr/bin/env bash
# Full test run: venv (reinstalled only when pyproject.toml changed), local services and a Docker
# engine, unit and integration tests, services stopped again whatever happens. Exits with pytest's status
# (or the services' when pytest passed but a service failed to come up).
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.venv
bash scripts/setup.sh
bash scripts/browser.sh  # chromium, for the report's browser test

trap 'scripts/services.sh down || true' EXIT
services_status=0
# all: Kafka, Elasticsearch, Prometheus, Alertmanager and the Docker engine of the compose test
# (whose images that test builds, cached, with `scripts/services.sh images`).
scripts/services.sh up all || services_status=$?
if [ "$services_status" -ne 0 ]; then
    echo "[test] services did not all come up (exit $services_status); see the errors above." >&2
    echo "[test] running the tests anyway: integration tests fail under CI=true, skip otherwise." >&2
fi

pytest_status=0
"$venv/bin/python" -m pytest tests/unit tests/integration "$@" || pytest_status=$?
if [ "$pytest_status" -eq 0 ] && [ "$services_status" -ne 0 ]; then
    exit "$services_status"
fi
exit "$pytest_status"
