"""Grafana and Kibana provisioning in deploy/ is consistent with the app and with docker-compose.yml.

Structure checks only: no Grafana or Kibana is started. PromQL syntax is checked with promtool
when it is on PATH (scripts/services.sh installs it with Prometheus); otherwise that test skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from adapters.elasticsearch.mapping import ANOMALY_MAPPINGS, DEFAULT_INDEX_PREFIX, index_pattern

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = GRAFANA / "dashboards"
RULES = REPO / "deploy" / "prometheus" / "rules"
KIBANA_NDJSON = REPO / "deploy" / "kibana" / "saved_objects.ndjson"

ANOMALY_INDEX = index_pattern(DEFAULT_INDEX_PREFIX)
ANOMALY_FIELDS = set(ANOMALY_MAPPINGS["properties"])
# What the worker exports (besides what deploy/prometheus/rules uses); histograms add
# _bucket/_sum/_count series.
WORKER_METRICS = {
    "stockanomaly_trades_processed_total", "stockanomaly_anomalies_total",
    "stockanomaly_dead_letters_total", "stockanomaly_model_refits_total",
    "stockanomaly_elasticsearch_writes_total", "stockanomaly_elasticsearch_retries_total",
    "stockanomaly_elasticsearch_failures_total", "stockanomaly_consumer_lag",
}
WORKER_HISTOGRAMS = {"stockanomaly_batch_seconds", "stockanomaly_batch_trades"}
METRIC_NAME = re.compile(r"\bstockanomaly[_:][A-Za-z0-9_:]*")
GRAFANA_VARIABLE = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}")
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return _yaml(COMPOSE)["services"]


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    config = _yaml(DATASOURCES)
    assert config["apiVersion"] == 1
    by_uid = {d["uid"]: d for d in config["datasources"]}
    assert len(by_uid) == len(config["datasources"]), "duplicate datasource uid"
    return by_uid


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS}"
    return {f.name: json.loads(f.read_text()) for f in files}


@pytest.fixture(scope="module")
def overview(dashboards) -> dict[str, Any]:
    return dashboards["stockanomaly-overview.json"]


@pytest.fixture(scope="module")
def kibana_objects() -> list[dict[str, Any]]:
    lines = KIBANA_NDJSON.read_text().splitlines()
    assert lines and all(line.strip() for line in lines), "blank line in the NDJSON"
    objects = []
    for lineno, line in enumerate(lines, start=1):
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as error:  # pragma: no cover - the message is the point
            pytest.fail(f"{KIBANA_NDJSON.name}:{lineno}: {error}")
    return objects


def _by_type(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["type"] == kind]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _prometheus_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in _panels(dashboard)
            for target in panel.get("targets", []) if "expr" in target]


def _mount_source(services: dict[str, Any], service: str, target: str) -> Path:
    """The host path docker-compose.yml bind-mounts at `target` in `service` (or at a parent of it)."""
    target_path = PurePosixPath(target)
    best: tuple[PurePosixPath, Path] | None = None
    for volume in services[service].get("volumes", []):
        parts = volume.split(":")
        if len(parts) < 2 or not parts[0].startswith("."):
            continue
        mounted = PurePosixPath(parts[1])
        if (target_path == mounted or mounted in target_path.parents) and \
                (best is None or len(mounted.parts) > len(best[0].parts)):
            best = (mounted, REPO / parts[0] / target_path.relative_to(mounted))
    assert best, f"{service} mounts nothing from the repository at {target}"
    return best[1].resolve()


def _known_metric_names() -> set[str]:
    names = set(WORKER_METRICS) | {h + suffix for h in WORKER_HISTOGRAMS
                                  for suffix in ("_bucket", "_sum", "_count")}
    for path in sorted(RULES.glob("*.yml")):
        for group in _yaml(path)["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    names.add(rule["record"])
                names |= set(METRIC_NAME.findall(rule["expr"]))
    return names


# --- Grafana -----------------------------------------------------------------------------------

def test_datasources_point_at_the_compose_services_and_the_anomaly_index(datasources, services):
    prometheus = datasources["stockanomaly-prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    elasticsearch = datasources["stockanomaly-elasticsearch"]
    assert elasticsearch["type"] == "elasticsearch"
    assert elasticsearch["url"] == "http://elasticsearch:9200"
    assert elasticsearch["jsonData"]["index"] == ANOMALY_INDEX == "stockanomaly-anomalies-*"
    assert elasticsearch["jsonData"]["timeField"] == "ts_event"
    assert ANOMALY_MAPPINGS["properties"]["ts_event"]["type"] in {"date", "date_nanos"}
    for field in ("logMessageField", "logLevelField"):
        assert elasticsearch["jsonData"][field] in ANOMALY_FIELDS
    assert {"prometheus", "elasticsearch"} <= set(services)
    assert sum(bool(d.get("isDefault")) for d in datasources.values()) == 1


def test_provisioning_paths_match_the_compose_mounts(services):
    assert _mount_source(services, "grafana", "/etc/grafana/provisioning") == (GRAFANA / "provisioning").resolve()
    config = _yaml(PROVIDERS)
    assert config["apiVersion"] == 1
    providers = config["providers"]
    assert providers and len({p["name"] for p in providers}) == len(providers)
    for provider in providers:
        assert provider["type"] == "file"
        path = provider["options"]["path"]
        host = _mount_source(services, "grafana", path)
        assert host == DASHBOARDS.resolve(), f"provider {provider['name']} reads {path}, which is {host}"
        # Not inside the grafana-data volume, where a stale copy could shadow the repository.
        assert not PurePosixPath(path).is_relative_to("/var/lib/grafana")


def test_dashboards_are_valid_with_stable_unique_uids(dashboards):
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in dashboards.items():
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"]), name
        assert dashboard["title"] and 36 <= dashboard["schemaVersion"] <= 41, name
        assert "id" not in dashboard or dashboard["id"] is None, f"{name}: a fixed numeric id breaks provisioning"
        panels = _panels(dashboard)
        ids = [p["id"] for p in panels]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        for panel in panels:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, (name, panel["title"])
            if panel["type"] != "row":
                assert panel.get("targets"), (name, panel["title"])
                assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_panel_uses_a_provisioned_datasource_by_uid(dashboards, datasources):
    for name, dashboard in dashboards.items():
        for panel in _panels(dashboard):
            refs = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            for ref in refs:
                if ref is None and panel["type"] == "row":
                    continue
                assert isinstance(ref, dict), f"{name}/{panel['title']}: datasource by name, not uid"
                assert ref["uid"] in datasources, f"{name}/{panel['title']}: unknown uid {ref['uid']}"
                assert ref["type"] == datasources[ref["uid"]]["type"], f"{name}/{panel['title']}"


def test_overview_has_the_operational_panels(overview):
    exprs = [expr for _, expr in _prometheus_targets(overview)]

    def has(pattern: str) -> bool:
        return any(re.search(pattern, " ".join(e.split())) for e in exprs)

    assert has(r"rate\(stockanomaly_trades_processed_total\["), "trades/s throughput"
    for quantile in ("0.5", "0.99"):
        assert has(rf"histogram_quantile\({quantile}, sum by \(le\) \(rate\(stockanomaly_batch_seconds_bucket\["), \
            f"p{quantile} latency"
    assert has(r"stockanomaly_consumer_lag"), "consumer lag"
    assert has(r"by \(partition\).*stockanomaly_consumer_lag"), "consumer lag per partition"
    assert has(r"by \(topic\).*stockanomaly_indexer_lag"), "the indexer's lag per topic"
    assert has(r"by \(instance, topic\).*stockanomaly_notifier_lag"), "each notifier's lag per topic"
    assert has(r"stockanomaly_indexer_stalled_seconds") and has(r"stockanomaly_notifier_stalled_seconds"), \
        "the indexer and notifier stuck"
    assert has(r"sum by \(detector\) \(rate\(stockanomaly_anomalies_total(\{[^}]*\})?\["), "anomaly rate by detector"
    assert has(r"sum by \(reason\) \(rate\(stockanomaly_dead_letters_total\["), "dead letters by reason"
    assert has(r"stockanomaly_elasticsearch_failures_total"), "Elasticsearch write failures"
    assert has(r"stockanomaly_elasticsearch_retries_total"), "Elasticsearch write retries"


def test_overview_lists_recent_anomalies_from_elasticsearch(overview):
    tables = [p for p in _panels(overview)
              if p["type"] == "table" and p["datasource"]["uid"] == "stockanomaly-elasticsearch-ingested"]
    assert len(tables) == 1
    table = tables[0]
    (target,) = table["targets"]
    assert target["timeField"] == "ingested_at"  # when indexed: a replayed 2025 day shows in now-6h
    assert target["query"] == "detector:($detector) AND symbol:($symbol)"
    assert [m["type"] for m in target["metrics"]] == ["raw_data"]
    assert target["bucketAggs"] == []
    shown = next(t for t in table["transformations"] if t["id"] == "filterFieldsByName")
    names = shown["options"]["include"]["names"]
    assert {"ts_event", "symbol", "detector", "score", "reason"} <= set(names)
    assert set(names) <= ANOMALY_FIELDS, set(names) - ANOMALY_FIELDS


def test_the_indexed_time_datasource_reads_the_anomaly_index_by_ingested_at(datasources):
    indexed = datasources["stockanomaly-elasticsearch-ingested"]
    assert indexed["type"] == "elasticsearch" and indexed["url"] == "http://elasticsearch:9200"
    assert indexed["jsonData"]["index"] == ANOMALY_INDEX
    assert indexed["jsonData"]["timeField"] == "ingested_at"
    assert ANOMALY_MAPPINGS["properties"]["ingested_at"]["type"] in {"date", "date_nanos"}


def test_overview_filters_by_symbol_and_detector_variables(overview):
    variables = {v["name"]: v for v in overview["templating"]["list"]}
    assert set(variables) == {"detector", "symbol"}
    detector = variables["detector"]
    assert detector["datasource"]["uid"] == "stockanomaly-prometheus"
    assert detector["query"]["query"] == "label_values(stockanomaly_anomalies_total, detector)"
    symbol = variables["symbol"]
    assert symbol["datasource"]["uid"] == "stockanomaly-elasticsearch-ingested"
    assert json.loads(symbol["query"]) == {"find": "terms", "field": "symbol", "size": 500}
    assert ANOMALY_MAPPINGS["properties"]["symbol"]["type"] == "keyword"  # terms need a keyword
    for v in variables.values():
        assert v["includeAll"] and v["multi"]
    # Every per-detector Prometheus series follows the detector variable.
    per_detector = [e for _, e in _prometheus_targets(overview) if "stockanomaly_anomalies_total" in e
                    or "anomaly_ratio" in e]
    assert per_detector and all('detector=~"$detector"' in e for e in per_detector)


def test_overview_annotates_anomalies_from_elasticsearch(overview):
    (mine,) = [a for a in overview["annotations"]["list"] if a.get("name") == "Anomalies"]
    assert mine["datasource"]["uid"] == "stockanomaly-elasticsearch-ingested"
    assert mine["timeField"] == "ingested_at"
    assert mine["query"] == "detector:($detector) AND symbol:($symbol) AND severity:(medium OR high)"
    assert {mine["textField"], mine["tagsField"], "detector", "symbol", "severity"} <= ANOMALY_FIELDS


def test_dashboards_load_into_grafanas_own_model(dashboards):
    """grafana-foundation-sdk (Grafana's SDK) reads each dashboard into its typed model and writes
    back what it models: nothing it knows is lost or mistyped (plugin-specific keys it does not model,
    such as an Elasticsearch annotation's query, are checked by the tests above)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    for name, dashboard in dashboards.items():
        back = json.loads(json.dumps(Dashboard.from_json(dashboard), cls=JSONEncoder))
        assert (back["uid"], back["title"], back["time"]) == (dashboard["uid"], dashboard["title"], dashboard["time"])
        assert [(v["name"], v["datasource"], v["query"]) for v in back["templating"]["list"]] == \
            [(v["name"], v["datasource"], v["query"]) for v in dashboard["templating"]["list"]], name
        assert [(a["name"], a["datasource"]) for a in back["annotations"]["list"]] == \
            [(a["name"], a["datasource"]) for a in dashboard["annotations"]["list"]], name
        assert [(p["id"], p["type"], p["title"], p["gridPos"], p.get("targets")) for p in back["panels"]] == \
            [(p["id"], p["type"], p["title"], p["gridPos"], p.get("targets")) for p in dashboard["panels"]], name


def test_every_promql_expression_uses_known_metrics(dashboards):
    known = _known_metric_names()
    for name, dashboard in dashboards.items():
        for title, expr in _prometheus_targets(dashboard):
            used = set(METRIC_NAME.findall(expr))
            assert used, f"{name}/{title}: no stockanomaly metric in {expr!r}"
            assert used <= known, f"{name}/{title}: unknown metric(s) {sorted(used - known)}"


def test_every_promql_expression_parses(dashboards, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/services.sh installs it)")
    rules = [{"record": f"check:expr_{i}", "expr": GRAFANA_VARIABLE.sub("5m", expr)}
             for i, (_, expr) in enumerate(
                 pair for dashboard in dashboards.values() for pair in _prometheus_targets(dashboard))]
    path = tmp_path / "dashboard_exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Kibana ------------------------------------------------------------------------------------

def _kibana_version(services: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(p) for p in services["kibana"]["image"].rsplit(":", 1)[1].split("."))


def test_kibana_objects_have_the_import_format(kibana_objects, services):
    kibana = _kibana_version(services)
    keys = [(o["type"], o["id"]) for o in kibana_objects]
    assert len(set(keys)) == len(keys), "duplicate saved object"
    for obj in kibana_objects:
        missing = {"id", "type", "attributes", "references", "coreMigrationVersion",
                   "typeMigrationVersion"} - set(obj)
        assert not missing, f"{obj.get('id')}: missing {missing}"
        assert isinstance(obj["attributes"], dict) and obj["attributes"].get("title"), obj["id"]
        for field in ("coreMigrationVersion", "typeMigrationVersion"):
            match = SEMVER.match(obj[field])
            assert match, f"{obj['id']}: {field} {obj[field]!r}"
            # A version newer than the Kibana that imports it is rejected on import.
            assert tuple(map(int, match.groups())) <= kibana, f"{obj['id']}: {field} newer than Kibana"
        for ref in obj["references"]:
            assert set(ref) == {"id", "name", "type"}, obj["id"]


def test_every_reference_resolves_within_the_file(kibana_objects):
    present = {(o["type"], o["id"]) for o in kibana_objects}
    for obj in kibana_objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in present, f"{obj['id']}: dangling reference {ref}"


def test_the_data_view_is_the_anomaly_index(kibana_objects):
    (view,) = _by_type(kibana_objects, "index-pattern")
    assert view["attributes"]["title"] == ANOMALY_INDEX
    assert view["attributes"]["timeFieldName"] == "ts_event"
    for field in ("fields", "fieldFormatMap", "fieldAttrs", "runtimeFieldMap"):
        if field in view["attributes"]:
            json.loads(view["attributes"][field])
    assert set(json.loads(view["attributes"].get("fieldFormatMap", "{}"))) <= ANOMALY_FIELDS


def test_the_saved_search_lists_anomalies_newest_first(kibana_objects):
    (search,) = _by_type(kibana_objects, "search")
    attributes = search["attributes"]
    assert attributes["columns"] == ["symbol", "detector", "severity", "score", "reason"]
    assert set(attributes["columns"]) <= ANOMALY_FIELDS
    assert attributes["sort"] == [["ts_event", "desc"]]
    source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
    refs = {r["name"]: r for r in search["references"]}
    assert refs[source["indexRefName"]]["type"] == "index-pattern"


def test_the_dashboard_embeds_the_saved_search(kibana_objects):
    (dashboard,) = _by_type(kibana_objects, "dashboard")
    attributes = dashboard["attributes"]
    json.loads(attributes["optionsJSON"])
    json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
    panels = json.loads(attributes["panelsJSON"])
    refs = {r["name"]: r for r in dashboard["references"]}
    indexes = [p["panelIndex"] for p in panels]
    assert len(set(indexes)) == len(indexes)
    for panel in panels:
        assert panel["gridData"]["i"] == panel["panelIndex"]
        assert panel["gridData"]["x"] + panel["gridData"]["w"] <= 48
        if "panelRefName" in panel:  # by reference: "<panelIndex>:<panelRefName>"
            assert f"{panel['panelIndex']}:{panel['panelRefName']}" in refs, panel["panelIndex"]
        else:  # by value (Lens): its own references, repeated on the dashboard with the prefix
            lens = panel["embeddableConfig"]["attributes"]
            assert panel["type"] == "lens" and lens["type"] == "lens"
            for ref in lens["references"]:
                assert refs[f"{panel['panelIndex']}:{ref['name']}"]["id"] == ref["id"]
            for layer in lens["state"]["datasourceStates"]["formBased"]["layers"].values():
                assert set(layer["columnOrder"]) == set(layer["columns"])
                for column in layer["columns"].values():
                    assert column["sourceField"] in ANOMALY_FIELDS | {"___records___"}
    search_ids = {o["id"] for o in _by_type(kibana_objects, "search")}
    embedded = {refs[f"{p['panelIndex']}:{p['panelRefName']}"]["id"] for p in panels
                if p["type"] == "search" and "panelRefName" in p}
    assert embedded == search_ids


def test_kibana_setup_imports_the_mounted_file_once_kibana_is_healthy(services):
    setup = services["kibana-setup"]
    assert setup["depends_on"]["kibana"]["condition"] == "service_healthy"
    assert setup["restart"] == "no"
    script = "\n".join(setup["command"]) if isinstance(setup["command"], list) else setup["command"]
    match = re.search(r"--form '?file=@([^\s'\")]+)", script)
    assert match, "no multipart file upload in kibana-setup"
    assert _mount_source(services, "kibana-setup", match.group(1)) == KIBANA_NDJSON.resolve()
    assert "http://kibana:5601/api/saved_objects/_import?overwrite=true" in script
    assert re.search(r"-H '?kbn-xsrf: true'?", script)
    # A failed import must fail the one-shot, not pass silently.
    assert "success" in script and "exit 1" in script


def test_every_alert_has_a_runbook_url_that_lands_on_its_row_of_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["global"]["external_labels"]["runbook_base"]
    alerts = [rule for path in sorted(RULES.glob("*.yml")) for group in yaml.safe_load(path.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule]
    assert len(alerts) >= 8
    for rule in alerts:
        anchor = f"alert-{rule['alert'].lower()}"
        assert rule["annotations"]["runbook_url"] == f"{{{{ $externalLabels.runbook_base }}}}#{anchor}", rule["alert"]
        assert f'<a id="{anchor}"></a>`{rule["alert"]}`' in readme, f"no README row for {rule['alert']}"


def test_the_host_network_scrape_config_labels_the_worker_port_range_as_a_span() -> None:
    """Spare ports of the range (fewer replicas than ports) must not raise StockanomalyTargetDown:
    the rule tells them apart by this label (its promtool test covers the rule)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("host_network", REPO / "deploy" / "prometheus" / "host_network.py")
    assert spec is not None and spec.loader is not None
    host_network = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host_network)
    text = host_network.render((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text(), {
        "PROMETHEUS_PORT": "29090", "ALERTMANAGER_PORT": "29094", "STOCKANOMALY_METRICS_PORT": "29100",
        "STOCKANOMALY_METRICS_PORT_SPAN": "4", "STOCKANOMALY_INDEXER_METRICS_PORT": "29104"})
    jobs = {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}
    [workers] = jobs["stockanomaly-worker"]["static_configs"]
    assert workers["targets"] == [f"worker:{port}" for port in range(29100, 29104)]
    assert workers["labels"] == {"port_span": "true"}
    assert "port_span" not in str(jobs["stockanomaly-indexer"])
