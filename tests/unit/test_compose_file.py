"""docker-compose.yml is a valid Compose file describing the stack the product promises.

No compose CLI or Docker engine is needed: the file is checked against the Compose
Specification JSON schema (tests/fixtures/compose-spec.json) and against the project's rules.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO / "tests" / "fixtures" / "compose-spec.json"
APP_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "ELASTICSEARCH_URL", "STOCKANOMALY_TRADES_TOPIC",
           "STOCKANOMALY_ANOMALIES_TOPIC", "STOCKANOMALY_DLQ_TOPIC", "STOCKANOMALY_THRESHOLDS",
           "DATABENTO_API_KEY", "STOCKANOMALY_METRICS_PORT")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}; $$ escapes $.
INTERPOLATION = re.compile(r"\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}|"
                           r"\$[A-Za-z_][A-Za-z0-9_]*")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _pinned(name: str) -> str:
    text = (REPO / "scripts" / "devservices" / "config.py").read_text()
    match = re.search(rf'^{name} = "([^"]+)"', text, re.M)
    assert match, f"{name} not found in scripts/devservices/config.py"
    return match.group(1)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_compose_file_matches_the_compose_specification_schema(compose):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def test_every_dollar_is_a_well_formed_interpolation_or_escaped():
    for lineno, line in enumerate(COMPOSE.read_text().splitlines(), start=1):
        stray = INTERPOLATION.sub("", line)
        assert "$" not in stray, f"docker-compose.yml:{lineno}: unescaped $ in {line.strip()!r}"


def test_the_whole_stack_is_there(services):
    assert {"kafka", "topics", "elasticsearch", "kibana", "prometheus", "grafana", "ingest",
            "worker"} <= set(services)


def test_images_match_the_versions_the_local_services_run(services):
    assert services["kafka"]["image"] == f"apache/kafka:{_pinned('KAFKA_VERSION')}"
    assert services["topics"]["image"] == services["kafka"]["image"]
    es_version = _pinned("ELASTICSEARCH_VERSION")
    assert es_version.startswith("9.")
    assert services["elasticsearch"]["image"].endswith(f"/elasticsearch:{es_version}")
    assert services["kibana"]["image"].endswith(f"/kibana:{es_version}")


def test_kafka_runs_in_kraft_mode_without_zookeeper(services):
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in json.dumps(services).lower()


def test_topics_are_created_before_the_app_starts(services):
    script = "\n".join(_strings(services["topics"]["command"]))
    for topic in ("trades", "anomalies", "incidents", "trades.dlq"):
        # Every one with the workers' partition count: they refuse to start on any other.
        assert f'--topic {topic} --partitions "$${{TRADES_PARTITIONS}}"' in script
    assert services["topics"]["restart"] == "no"
    for app in ("worker", "ingest"):
        assert services[app]["depends_on"]["topics"]["condition"] == \
            "service_completed_successfully"


def test_worker_scales_out_without_fixed_names_or_host_ports(services):
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"][:4] == ["faust", "-A", "entrypoints.worker", "worker"]


def test_app_services_read_their_settings_from_the_environment(services):
    for name in ("worker", "ingest"):
        env = services[name]["environment"]
        assert set(APP_ENV) <= set(env), f"{name} misses {set(APP_ENV) - set(env)}"
        assert env["STOCKANOMALY_METRICS_PORT"] == "9100"
    assert services["ingest"]["command"][:2] == ["sh", "-c"]


@pytest.mark.parametrize(("args", "files", "expected"), [
    ("--live --symbols NVDA", [], ["ingest --live --symbols NVDA"]),
    ("", ["day.csv.zst"], ["ingest DATA"]),
    ("", [], ["generate /tmp/sample.dbn.zst --symbols 8 --trades 400000 --date last",
              "ingest /tmp/sample.dbn.zst"]),
])
def test_ingest_replays_the_mounted_files_or_a_sample_when_there_are_none(services, tmp_path, args, files, expected):
    """The ingest service's script, run by a real shell with a stand-in `stockanomaly` that logs its
    arguments: given arguments win, then the mounted folder's files, and an empty folder (a first
    `up`) ingests a generated sample instead of nothing."""
    script = services["ingest"]["command"][2]
    data = tmp_path / "data"
    data.mkdir()
    for name in files:
        (data / name).write_text("x")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "stockanomaly"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    # What compose hands the container: $$ unescaped, ${VAR:-default} interpolated, /data mounted.
    shell = script.replace("$$", "$").replace("${STOCKANOMALY_TRADES_DIR:-./data}", "./data")
    shell = shell.replace("/data", str(data))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STOCKANOMALY_INGEST_ARGS": args}
    result = subprocess.run(["sh", "-c", shell], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [e.replace("DATA", str(data)) for e in expected]


def test_the_databento_key_only_ever_comes_from_the_host_environment(services):
    for name, service in services.items():
        value = (service.get("environment") or {}).get("DATABENTO_API_KEY")
        if value is not None:
            assert re.fullmatch(r"\$\{DATABENTO_API_KEY(:?-)?\}", value), name
    assert "db-" not in COMPOSE.read_text()  # Databento keys start with db-


def test_long_running_services_have_health_checks(services):
    for name, service in services.items():
        if service.get("restart") != "no":
            assert "healthcheck" in service, f"{name} has no healthcheck"


def test_dependencies_and_named_volumes_exist(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if ":" in volume else None
            if source and not source.startswith(("/", ".", "$")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_prometheus_and_grafana_are_provisioned_from_the_repository(services):
    prometheus_mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus_mounts
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]
    assert (REPO / "deploy/prometheus/rules/anomalies.yml").exists()
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in \
        services["grafana"]["volumes"]
    datasources = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/datasources.yml").read_text())
    assert {d["type"] for d in datasources["datasources"]} == {"prometheus", "elasticsearch"}
