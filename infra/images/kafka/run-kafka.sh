#!/bin/bash
# The broker: server.properties from the KAFKA_* variables (apache/kafka's naming: `_` is `.`,
# `__` is `_`, `___` is `-`), the log dir formatted with CLUSTER_ID on first start, then kafka.Kafka.
set -euo pipefail
props=/opt/kafka/config/server.properties
: > "$props"
while IFS= read -r name; do
    case "$name" in
        KAFKA_HEAP_OPTS|KAFKA_JVM_OPTS|KAFKA_OPTS) continue ;;
    esac
    key="${name#KAFKA_}"
    key="${key,,}"; key="${key//___/-}"; key="${key//__/@}"; key="${key//_/.}"; key="${key//@/_}"
    printf '%s=%s\n' "$key" "${!name}" >> "$props"
done < <(compgen -e | grep '^KAFKA_' || true)
java=(java ${KAFKA_HEAP_OPTS:--Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true
      -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties ${KAFKA_OPTS:-}
      -cp '/opt/kafka/libs/*')
log_dir="${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
if [ ! -f "$log_dir/meta.properties" ]; then
    "${java[@]}" kafka.tools.StorageTool format --ignore-formatted -t "${CLUSTER_ID:?CLUSTER_ID is required}" -c "$props"
fi
exec "${java[@]}" kafka.Kafka "$props"
