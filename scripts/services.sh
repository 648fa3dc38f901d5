#!/usr/bin/env bash
# Local Kafka, Elasticsearch, Prometheus and Alertmanager for development and integration tests.
#   scripts/services.sh up [kafka|elasticsearch|prometheus ...]   start (default: all but docker), wait healthy
#   scripts/services.sh down [service ...] [--purge]              stop what `up` started
#   scripts/services.sh status [service ...]                      exit 0 only if all are healthy
#   scripts/services.sh logs [service] [-n N] [-f]                tail the service logs
#   scripts/services.sh env                                       print endpoints as shell exports
#   scripts/services.sh up docker                                 a Docker engine (host networking only)
#   scripts/services.sh images                                    the local images of docker-compose.host.yml
# Downloads are cached under $STOCKANOMALY_CACHE (default ~/.cache/stockanomaly); runtime data,
# logs and pid files live under $STOCKANOMALY_RUN_DIR (default <repo>/.services).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${STOCKANOMALY_SERVICES_PYTHON:-python3}"
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m devservices "$@"
