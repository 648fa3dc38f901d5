"""One configuration source: defaults, the environment, explicit values; bad values in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from domain.detectors import DETECTOR_NAMES
from domain.errors import ConfigError
from entrypoints.cli import main
from entrypoints.container import build_container
from entrypoints.settings import load_settings


def test_the_environment_overrides_defaults_and_explicit_values_override_both(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "10.0.0.5:9092")
    monkeypatch.setenv("STOCKANOMALY_PARTITIONS", "6")
    monkeypatch.setenv("STOCKANOMALY_TAKE_WITHIN", "0.005")
    monkeypatch.setenv("STOCKANOMALY_INDEXER_TAKE_WITHIN", "0.02")
    settings = load_settings(partitions=None, take_max=64)  # None: a flag not given
    assert (settings.partitions, settings.take_within, settings.take_max) == (6, 0.005, 64)
    streaming = build_container().streaming()
    assert (streaming.bootstrap, streaming.partitions, streaming.take_within) == ("10.0.0.5:9092", 6, 0.005)
    assert streaming.indexer_take_within == 0.02 and load_settings(indexer_take_within=0).indexer_take_within == 0
    assert build_container(partitions=2).engine().pool_of("NVDA") in (0, 1)  # pools follow the partitions


def test_a_take_in_hand_at_a_stop_has_5_s_unless_the_environment_says_otherwise(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert load_settings().streaming().stop_grace == 5.0  # with docker's 10 s before its SIGKILL in mind
    monkeypatch.setenv("STOCKANOMALY_STOP_GRACE", "12.5")
    assert build_container().streaming().stop_grace == 12.5


@pytest.mark.parametrize("variable, value, expected", [
    ("STOCKANOMALY_CHUNK_SIZE", "abc", "STOCKANOMALY_CHUNK_SIZE: Input should be a valid integer"),
    # A CSV read block of 128 bytes a trade: over 16.7M trades it overflowed Arrow's int32 (a traceback).
    ("STOCKANOMALY_CHUNK_SIZE", "20000000", "STOCKANOMALY_CHUNK_SIZE: Input should be less than or equal to 1048576"),
    ("STOCKANOMALY_STATE", "redis", "STOCKANOMALY_STATE: Input should be 'memory', got 'redis'"),
    ("STOCKANOMALY_PARTITIONS", "0", "STOCKANOMALY_PARTITIONS: Input should be greater than or equal to 1"),
    ("STOCKANOMALY_PROCESSING_GUARANTEE", "maybe", "STOCKANOMALY_PROCESSING_GUARANTEE: Input should be"),
    ("STOCKANOMALY_METRICS_PORT", "70000", "STOCKANOMALY_METRICS_PORT: Input should be less than or equal to 65535"),
    ("STOCKANOMALY_SEED", "-1", "STOCKANOMALY_SEED: Input should be greater than or equal to 0"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:abc", "KAFKA_BOOTSTRAP_SERVERS: 'localhost:abc' is not host:port"),
    ("KAFKA_BOOTSTRAP_SERVERS", "h1:9092,h2", "KAFKA_BOOTSTRAP_SERVERS: 'h2' is not host:port"),
    ("ELASTICSEARCH_URL", "garbage", "ELASTICSEARCH_URL: 'garbage' is not an http:// or https:// URL with a host"),
    ("ELASTICSEARCH_URL", "http://127.0.0.1:abc", "ELASTICSEARCH_URL: 'http://127.0.0.1:abc' is not a URL"),
    ("STOCKANOMALY_DLQ_TOPIC", "trades", "the trades, dead-letter, anomalies and incidents topics must be four "
                                         "different topics, got trades 'trades', dead-letter 'trades'"),
    ("STOCKANOMALY_SEED", "4294967296", "STOCKANOMALY_SEED: Input should be less than or equal to 4294967295"),
    # Names Kafka would refuse only once a worker asked for them (one too long made it hang).
    ("STOCKANOMALY_TRADES_TOPIC", "", "STOCKANOMALY_TRADES_TOPIC: a topic name is 1 to 249 of the characters"),
    ("STOCKANOMALY_ANOMALIES_TOPIC", "a" * 250, "STOCKANOMALY_ANOMALIES_TOPIC: a topic name is 1 to 249"),
    ("STOCKANOMALY_DLQ_TOPIC", "bad/topic name", "STOCKANOMALY_DLQ_TOPIC: a topic name is"),
    ("STOCKANOMALY_INCIDENTS_TOPIC", "..", "STOCKANOMALY_INCIDENTS_TOPIC: a topic name is"),
    ("STOCKANOMALY_APP_ID", "", "STOCKANOMALY_APP_ID: an app id is 1 to 200 of the characters"),
    ("STOCKANOMALY_APP_ID", "bad id/x", "STOCKANOMALY_APP_ID: an app id is"),
    ("STOCKANOMALY_APP_ID", "a" * 201, "STOCKANOMALY_APP_ID: an app id is"),
    ("STOCKANOMALY_STORE", "nonsense://", "STOCKANOMALY_STORE: choose rocksdb:// (state on disk"),
    ("STOCKANOMALY_STORE", "", "STOCKANOMALY_STORE: choose rocksdb://"),
    ("STOCKANOMALY_DATA_DIR", "", "STOCKANOMALY_DATA_DIR: String should have at least 1 character"),
    ("STOCKANOMALY_METRICS_ADDR", "", "STOCKANOMALY_METRICS_ADDR: String should have at least 1 character"),
    # Refused by Elasticsearch only in the index template, at the indexer's first anomaly.
    ("STOCKANOMALY_ES_REFRESH_INTERVAL", "soon", "STOCKANOMALY_ES_REFRESH_INTERVAL: an Elasticsearch interval is"),
    ("STOCKANOMALY_WORKER_WEB_PORT", "0", "STOCKANOMALY_WORKER_WEB_PORT: Input should be greater than or equal to 1"),
    ("STOCKANOMALY_KAFKA_SESSION_TIMEOUT", "5", "STOCKANOMALY_KAFKA_SESSION_TIMEOUT: Input should be greater than or equal to 6"),
    ("STOCKANOMALY_STOP_GRACE", "-1", "STOCKANOMALY_STOP_GRACE: Input should be greater than or equal to 0"),
    ("STOCKANOMALY_REPLICATION_FACTOR", "0", "STOCKANOMALY_REPLICATION_FACTOR: Input should be greater than or equal to 1"),
    ("STOCKANOMALY_TABLE_STANDBY_REPLICAS", "-1",
     "STOCKANOMALY_TABLE_STANDBY_REPLICAS: Input should be greater than or equal to 0"),
])
def test_a_bad_value_is_one_line_naming_its_variable(monkeypatch, variable: str, value: str,  # type: ignore[no-untyped-def]
                                                     expected: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        build_container()
    assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)
    result = CliRunner().invoke(main, ["replay", "--json"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert expected in result.output


def test_kafka_accepts_every_name_the_settings_accept() -> None:
    longest = load_settings(app_id="a" * 200, trades_topic="t" * 249, anomalies_topic="Anomalies.v2_x-1",
                            store="memory://")
    assert (longest.app_id, longest.trades_topic, longest.store) == ("a" * 200, "t" * 249, "memory://")
    # Faust's longest topic of the worker: its app id, then a table's changelog suffix.
    assert len(f"{longest.app_id}-incident-state-changelog") <= 249


@pytest.mark.parametrize("anomalies, incidents", [("pp", "pp-inc"), ("pp-x", "pp"), ("same", "same")])
def test_index_prefixes_inside_each_others_pattern_are_refused(anomalies: str, incidents: str) -> None:
    settings = load_settings(es_index_prefix=anomalies, es_incidents_prefix=incidents)
    with pytest.raises(ConfigError, match="must differ from STOCKANOMALY_ES_INDEX_PREFIX"):
        settings.check_index_prefixes()
    load_settings(es_index_prefix="pp", es_incidents_prefix="pp.incidents").check_index_prefixes()
    load_settings().check_index_prefixes()


def test_a_bad_option_is_named_by_its_flag_not_the_setting() -> None:
    result = CliRunner().invoke(main, ["query", "--index", "NoSuch"])
    assert result.exit_code == 1 and "--index: invalid Elasticsearch index prefix 'NoSuch'" in result.output
    result = CliRunner().invoke(main, ["tail", "--topic", "a b"])
    assert result.exit_code == 1 and "--topic: a topic name is" in result.output


@pytest.mark.parametrize("value", ["", " ", ","])
def test_a_blank_detectors_variable_means_all_of_them_like_the_other_blank_settings(monkeypatch, value: str) -> None:  # type: ignore[no-untyped-def]
    """`export STOCKANOMALY_DETECTORS=` made every command fail with "no detector selected", where
    the blank thresholds, suppressions and output variables mean their defaults."""
    monkeypatch.setenv("STOCKANOMALY_DETECTORS", value)
    assert load_settings().detectors == ",".join(DETECTOR_NAMES)
    monkeypatch.setenv("STOCKANOMALY_DETECTORS", "high_volume")
    assert load_settings().detectors == "high_volume"
