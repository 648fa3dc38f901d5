"""prometheus.yml for the compose stack on host networking (docker-compose.host.yml), from this folder's.

Every container shares the host's network there, so the compose-only jobs, which find each
worker replica through compose's DNS on one port, cannot work: the workers take the first free
port of STOCKANOMALY_METRICS_PORT .. + STOCKANOMALY_METRICS_PORT_SPAN - 1 instead, and this job
scrapes that range. Run by the Prometheus container before Prometheus starts:
    python host_network.py /etc/prometheus/prometheus.yml OUT_DIR
writes OUT_DIR/prometheus.yml (rules/ linked beside it) with the ports from the environment.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

COMPOSE_ONLY = re.compile(r"^[ \t]*# BEGIN compose-only.*?# END compose-only[^\n]*\n", re.S | re.M)


def render(project_config: str, env: dict[str, str]) -> str:
    prometheus = int(env["PROMETHEUS_PORT"])
    alertmanager = int(env["ALERTMANAGER_PORT"])
    first, span = int(env["STOCKANOMALY_METRICS_PORT"]), int(env["STOCKANOMALY_METRICS_PORT_SPAN"])
    workers = ", ".join(f'"worker:{port}"' for port in range(first, first + span))
    text = COMPOSE_ONLY.sub("", project_config)
    text = text.replace('"localhost:9090"', f'"localhost:{prometheus}"')
    text = text.replace('"127.0.0.1:9094"', f'"alertmanager:{alertmanager}"')
    return text + f"""
  # Host networking (docker-compose.host.yml): each worker replica on its own port of the span.
  # port_span: a spare port (fewer replicas than ports) is down by design (StockanomalyTargetDown).
  - job_name: stockanomaly-worker
    static_configs:
      - targets: [{workers}]
        labels:
          port_span: "true"
  - job_name: stockanomaly-indexer
    static_configs:
      - targets: ["indexer:{int(env["STOCKANOMALY_INDEXER_METRICS_PORT"])}"]
"""


def main(source: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("rules", "targets"):  # relative paths in the config resolve beside it
        link = out / name
        if not link.exists():
            link.symlink_to(Path(source).parent / name, target_is_directory=True)
    (out / "prometheus.yml").write_text(render(Path(source).read_text(), dict(os.environ)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
