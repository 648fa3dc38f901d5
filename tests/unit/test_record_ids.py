"""Ids by a unique prefix, as git takes commit ids: `show` and `label` take the first 8 or more hex
digits of an anomaly's or incident's id (any case), looked up where the records are; `label` records
the whole id."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from builders import T0
from click.testing import CliRunner

from adapters.elasticsearch.query import ElasticsearchRecords
from adapters.files.records import ReplayRecords
from adapters.files.verdicts import load_verdicts
from application.record_ids import AmbiguousId, NotFound, resolve_record_id
from domain.errors import ConfigError
from domain.incidents import Incident
from domain.model import Anomaly
from entrypoints.cli import main

FIRST = "9d302921bbad48840e9783c0da2d2251"
TWIN = "9d302921bbd4c275f5b00afdb1ce91dd"  # its first 10 digits are FIRST's
COUSIN = "9d302921b32784a72beb1886dd1ac1c9"  # its first 9 (and a 10th of its own)
LONE = "c0ffee0012345678900000000000abcd"
INCIDENT = "ab12cd3400000000000000000000ffff"
NOT_STORED = "0" * 32


def anomaly(record_id: str, k: int) -> Anomaly:
    made = Anomaly.of_print("high_volume", "NVDA", T0 + k, 100.0 + k, 50_000, 2, 7, k, 6.5, f"size 50,000 ({k})")
    return replace(made, id=record_id)


ANOMALIES = [anomaly(i, k) for k, i in enumerate((FIRST, TWIN, COUSIN, LONE), 1)]
AN_INCIDENT = Incident(id=INCIDENT, symbol="NVDA", start_ns=T0 + 4, end_ns=T0 + 4, size=1, members=(LONE,),
                       detectors=("high_volume",), score=6.5, severity="high", headline="high_volume: size 50,000 (4)")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A replay's --out file and the incidents file beside it."""
    path = tmp_path / "anomalies.jsonl"
    path.write_text("".join(json.dumps(a.to_dict()) + "\n" for a in ANOMALIES))
    (tmp_path / "anomalies.incidents.jsonl").write_text(json.dumps(AN_INCIDENT.to_dict()) + "\n")
    return path


@pytest.fixture(autouse=True)
def nowhere_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here looks anywhere but where it says: an Elasticsearch asked would be one nothing listens at."""
    monkeypatch.delenv("STOCKANOMALY_OUT", raising=False)
    monkeypatch.setenv("ELASTICSEARCH_URL", "http://127.0.0.1:1")


# -- resolving, over a replay's files -----------------------------------------------------------------
@pytest.mark.parametrize(("typed", "expected"), [
    (FIRST[:12], FIRST),
    (TWIN[:11].upper(), TWIN),  # hex in any case
    (f"  {COUSIN[:10]} ", COUSIN),
    (LONE[:8], LONE),
    (INCIDENT[:8].upper(), INCIDENT),  # incidents too
    (FIRST.upper(), FIRST),
    (NOT_STORED, NOT_STORED),  # whole: not looked up here (show looks, and says it is not there)
], ids=["unique", "mixed-case", "spaces", "eight-digits", "incident", "whole", "whole-not-stored"])
def test_a_unique_start_of_an_id_names_the_whole_id(out: Path, typed: str, expected: str) -> None:
    assert resolve_record_id(typed, ReplayRecords(out)) == expected


def test_a_start_several_ids_share_names_how_many_and_a_few_of_them_whole(out: Path) -> None:
    with pytest.raises(AmbiguousId) as raised:
        resolve_record_id(FIRST[:8], ReplayRecords(out))
    assert raised.value.said("here") == (f"'{FIRST[:8]}' starts 3 ids in here: {COUSIN}, {FIRST}, {TWIN}; "
                                         "give more of it")
    with pytest.raises(AmbiguousId) as raised:
        resolve_record_id(FIRST[:10].upper(), ReplayRecords(out))
    assert raised.value.said("here") == f"'{FIRST[:10]}' starts 2 ids in here: {FIRST}, {TWIN}; give more of it"
    many = AmbiguousId("9d302921", 1_204, [COUSIN, FIRST, TWIN])
    assert many.said("there").startswith("'9d302921' starts 1,204 ids in there: ")
    assert many.said("there").endswith(f"{TWIN} and 1,201 more; give more of it")


def test_a_start_no_id_has_is_said_not_found(out: Path) -> None:
    with pytest.raises(NotFound) as raised:
        resolve_record_id("9d302922", ReplayRecords(out))
    assert raised.value.said("here") == "no anomaly or incident id starts with '9d302922' in here"


@pytest.mark.parametrize(("typed", "said"), [
    ("9d30292", "'9d30292' is too short for an id: give at least 8 of its 32 hex digits"),
    ("", "'' is not an anomaly or incident id (32 hex digits, or the first 8 or more of them, as replay --out "
         "and query show)"),
    ("9d302921-bb", "'9d302921-bb' is not an anomaly or incident id (32 hex digits, or the first"),
    ("ev000001", "'ev000001' is not an anomaly or incident id (32 hex digits"),
    (FIRST + "0", f"'{FIRST}0' is not an anomaly or incident id"),  # longer than any id
], ids=["seven-digits", "empty", "not-hex", "a-label-id", "too-long"])
def test_what_cannot_start_an_id_is_refused_before_anything_is_looked_up(typed: str, said: str) -> None:
    class Unasked:
        def ids_starting(self, prefix: str, most: int) -> tuple[int, list[str]]:
            raise AssertionError("looked up")

    with pytest.raises(ConfigError) as raised:
        resolve_record_id(typed, Unasked())  # type: ignore[arg-type]
    assert str(raised.value).startswith(said)


def test_a_replays_files_give_the_ids_starting_with_a_prefix_anomalies_and_incidents_alike(out: Path) -> None:
    records = ReplayRecords(out)
    assert records.ids_starting("9d302921", 2) == (3, [COUSIN, FIRST])
    assert records.ids_starting("ab12cd34", 3) == (1, [INCIDENT])
    assert records.ids_starting("ffffffff", 3) == (0, [])


# -- resolving, in Elasticsearch ----------------------------------------------------------------------
class Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default)


class FakeSearch:
    """client.search over two indices' ids: the prefix query's matches, in id order, `size` of them."""

    def __init__(self, ids: dict[str, list[str]]) -> None:
        self.ids = ids
        self.asked: list[dict[str, Any]] = []

    def search(self, *, index: str, **body: Any) -> Answer:
        self.asked.append({"index": index, **body})
        prefix = body["query"]["prefix"]["id"]["value"]
        found = sorted(i for i in self.ids[index.removesuffix("-*")] if i.startswith(prefix))
        return Answer({"hits": {"total": {"value": len(found), "relation": "eq"},
                                "hits": [{"_id": i, "_source": {"id": i}} for i in found[:body["size"]]]}})

    def close(self) -> None:
        pass


def test_elasticsearch_is_asked_for_ids_by_a_prefix_query_on_the_keyword_id_in_both_indices() -> None:
    from adapters.elasticsearch.mapping import ANOMALY_MAPPINGS, INCIDENT_MAPPINGS

    # A prefix query reads the terms of a keyword field: the templates' ids are keywords.
    assert ANOMALY_MAPPINGS["properties"]["id"] == INCIDENT_MAPPINGS["properties"]["id"] == {"type": "keyword"}
    client = FakeSearch({"a": [FIRST, TWIN, COUSIN, LONE], "i": ["9d302921" + "e" * 24, INCIDENT]})
    records = ElasticsearchRecords(client, anomalies_prefix="a", incidents_prefix="i")  # type: ignore[arg-type]
    assert records.ids_starting("9d302921", 3) == (4, [COUSIN, FIRST, TWIN])
    assert [(q["index"], q["query"], q["size"], q["track_total_hits"]) for q in client.asked] == [
        ("a-*", {"prefix": {"id": {"value": "9d302921"}}}, 3, True),
        ("i-*", {"prefix": {"id": {"value": "9d302921"}}}, 3, True)]
    assert records.ids_starting("ab12cd34", 3) == (1, [INCIDENT])
    assert resolve_record_id("AB12CD34", records) == INCIDENT
    with pytest.raises(AmbiguousId, match="starts 4 ids"):
        resolve_record_id("9d302921", records)


# -- show ---------------------------------------------------------------------------------------------
def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output.strip()


@pytest.mark.parametrize(("typed", "kind", "expected"), [
    (FIRST[:11], "anomaly", FIRST),
    (TWIN[:12].upper(), "anomaly", TWIN),
    (LONE[:8].upper(), "anomaly", LONE),
    (INCIDENT[:8], "incident", INCIDENT),
], ids=["unique", "mixed-case", "eight-digits", "incident"])
def test_show_takes_a_unique_start_of_an_id(out: Path, typed: str, kind: str, expected: str) -> None:
    code, text = run("show", typed, "--file", str(out), "--json")
    assert code == 0, text
    shown = json.loads(text)
    assert shown["kind"] == kind and shown[kind]["id"] == expected
    assert run("show", typed, "--file", str(out), "--json") == run("show", expected, "--file", str(out), "--json")
    code, text = run("show", typed, "--file", str(out))
    assert code == 0 and f"{kind} {expected}" in text  # the whole id, as for one typed whole


@pytest.mark.parametrize(("typed", "said"), [
    (FIRST[:8], f"'{FIRST[:8]}' starts 3 ids in {{out}}: {COUSIN}, {FIRST}, {TWIN}; give more of it"),
    ("9D302922", "no anomaly or incident id starts with '9d302922' in {out}"),
    (NOT_STORED, f"no anomaly or incident has id '{NOT_STORED}' in {{out}}"),
    (FIRST[:7], f"'{FIRST[:7]}' is too short for an id: give at least 8 of its 32 hex digits"),
    ("9d30292x", "'9d30292x' is not an anomaly or incident id (32 hex digits, or the first 8 or more of them, as "
                 "replay --out and query show)"),
], ids=["ambiguous", "none", "whole-none", "too-short", "not-hex"])
def test_show_refuses_what_names_no_one_record_in_one_line(out: Path, typed: str, said: str) -> None:
    code, text = run("show", typed, "--file", str(out))
    assert (code, text) == (1, "Error: " + said.format(out=out))


def test_show_finds_a_short_id_where_replay_wrote_by_default(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKANOMALY_OUT", str(out))
    code, text = run("show", LONE[:8], "--json")
    assert code == 0 and json.loads(text)["anomaly"]["id"] == LONE


# -- label --------------------------------------------------------------------------------------------
def test_label_records_the_whole_id_of_each_short_one(out: Path, tmp_path: Path) -> None:
    verdicts = tmp_path / "v.jsonl"
    code, text = run("label", "--confirmed", FIRST[:12].upper(), INCIDENT[:8], LONE, "--records", str(out),
                     "--file", str(verdicts))
    assert code == 0, text
    assert text.splitlines() == [f"{i} marked confirmed in {verdicts}" for i in (FIRST, INCIDENT, LONE)]
    assert [json.loads(line)["id"] for line in verdicts.read_text().splitlines()] == [FIRST, INCIDENT, LONE]
    assert load_verdicts(verdicts) == {FIRST: "confirmed", INCIDENT: "confirmed", LONE: "confirmed"}
    # A short id and its whole one are one id: one verdict.
    code, text = run("label", "--false-positive", TWIN, TWIN[:11], "--records", str(out), "--file", str(verdicts))
    assert code == 0 and text == f"{TWIN} marked false positive in {verdicts}"
    assert json.loads(verdicts.read_text().splitlines()[-1])["id"] == TWIN and len(verdicts.read_text().splitlines()) == 4


@pytest.mark.parametrize(("typed", "said"), [
    (FIRST[:8], f"'{FIRST[:8]}' starts 3 ids in {{out}}: {COUSIN}, {FIRST}, {TWIN}; give more of it"),
    ("9d302922", "no anomaly or incident id starts with '9d302922' in {out}"),
    (FIRST[:7].upper(), f"'{FIRST[:7]}' is too short for an id: give at least 8 of its 32 hex digits"),
    ("9d30292x", "'9d30292x' is not an anomaly or incident id (32 hex digits, or the first 8 or more of them, as "
                 "replay --out and query show)"),
], ids=["ambiguous", "none", "too-short", "not-hex"])
def test_label_writes_nothing_when_an_id_names_no_one_record(out: Path, tmp_path: Path, typed: str, said: str) -> None:
    verdicts = tmp_path / "v.jsonl"
    code, text = run("label", "--confirmed", typed, "--records", str(out), "--file", str(verdicts))
    assert (code, text) == (1, "Error: " + said.format(out=out))
    code, text = run("label", "--confirmed", LONE[:8], typed, "--records", str(out), "--file", str(verdicts))
    assert (code, text) == (1, "Error: " + said.format(out=out) + "; nothing written")
    assert not verdicts.exists()


def test_a_whole_id_is_checked_when_asked_and_a_stored_one_passes(out: Path) -> None:
    assert resolve_record_id(LONE.upper(), ReplayRecords(out), whole_too=True) == LONE
    assert resolve_record_id(INCIDENT, ReplayRecords(out), whole_too=True) == INCIDENT
    with pytest.raises(NotFound) as raised:
        resolve_record_id(NOT_STORED, ReplayRecords(out), whole_too=True)
    assert raised.value.said("here") == f"no anomaly or incident has the id '{NOT_STORED}' in here"


TYPO = LONE[:20] + "f" + LONE[21:]  # one digit off inside a whole, stored id


def test_label_refuses_a_whole_id_the_records_file_given_does_not_hold(out: Path, tmp_path: Path) -> None:
    verdicts = tmp_path / "v.jsonl"
    assert TYPO != LONE and len(TYPO) == 32
    code, text = run("label", "--confirmed", TYPO, "--records", str(out), "--file", str(verdicts))
    assert (code, text) == (1, f"Error: no anomaly or incident has the id '{TYPO}' in {out}")
    code, text = run("label", "--confirmed", LONE, TYPO.upper(), "--records", str(out), "--file", str(verdicts))
    assert (code, text) == (1, f"Error: no anomaly or incident has the id '{TYPO}' in {out}; nothing written")
    assert not verdicts.exists()
    assert run("label", "--confirmed", LONE, INCIDENT, "--records", str(out), "--file", str(verdicts)) == \
        (0, f"{LONE} marked confirmed in {verdicts}\n{INCIDENT} marked confirmed in {verdicts}")


def test_label_checks_a_whole_id_where_replay_wrote_by_default_when_that_file_is_there(
        out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = tmp_path / "v.jsonl"
    monkeypatch.setenv("STOCKANOMALY_OUT", str(out))
    code, text = run("label", "--false-positive", TYPO, "--file", str(verdicts))
    assert (code, text) == (1, f"Error: no anomaly or incident has the id '{TYPO}' in {out}")
    assert not verdicts.exists()
    # Not written yet (replay will): no file to check against, so the id is recorded as given, as without one.
    monkeypatch.setenv("STOCKANOMALY_OUT", str(tmp_path / "later.jsonl"))
    assert run("label", "--false-positive", TYPO, "--file", str(verdicts)) == \
        (0, f"{TYPO} marked false positive in {verdicts}")


def test_label_checks_a_whole_id_in_elasticsearch_only_when_es_url_names_it(tmp_path: Path) -> None:
    verdicts = tmp_path / "v.jsonl"
    code, text = run("label", "--confirmed", NOT_STORED, "--es-url", "http://127.0.0.1:1", "--file", str(verdicts))
    assert code == 1 and text.startswith("Error: Elasticsearch is not reachable at http://127.0.0.1:1")
    assert text.endswith("(ids are looked up there; a replay's anomalies and incidents: --records, its --out file)")
    assert not verdicts.exists()


def test_label_looks_short_ids_up_where_replay_wrote_by_default_and_whole_ones_nowhere(
        out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = tmp_path / "v.jsonl"
    monkeypatch.setenv("STOCKANOMALY_OUT", str(out))
    assert run("label", "--confirmed", COUSIN[:10], "--file", str(verdicts)) == \
        (0, f"{COUSIN} marked confirmed in {verdicts}")
    monkeypatch.delenv("STOCKANOMALY_OUT")
    # A whole id is recorded as given (copied from a table, a webhook, Kibana): Elasticsearch is not asked...
    assert run("label", "--confirmed", NOT_STORED, "--file", str(verdicts)) == \
        (0, f"{NOT_STORED} marked confirmed in {verdicts}")
    # ...while a short one must be, and where it cannot be, that is said, with where else to look.
    code, text = run("label", "--confirmed", NOT_STORED, LONE[:8], "--file", str(verdicts))
    assert code == 1 and text.startswith("Error: Elasticsearch is not reachable at http://127.0.0.1:1")
    assert text.endswith("(short ids are looked up there; a replay's anomalies and incidents: --records, its --out "
                         "file); nothing written")
    assert load_verdicts(verdicts) == {COUSIN: "confirmed", NOT_STORED: "confirmed"}
