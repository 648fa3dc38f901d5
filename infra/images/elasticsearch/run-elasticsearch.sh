#!/bin/bash
# Elasticsearch with every variable named like a setting (lower case, with a dot) as `-E name=value`.
set -euo pipefail
settings=()
while IFS= read -r -d '' entry; do
    name="${entry%%=*}"
    if [[ "$name" =~ ^[a-z0-9_]+\.[a-z0-9_.]+$ ]]; then
        settings+=("-E" "$entry")
    fi
done < <(env -0)
exec /usr/share/elasticsearch/bin/elasticsearch "${settings[@]}" "$@"
