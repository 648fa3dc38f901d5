"""Analyst feedback: suppression rules (matched, stored, honoured by the detect use case and the
CLI, re-read when the file changes) and verdicts (stored, scored by evaluate)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from builders import S, T0, calm_flow
from click.testing import CliRunner

from adapters.files.suppressions import SuppressionsFile, load_suppressions, save_suppressions
from adapters.files.verdicts import append_verdict, load_verdicts
from adapters.memory import InMemoryTradeSource
from application.evaluate import score_verdicts
from domain.errors import ConfigError
from domain.model import TRADE_DTYPE, Anomaly
from domain.suppressions import Suppression
from entrypoints.cli import main
from entrypoints.container import build_container


def at(local: str, symbol: str = "NVDA", detector: str = "trade_burst") -> Anomaly:
    """An anomaly at a New York time ("2025-05-05T15:55:00")."""
    a = Anomaly.of_print(detector, symbol, T0, 100.0, 100, 1, 1, 1, 1.5, "r")
    return Anomaly(**{**{k: getattr(a, k) for k in Anomaly.__slots__}, "ts_local": f"{local}.000000000-04:00"})


def test_a_rule_matches_every_part_it_names_and_nothing_else() -> None:
    rule = Suppression.of("nvda", "trade_burst", "15:50-16:00", "2025-05-31", "closing imbalance")
    assert rule.matches(at("2025-05-05T15:55:00"))
    assert not rule.matches(at("2025-05-05T16:00:00"))  # the window's end is excluded
    assert not rule.matches(at("2025-05-05T15:49:59"))
    assert not rule.matches(at("2025-06-01T15:55:00"))  # past its last day
    assert not rule.matches(at("2025-05-05T15:55:00", symbol="AAPL"))
    assert not rule.matches(at("2025-05-05T15:55:00", detector="volume_surge"))
    assert Suppression.of(detector="volume_surge").matches(at("2025-05-05T04:00:00", detector="volume_surge"))


def test_a_rules_detector_is_named_in_any_case_as_replay_takes_detectors() -> None:
    rule = Suppression.of(detector=" Trade_Burst ")
    assert rule == Suppression.of(detector="trade_burst")
    assert rule.matches(at("2025-05-05T15:55:00"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "an empty one would silence every anomaly"),
    ({"between": "16:00-15:50"}, "must start before it ends"),
    ({"between": "noon"}, "is not HH:MM-HH:MM"),
    ({"until": "2025-13-01"}, "is not a date"),
    ({"detector": "nope"}, "unknown detector 'nope'"),
])
def test_a_rule_that_makes_no_sense_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Suppression.of(**kwargs)


def test_rules_round_trip_through_their_file_and_a_bad_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    rules = [Suppression.of("NVDA", between="15:50-16:00", note="close"), Suppression.of(detector="volume_surge")]
    save_suppressions(path, rules)
    assert load_suppressions(path) == rules
    assert load_suppressions(tmp_path / "none.json") == []
    path.write_text('{"suppressions": [{"symbol": "A", "colour": "red"}]}')
    with pytest.raises(ConfigError, match=r"rule 1: unknown fields \['colour'\]"):
        load_suppressions(path)
    path.write_text('{"suppressions": [{"symbol": "A"}, {"symbol": 5, "between": 5, "until": 20250101}]}')
    with pytest.raises(ConfigError, match=r"rule 2: between, symbol, until must be text"):
        load_suppressions(path)


def test_a_running_worker_sees_a_changed_file_and_keeps_its_rules_when_the_change_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    save_suppressions(path, [Suppression.of("NVDA")])
    current = SuppressionsFile(path)
    assert [r.symbol for r in current().rules] == ["NVDA"]
    save_suppressions(path, [Suppression.of("NVDA"), Suppression.of("AAPL")])
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse clock
    assert [r.symbol for r in current().rules] == ["NVDA", "AAPL"]
    path.write_text("{not json")
    assert [r.symbol for r in current().rules] == ["NVDA", "AAPL"]


def blocks() -> np.ndarray:
    flows = [calm_flow(15_000, symbol=s, seed=i) for i, s in enumerate(("AAA", "BBB"))]
    trades = np.concatenate(flows).astype(TRADE_DTYPE)
    trades = trades[np.argsort(trades["ts_event"], kind="stable")]
    trades["size"][[20_000, 25_000]] = 400_000
    return trades


def test_suppressed_anomalies_are_judged_but_not_published(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    save_suppressions(path, [Suppression.of("AAA", "high_volume")])
    plain, held = build_container(), build_container(suppressions=str(path))
    everything = plain.replay()(InMemoryTradeSource(blocks(), chunk_size=4_096))
    summary = held.replay()(InMemoryTradeSource(blocks(), chunk_size=4_096))
    found = {a.id: a for a in plain.collected_anomalies().anomalies}
    kept = {a.id for a in held.collected_anomalies().anomalies}
    suppressed = {i for i, a in found.items() if a.symbol == "AAA" and a.detector == "high_volume"}
    assert suppressed and kept == set(found) - suppressed  # the rest unchanged, ids included
    assert summary.suppressed == {Suppression.of("AAA", "high_volume").id: len(suppressed)}
    assert summary.anomalies == everything.anomalies - len(suppressed)


def test_a_plain_replay_honours_the_rules_suppress_wrote_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `suppress` writes ./suppressions.json and `suppressions` lists it as in force: so is it for replay.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOCKANOMALY_SUPPRESSIONS", raising=False)
    before = json.loads(invoke("replay", "--json")[1])
    assert before["suppressed"] == {} and before["by_detector"]["price_change"] > 0
    assert invoke("suppress", "--detector", "price_change")[0] == 0
    after = json.loads(invoke("replay", "--json")[1])
    assert after["suppressed"] == {Suppression.of(detector="price_change").id: before["by_detector"]["price_change"]}
    assert after["anomalies"] == before["anomalies"] - before["by_detector"]["price_change"]
    assert after["suppressions_file"] == "suppressions.json" and "suppressions_file" not in before
    said = "suppressed by suppressions.json (judged, not published; --no-suppressions shows them)"
    assert said in invoke("replay")[1]
    # Everything the detectors found, the rules left in place: what the run before the rule reported.
    unheld = json.loads(invoke("replay", "--json", "--no-suppressions")[1])
    assert (unheld["anomalies"], unheld["by_detector"], unheld["suppressed"]) == (
        before["anomalies"], before["by_detector"], {})
    assert "suppressions_file" not in unheld and load_suppressions(tmp_path / "suppressions.json")
    code, out = invoke("replay", "--no-suppressions", "--suppressions", "suppressions.json")
    assert code == 2 and "--suppressions and --no-suppressions: choose one" in out
    code, out = invoke("replay", "--suppressions", "typo.json")
    assert code == 2 and "'typo.json' does not exist" in out
    monkeypatch.setenv("STOCKANOMALY_SUPPRESSIONS", "typo.json")  # it ran with no rules, saying nothing
    code, out = invoke("replay")
    assert (code, out) == (1, "Error: STOCKANOMALY_SUPPRESSIONS names typo.json, which is not a file")
    monkeypatch.delenv("STOCKANOMALY_SUPPRESSIONS")
    (tmp_path / "suppressions.json").write_text("{broken")  # every replay in this folder stops: say the way out
    code, out = invoke("replay")
    assert code == 1 and out.startswith("Error: suppressions file suppressions.json is not readable JSON: ")
    assert out.endswith(" (--no-suppressions replays without it)") and "\n" not in out
    assert invoke("replay", "--json", "--no-suppressions")[0] == 0


def test_verdicts_round_trip_the_last_one_counts_and_evaluate_scores_them(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    a, b, c = (Anomaly.of_print(d, "NVDA", T0 + k * S, 1.0, 1, 1, 1, k, 1.2, "r")
               for k, d in enumerate(("high_volume", "high_volume", "trade_burst")))
    append_verdict(path, a.id, "false_positive")
    append_verdict(path, a.id, "confirmed", note="on reflection")
    append_verdict(path, b.id, "false_positive")
    assert load_verdicts(path) == {a.id: "confirmed", b.id: "false_positive"}
    table = score_verdicts([a, b, c], load_verdicts(path))
    assert table["high_volume"] == {"detections": 2, "confirmed": 1, "false_positive": 1, "unreviewed": 0,
                                    "precision": 0.5}
    assert table["trade_burst"]["precision"] is None and table["all"]["detections"] == 3
    with pytest.raises(ConfigError, match="is not an anomaly or incident id"):
        append_verdict(path, "abc", "confirmed")
    path.write_text(path.read_text() + "garbage\n")
    with pytest.raises(ConfigError, match="line 4: not a verdict"):
        load_verdicts(path)


ANOMALY_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("line", "said"), [
    ('{"id": 123, "verdict": "confirmed"}', "id 123 is not an anomaly or incident id"),  # was: 'not found', in silence
    ('{"id": null, "verdict": "confirmed"}', "id None is not an anomaly or incident id"),
    ('{"id": "ev000001", "verdict": "confirmed"}', "id 'ev000001' is not an anomaly or incident id"),
    (f'{{"id": "{ANOMALY_ID}"}}', "lacks verdict"),
    ('{"note": "x"}', "lacks id and verdict"),
    (f'{{"id": "{ANOMALY_ID}", "verdict": "fp"}}', "verdict 'fp' is not one of confirmed, false_positive"),
    (f'{{"id": "{ANOMALY_ID}", "verdict": true}}', "verdict True is not one of"),
    ('[1, 2]', "not a verdict written by stockanomaly label (a JSON object with id and verdict, not list)"),
    (f'{{"id": "{ANOMALY_ID}", "verdict": "confirmed",}}', "not a verdict written by stockanomaly label (not JSON: "),
])
def test_a_hand_edited_verdict_line_is_refused_naming_the_file_and_line(tmp_path: Path, line: str,
                                                                        said: str) -> None:
    path = tmp_path / "v.jsonl"
    append_verdict(path, ANOMALY_ID, "confirmed")
    path.write_text(path.read_text() + "\n" + line + "\n")
    with pytest.raises(ConfigError) as raised:
        load_verdicts(path)
    assert str(raised.value).startswith(f"verdicts file {path}, line 3: {said}")


def test_label_writes_to_no_file_but_a_verdicts_file(tmp_path: Path) -> None:
    """`label --file` naming a replay's --out (or a labels file, or a day's data) appended a verdict to
    it: `show --file` then refused its last line, and `evaluate` the labels."""
    out = tmp_path / "anomalies.jsonl"
    anomaly = Anomaly.of_print("high_volume", "NVDA", T0, 1.0, 1, 1, 1, 1, 1.2, "r")
    out.write_text(json.dumps(anomaly.to_dict()) + "\n")
    before = out.read_bytes()
    with pytest.raises(ConfigError) as raised:
        append_verdict(out, anomaly.id, "confirmed")
    assert str(raised.value) == (f"{out} holds something other than verdicts (verdicts file {out}, line 1: lacks "
                                 "verdict); nothing written")
    assert out.read_bytes() == before
    data = tmp_path / "m.dbn"
    data.write_bytes(b"DBN\x02\xff\xfe")
    with pytest.raises(ConfigError, match="holds something other than verdicts"):
        append_verdict(data, anomaly.id, "confirmed")


def test_a_hand_edited_id_is_read_as_label_takes_it_and_a_changed_verdict_is_reported(tmp_path: Path) -> None:
    """An id in capitals or with a space matched no anomaly: its verdict was lost in silence. A
    byte-order mark (an editor's) made line 1 'not a verdict'."""
    path = tmp_path / "v.jsonl"
    other = "f" * 32
    path.write_bytes("\ufeff".encode() + "\n".join([
        json.dumps({"id": ANOMALY_ID.upper(), "verdict": "confirmed"}),
        json.dumps({"id": f" {other} ", "verdict": "false_positive"}),
        json.dumps({"id": ANOMALY_ID, "verdict": "false_positive"}),  # relabelled: the last counts
        json.dumps({"id": other, "verdict": "false_positive"}),  # the same again: no change
    ]).encode() + b"\n")
    changed: dict[str, int] = {}
    assert load_verdicts(path, changed) == {ANOMALY_ID: "false_positive", other: "false_positive"}
    assert changed == {ANOMALY_ID: 3}


def test_evaluate_says_which_verdicts_disagree_and_refuses_a_bad_line_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = found_ids(tmp_path)[0]
    assert invoke("label", found, "--confirmed")[0] == 0
    assert invoke("label", found, "--false-positive")[0] == 0
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl")
    assert code == 0 and out.splitlines()[-1] == (f"1 anomaly has verdicts that disagree, the last counting "
                                                  f"({found}: verdicts.jsonl, line 2)")
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl", "--json")
    assert json.loads(out)["verdicts_changed"] == 1
    with open("verdicts.jsonl", "a") as f:
        f.write('{"id": 7, "verdict": "confirmed"}\n')
    assert invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl") == (
        1, "Error: verdicts file verdicts.jsonl, line 3: id 7 is not an anomaly or incident id (32 hex digits, as replay --out "
           "and query show)")


def test_evaluate_verdicts_alone_scores_the_verdicts_label_wrote_wherever_it_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`label` writes to a default file, but `evaluate --verdicts` needed its path: given alone it was
    'Option '--verdicts' requires an argument', and before DATA it took DATA for the verdicts file."""
    monkeypatch.chdir(tmp_path)
    found = found_ids(tmp_path)[0]
    assert invoke("label", found, "--confirmed")[0] == 0
    for args in (["m.dbn", "--verdicts"], ["--verdicts", "m.dbn"], ["--verdicts", "--", "m.dbn"],
                 ["m.dbn", "--verdicts", "verdicts.jsonl"]):  # the path, as before
        code, out = invoke("evaluate", *args)
        assert code == 0 and out.splitlines()[0] == "scored against 1 verdict in verdicts.jsonl", (args, out)
    monkeypatch.setenv("STOCKANOMALY_VERDICTS", str(tmp_path / "elsewhere.jsonl"))
    assert invoke("label", found, "--false-positive")[0] == 0
    code, out = invoke("evaluate", "--verdicts", "--json", "m.dbn")
    assert code == 0 and json.loads(out)["verdicts_file"] == str(tmp_path / "elsewhere.jsonl")
    (tmp_path / "m.labels.json").unlink()  # as for a real day: the way to its verdicts is said
    assert invoke("evaluate", "m.dbn") == (1, (
        "Error: no labels at m.labels.json; pass --labels (a generated market's), or --verdicts to score the "
        "detections against analysts' verdicts instead (any data, real days too; alone, it reads those `label` "
        f"wrote, to {tmp_path / 'elsewhere.jsonl'})"))


def test_evaluate_refuses_verdicts_none_of_which_it_found_and_says_how_many_of_them_it_scored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verdicts given on another file scored nothing, yet the table of unreviewed detections was headed
    'scored against 1 verdict'; when only some matched, the headline counted them all."""
    monkeypatch.chdir(tmp_path)
    found = found_ids(tmp_path)
    assert invoke("label", ANOMALY_ID, "--confirmed")[0] == 0  # on no anomaly of m.dbn
    refused = (1, f"Error: the verdict in verdicts.jsonl is not on an anomaly or incident this run found "
                  f"({len(found):,} anomalies): given on another file, under other thresholds, or on incidents grouped "
                  "under other suppression rules than suppressions.json's (--suppressions names theirs); "
                  "nothing to score")
    assert invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl") == refused
    assert invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl", "--json") == refused
    assert invoke("label", "f" * 32, "--false-positive")[0] == 0
    assert invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl")[1].startswith(
        "Error: none of the 2 verdicts in verdicts.jsonl is on an anomaly or incident this run found")
    assert invoke("label", found[0], "--confirmed")[0] == 0
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl")
    assert code == 0 and out.splitlines()[0] == "scored against 1 of 3 verdicts in verdicts.jsonl", out
    assert "2 verdicts are on anomalies this run did not find" in out


def found_ids(folder: Path) -> list[str]:
    """The ids of the anomalies a replay finds in a small generated market written to folder/m.dbn."""
    assert invoke("generate", str(folder / "m.dbn"), "--symbols", "2", "--trades", "3000", "--seed", "1")[0] == 0
    assert invoke("replay", str(folder / "m.dbn"), "--out", str(folder / "found.jsonl"), "--json")[0] == 0
    ids = [json.loads(line)["id"] for line in (folder / "found.jsonl").read_text().splitlines()]
    assert ids, "the market should give at least one anomaly"
    return ids


def test_a_verdict_appended_to_a_file_whose_last_line_lacks_its_newline_starts_a_line_of_its_own(
        tmp_path: Path) -> None:
    """It was glued to that line: both verdicts lost, and the whole file refused ('line 1: not a verdict')."""
    path = tmp_path / "v.jsonl"
    a, b = (Anomaly.of_print("high_volume", "NVDA", T0 + k * S, 1.0, 1, 1, 1, k, 1.2, "r") for k in range(2))
    path.write_text(json.dumps({"id": a.id, "verdict": "false_positive"}))
    append_verdict(path, b.id, "confirmed")
    assert load_verdicts(path) == {a.id: "false_positive", b.id: "confirmed"}


def test_evaluate_verdicts_counts_an_incidents_verdict_for_its_anomalies_without_one_of_their_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An incident's id was taken by `label` and counted as an anomaly 'this run did not find'; then
    it was told apart but not counted: an analyst who triaged incidents scored nothing."""
    monkeypatch.chdir(tmp_path)
    assert invoke("generate", "m.dbn", "--symbols", "4", "--trades", "120000", "--seed", "1")[0] == 0
    assert invoke("replay", "m.dbn", "--out", "found.jsonl", "--json")[0] == 0
    incidents = [json.loads(line) for line in (tmp_path / "found.incidents.jsonl").read_text().splitlines()]
    incident = next(i for i in incidents if i["size"] > 1)
    elsewhere = next(json.loads(line)["id"] for line in (tmp_path / "found.jsonl").read_text().splitlines()
                     if json.loads(line)["id"] not in incident["members"])
    assert invoke("label", elsewhere, "--confirmed")[0] == 0
    assert invoke("label", incident["id"], "--false-positive")[0] == 0
    assert invoke("label", incident["members"][0], "--confirmed")[0] == 0  # its own verdict counts over the incident's
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl", "--json")
    assert code == 0, out
    scored = json.loads(out)
    assert (scored["verdicts"], scored["verdicts_on_incidents"], scored["verdicts_not_found"]) == (3, 1, 0)
    assert scored["anomalies_judged_by_incident"] == incident["size"] - 1
    assert (scored["by_detector"]["all"]["confirmed"], scored["by_detector"]["all"]["false_positive"]) == \
        (2, incident["size"] - 1)
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "verdicts.jsonl")
    others = incident["size"] - 1
    assert (f"1 verdict is on incidents, counted for {others} {'anomaly' if others == 1 else 'anomalies'} of theirs "
            "with no verdict of their own") in out
    assert "verdicts are" not in out  # '1 verdicts are ...'


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output.strip()


def test_a_window_with_seconds_is_kept_to_the_second_under_one_id(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """It was stored to the minute (the window widened), listed under another id than the one printed
    (which --remove then did not know), and could be added twice."""
    monkeypatch.chdir(tmp_path)
    code, out = invoke("suppress", "--between", "15:50:30-16:00")
    printed = out.split()[1]
    assert code == 0 and out == f"suppression {printed} added to suppressions.json"
    assert json.loads(invoke("suppressions", "--json")[1]) == [
        {"id": printed, "symbol": None, "detector": None, "between": "15:50:30-16:00", "until": None, "note": ""}]
    assert invoke("suppress", "--between", "15:50:30-16:00")[0] == 1  # the same rule twice
    rule = load_suppressions(tmp_path / "suppressions.json")[0]
    assert [rule.matches(at(f"2025-05-05T15:50:{s}")) for s in ("29", "30")] == [False, True]
    code, out = invoke("suppress", "--between", "15:50:30.5-16:00")
    assert code == 1 and "HH:MM:SS" in out
    assert invoke("suppressions", "--remove", printed)[0] == 0
    assert load_suppressions(tmp_path / "suppressions.json") == []


def test_a_rule_is_removed_by_its_id_in_any_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`label` takes an id in any case; `suppressions --remove DA343DF7` said the file held no such rule."""
    monkeypatch.chdir(tmp_path)
    rule_id = invoke("suppress", "--symbol", "NVDA")[1].split()[1]
    assert invoke("suppressions", "--remove", f" {rule_id.upper()} ") == (
        0, f"suppression {rule_id} removed from suppressions.json")
    assert load_suppressions(tmp_path / "suppressions.json") == []


def test_removing_a_rule_where_there_is_no_rules_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said 'suppressions.json holds no rule with id ...' of a file that does not exist."""
    monkeypatch.chdir(tmp_path)
    assert invoke("suppressions", "--remove", "deadbeef") == (
        1, "Error: suppressions.json does not exist: there are no rules to remove (--file names another file)")
    assert not (tmp_path / "suppressions.json").exists()


def test_the_cli_adds_lists_and_removes_rules_and_records_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = invoke("suppress", "--symbol", "nvda", "--between", "15:50-16:00", "--note", "closing imbalance")
    rule = Suppression.of("NVDA", between="15:50-16:00")
    assert code == 0 and out == f"suppression {rule.id} added to suppressions.json"
    assert invoke("suppress", "--symbol", "NVDA", "--between", "15:50-16:00")[0] == 1  # the same rule twice
    assert invoke("suppressions") == (0, f"{rule.id}  symbol NVDA, between 15:50-16:00  (closing imbalance)")
    assert json.loads(invoke("suppressions", "--json")[1])[0]["id"] == rule.id
    # A rule past its last day holds nothing live back: the list says it ended (one of 2020 has).
    assert invoke("suppress", "--detector", "trade_burst", "--until", "2020-01-31")[0] == 0
    assert invoke("suppress", "--detector", "vwap_deviation", "--until", "2999-12-31")[0] == 0
    listed = invoke("suppressions")[1].splitlines()
    assert [line.split("  ", 1)[1] for line in listed[1:]] == ["detector trade_burst, until 2020-01-31 (ended)",
                                                              "detector vwap_deviation, until 2999-12-31"]
    for line in listed[1:]:
        assert invoke("suppressions", "--remove", line.split()[0])[0] == 0
    code, out = invoke("suppress")
    assert code == 1 and out.splitlines() == ["Error: a suppression must name a symbol, a detector, a time-of-day "
                                              "window or an end date: an empty one would silence every anomaly"]
    assert invoke("suppressions", "--remove", "deadbeef")[0] == 1
    assert invoke("suppressions", "--remove", rule.id)[0] == 0
    assert invoke("suppressions") == (0, "no suppressions in suppressions.json")
    # a mistyped --file is not read as an empty one
    assert invoke("suppressions", "--file", "supressions.json") == (
        0, "no suppressions: supressions.json does not exist (`stockanomaly suppress` creates it)")
    anomaly_id = "0123456789abcdef0123456789abcdef"
    assert invoke("label", anomaly_id, "--false-positive", "--note", "a sweep")[0] == 0
    assert load_verdicts(tmp_path / "verdicts.jsonl") == {anomaly_id: "false_positive"}
    code, out = invoke("label", anomaly_id)
    assert code == 1 and out == "Error: give --confirmed or --false-positive"
    code, out = invoke("label", anomaly_id, "--confirmed", "--false-positive")
    assert code == 1 and out == "Error: give --confirmed or --false-positive, not both"
    assert invoke("label", anomaly_id.upper(), "--confirmed")[0] == 0  # hex in capitals: the same id
    assert load_verdicts(tmp_path / "verdicts.jsonl") == {anomaly_id: "confirmed"}
    code, out = invoke("evaluate", "--verdicts", "missing.jsonl", "x.dbn")
    assert code == 1 and out.startswith("Error: verdicts file missing.jsonl does not exist")


def an_incident_with_a_rule_on_its_first_member(tmp_path: Path, *suppress: str) -> dict:
    """A generated market (m.dbn) replayed (all.jsonl) and a suppression rule (`suppress` options beside
    it) holding back the earliest member of one of its incidents of several: that incident."""
    assert invoke("generate", "m.dbn", "--symbols", "4", "--trades", "120000", "--seed", "1")[0] == 0
    assert invoke("replay", "m.dbn", "--out", "all.jsonl", "--json")[0] == 0
    found = {a["id"]: a for a in map(json.loads, (tmp_path / "all.jsonl").read_text().splitlines())}
    whole = [json.loads(line) for line in (tmp_path / "all.incidents.jsonl").read_text().splitlines()]
    incident: dict = next(i for i in whole if i["size"] > 1)
    first = found[incident["members"][0]]
    at = datetime.fromisoformat(first["ts_local"][:19])  # its second alone, New York time
    assert invoke("suppress", *suppress, "--symbol", first["symbol"], "--detector", first["detector"],
                  "--between", f"{at:%H:%M:%S}-{at + timedelta(seconds=1):%H:%M:%S}")[0] == 0
    return incident


def test_evaluate_verdicts_counts_a_verdict_on_an_incident_as_a_replay_under_the_rules_grouped_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule that holds back an incident's earliest member gives the rest of it another id (an id is
    derived from the earliest member). Labelled from that replay, the incident read as one 'this run did
    not find (another file, or other thresholds)': evaluate honours no rule, so never grouped it so."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOCKANOMALY_SUPPRESSIONS", raising=False)
    incident = an_incident_with_a_rule_on_its_first_member(tmp_path)
    assert invoke("replay", "m.dbn", "--out", "held.jsonl", "--json")[0] == 0
    held = [json.loads(line) for line in (tmp_path / "held.incidents.jsonl").read_text().splitlines()]
    regrouped = next(i for i in held if set(i["members"]) < set(incident["members"]))
    whole = [json.loads(line) for line in (tmp_path / "all.incidents.jsonl").read_text().splitlines()]
    assert regrouped["id"] not in {i["id"] for i in whole}
    assert invoke("label", regrouped["id"], "--false-positive")[0] == 0
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "--json")
    assert code == 0, out
    scored = json.loads(out)
    assert (scored["verdicts_on_incidents"], scored["verdicts_not_found"]) == (1, 0)
    assert scored["anomalies_judged_by_incident"] == regrouped["size"]
    assert scored["by_detector"]["all"]["false_positive"] == regrouped["size"]
    code, out = invoke("evaluate", "m.dbn", "--verdicts")
    assert "did not find" not in out


def test_evaluate_verdicts_says_how_to_find_incidents_of_a_replay_under_a_named_suppressions_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Incidents labelled from `replay --suppressions rules.json` were refused as 'given on another file, or
    under other thresholds': evaluate regroups under the rules in force only (STOCKANOMALY_SUPPRESSIONS,
    else ./suppressions.json), and nothing said so."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOCKANOMALY_SUPPRESSIONS", raising=False)
    incident = an_incident_with_a_rule_on_its_first_member(tmp_path, "--file", "rules.json")
    assert invoke("replay", "m.dbn", "--suppressions", "rules.json", "--out", "held.jsonl", "--json")[0] == 0
    held = [json.loads(line) for line in (tmp_path / "held.incidents.jsonl").read_text().splitlines()]
    regrouped = next(i for i in held if set(i["members"]) < set(incident["members"]))
    assert invoke("label", regrouped["id"], "--false-positive")[0] == 0

    code, out = invoke("evaluate", "m.dbn", "--verdicts")
    assert code == 1 and out.endswith("or on incidents grouped under other suppression rules than suppressions.json's "
                                      "(--suppressions names theirs); nothing to score"), out
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "--suppressions", "rules.json", "--json")  # the way out it names
    assert code == 0 and json.loads(out)["verdicts_on_incidents"] == 1, out
    monkeypatch.setenv("STOCKANOMALY_SUPPRESSIONS", "rules.json")  # or the variable, as for replay
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "--json")
    assert code == 0 and json.loads(out)["verdicts_on_incidents"] == 1, out
    # Generated labels score the detectors, which no rule holds back: the option would be ignored.
    code, out = invoke("evaluate", "m.dbn", "--suppressions", "rules.json")
    assert code == 2 and "--suppressions goes with --verdicts" in out, out
    # A named file that is no rules file: one line, as replay says it.
    (tmp_path / "broken.json").write_text("{not json")
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "--suppressions", "broken.json")
    assert code == 1 and out.startswith("Error: ") and "broken.json" in out and len(out.strip().splitlines()) == 1, out
    # Named, the default file too; unnamed and unreadable it is left out, as no replay ran under it.
    monkeypatch.delenv("STOCKANOMALY_SUPPRESSIONS")
    (tmp_path / "suppressions.json").write_text("{not json")
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "--suppressions", "suppressions.json")
    assert code == 1 and out.startswith("Error: suppressions file suppressions.json is not readable JSON"), out
    code, out = invoke("evaluate", "m.dbn", "--verdicts", "--json")
    assert code == 1 and out.endswith("than suppressions.json's (--suppressions names theirs); nothing to score"), out
    # A verdicts file with none in it: said before replaying the data for a table scored against nothing.
    (tmp_path / "none.jsonl").write_text("\n")
    assert invoke("evaluate", "m.dbn", "--verdicts", "none.jsonl") == (
        1, "Error: none.jsonl holds no verdicts (`stockanomaly label` writes them); nothing to score")


def test_label_records_one_verdict_on_each_of_several_ids_or_on_none_when_one_is_mistyped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A triage of a market's incidents took one `label` per id: `label` refused a second ID, so
    `... | xargs stockanomaly label --false-positive` did not work either."""
    monkeypatch.chdir(tmp_path)
    first, second = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
    code, out = invoke("label", "--false-positive", "--note", "sweeps", first, second.upper(), first)
    assert code == 0 and out.splitlines() == [f"{first} marked false positive in verdicts.jsonl",
                                              f"{second} marked false positive in verdicts.jsonl"]
    lines = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert [(v["id"], v["verdict"], v["note"]) for v in lines] == [(first, "false_positive", "sweeps"),
                                                                 (second, "false_positive", "sweeps")]
    # A triage's hundreds are counted in one line, each still recorded.
    many = [f"{k:032x}" for k in range(1, 849)]
    code, out = invoke("label", "--confirmed", "--file", "many.jsonl", *many)
    assert code == 0 and out == (f"848 ids marked confirmed in many.jsonl: {many[0]}, {many[1]} and 846 more"), out
    assert load_verdicts(tmp_path / "many.jsonl") == dict.fromkeys(many, "confirmed")
    code, out = invoke("label", "--confirmed", first, "abdfa5z5", second)
    assert code == 1 and out == ("Error: 'abdfa5z5' is not an anomaly or incident id (32 hex digits, or the first 8 "
                                 "or more of them, as replay --out and query show); nothing written")
    assert load_verdicts(tmp_path / "verdicts.jsonl") == {first: "false_positive", second: "false_positive"}
    assert invoke("label", "--confirmed")[0] == 2  # no id at all: a usage error, as before
