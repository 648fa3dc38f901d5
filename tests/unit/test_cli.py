"""The `stockanomaly` command as a user runs it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from entrypoints.cli import main

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NVDA_DAY = SHARED / "nasdaq" / "xnas-itch-20250505.trades.csv.zst"
DBN_SAMPLE = SHARED / "databento" / "xnas-itch.trades.sample.dbn.zst"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside the repository")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sample_json() -> dict:
    code, out = run("replay", "--json")
    assert code == 0, out
    return json.loads(out)


def test_replay_without_paths_runs_the_builtin_sample(sample_json: dict) -> None:
    assert sample_json["trades"] > 100_000
    assert sample_json["anomalies"] == sum(sample_json["by_detector"].values()) > 0
    assert {"seconds", "trades_per_second"} <= set(sample_json)
    assert len(sample_json["by_detector"]) >= 4


def test_version_names_the_installed_release() -> None:
    from importlib.metadata import version

    code, out = run("--version")
    assert code == 0 and out.strip().endswith(version("stockanomaly"))


def test_replay_counts_anomalies_per_session(sample_json: dict) -> None:
    assert sum(sample_json["by_session"].values()) == sample_json["anomalies"]
    assert set(sample_json["by_session"]) <= {"pre_market", "regular", "after_hours", "closed"}
    assert all(a["session"] and a["ts_local"][10] == "T" for a in sample_json["top"])


def test_replay_is_deterministic(sample_json: dict) -> None:
    code, out = run("replay", "--json")
    again = json.loads(out)
    assert again["by_detector"] == sample_json["by_detector"]
    assert [a["id"] for a in again["top"]] == [a["id"] for a in sample_json["top"]]


def test_replay_prints_a_readable_summary() -> None:
    code, out = run("replay", "--detectors", "high_volume,price_change")
    assert code == 0
    assert "Anomalies by detector" in out and "Top anomalies" in out and "trades/s" in out
    assert "anomalies each within 5 minutes of the next" in out  # incidents as the README defines them


def test_replay_writes_anomalies_and_report(tmp_path: Path) -> None:
    out, report = tmp_path / "a.jsonl", tmp_path / "r.html"
    code, text = run("replay", "--json", "--out", str(out), "--report", str(report))
    assert code == 0, text
    summary = json.loads(text)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == summary["anomalies"]
    assert {"id", "symbol", "ts_event", "detector", "score", "reason", "price", "size"} <= set(rows[0])
    assert isinstance(rows[0]["ts_event"], int)
    incidents = [json.loads(line) for line in (tmp_path / "a.incidents.jsonl").read_text().splitlines()]
    assert len(incidents) == summary["incidents"] and sum(i["size"] for i in incidents) == summary["anomalies"]
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count('class="plotly-graph-div"') >= 1


@needs_shared
def test_replay_reads_real_dbn_files() -> None:
    code, out = run("replay", "--json", str(DBN_SAMPLE))
    assert code == 0, out
    result = json.loads(out)
    assert result["trades"] == 4 and result["anomalies"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["replay", "/no/such/file.dbn.zst"], "/no/such/file.dbn.zst"),
    (["replay", "--detectors", "telepathy"], "unknown detector"),
    (["generate", "market.txt"], "must end with .dbn"),
    (["calibrate", "--out", "x.json"], "Missing argument"),
    (["replay", "--detectors", ","], "Invalid value for --detectors: names no detector"),
    (["generate", "m.dbn.zst", "--symbols", "5000", "--trades", "20000"], "too few for 5,000 symbols"),
    (["generate", "m.dbn.zst", "--symbols", "12000", "--trades", "2000000"],
     "the busiest of 12,000 symbols would get 579 prints and an anomaly needs 1,000 of history"),
    (["generate", "m.dbn.zst", "--symbols", "20001"], "20001 is not in the range 1<=x<=20000"),
    (["generate", "m.dbn.zst", "--date", "2025-13-45"], "is not a calendar day"),
    (["generate", "m.dbn.zst", "--symbols", "3", "--trades", "1100"],
     "an anomaly needs 1,000 of history; ask for at least"),
    (["generate", "m.dbn.zst", "--symbols", "1", "--trades", "1000"], "1000 is not in the range x>=1002"),
    (["generate", "m.dbn.zst", "--date", "1969-12-31"], "outside the days a trade's timestamp can hold"),
    (["generate", "m.dbn.zst", "--date", "2025-03-01"], "2025-03-01 is a Saturday"),
    (["generate", "m.dbn.zst", "--date", "2025-12-25"], "2025-12-25 is an exchange holiday"),
    (["generate", "m.dbn.zst", "--date", "2025-11-28"], "2025-11-28 closes early"),
    (["replay", "--symbols", ","], "Invalid value for --symbols: names no symbol"),
    (["replay", "--out", "-"], "--out - : writes a file, not standard output"),
], ids=["missing-file", "unknown-detector", "bad-extension", "no-paths", "no-detector", "impossible-market",
        "impossible-whole-tape", "more-than-the-whole-tape",
        "bad-date", "no-room-for-anomalies", "fewer-than-one-symbol-needs", "before-1970", "weekend", "holiday",
        "early-close", "no-symbol", "out-to-stdout"])
def test_bad_arguments_give_a_clear_error(args: list[str], message: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output


def one_line_error(args: list[str]) -> str:
    """The command's output, asserting it failed with a one-line error and no traceback."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit)), \
        result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [["replay"], ["replay", "--json"], ["calibrate", "--out", "t.json"]])
def test_a_file_that_is_not_market_data_fails_in_one_line(command: list[str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("garbage.dbn").write_bytes(bytes(range(256)) * 12)
    assert one_line_error([*command, "garbage.dbn"]).startswith("Error: garbage.dbn: unreadable from the start")
    assert not Path("t.json").exists()


@needs_shared
def test_a_truncated_file_is_reported_after_what_was_read_and_calibrate_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cut.csv.zst").write_bytes(NVDA_DAY.read_bytes()[:300_000])
    result = CliRunner().invoke(main, ["replay", "--json", "cut.csv.zst"])
    summary, error = result.output.strip().splitlines()
    assert result.exit_code == 1 and json.loads(summary)["accepted"] > 10_000
    # The unread rest of the file is a dead letter, not a trade: what was read was all accepted.
    assert json.loads(summary)["trades"] == json.loads(summary)["accepted"]
    assert json.loads(summary)["dead_letters"] == {"bad_file": 1}
    assert error.startswith("Error: cut.csv.zst: unreadable from line ") and "cover only what was read" in error
    assert "no thresholds written" in one_line_error(["calibrate", "--out", "t.json", "cut.csv.zst"])
    assert not Path("t.json").exists()


def test_a_csv_with_another_header_fails_in_one_line_in_every_command(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("other.csv").write_text("a,b,c\n1,2,3\n")
    for command in (["replay"], ["calibrate", "--out", "t.json"]):
        assert "CSV header lacks" in one_line_error([*command, "other.csv"])


def test_a_csv_naming_a_column_twice_fails_in_one_line_in_every_command(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """It was a traceback (pyarrow: 'Field "price" exists 2 times in schema')."""
    monkeypatch.chdir(tmp_path)
    Path("twice.csv").write_text("ts_event,price,size,symbol,price\n2025-05-05T14:00:00Z,100.5,10,ACME,100.6\n")
    for command in (["replay"], ["calibrate", "--out", "t.json"]):
        assert one_line_error([*command, "twice.csv"]) == "Error: twice.csv: CSV header names price more than once"


def test_a_csv_with_only_the_required_columns_keeps_prints_that_share_a_nanosecond(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [f"2025-05-05T14:00:{i // 3:02d}.000000001Z,{100 + i % 3 / 100:.2f},{100 + i},ACME" for i in range(90)]
    for name in ("min.csv", "again.csv"):
        Path(name).write_text("\n".join(["ts_event,price,size,symbol", *rows]) + "\n")
    code, out = run("replay", "--json", "min.csv", "again.csv")
    summary = json.loads(out)
    # Every print once; the same lines again in a copy are 90 duplicates (not 60 of the first copy too).
    assert code == 0 and summary["accepted"] == 90 and summary["dead_letters"] == {"duplicate": 90}


def test_replay_dead_letters_of_merged_files_say_which_file_and_line_each_refused_print_is_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A negative price, a zero size and a date far after its receipt, in two files merged by time:
    the engine refused them after the merge, where no file or line is known (`origin` empty)."""
    monkeypatch.chdir(tmp_path)
    header = "ts_recv,ts_event,price,size,symbol"
    rows = {name: [f"2025-05-05T14:00:{i:02d}.0001Z,2025-05-05T14:00:{i:02d}Z,{100 + i / 100:.2f},{100 + i},{name.upper()}"
                   for i in range(40)] for name in ("acme", "bolt")}
    rows["acme"][5] = rows["acme"][5].replace(",100.05,", ",-100.05,")
    rows["bolt"][7] = rows["bolt"][7].replace(",107,BOLT", ",0,BOLT")
    rows["bolt"][30] = rows["bolt"][30].replace(",2025-05-05T14:00:30Z,", ",2026-05-05T14:00:30Z,")
    for name, lines in rows.items():
        Path(f"{name}.csv").write_text("\n".join([header, *lines]) + "\n")
    code, out = run("replay", "--json", "--dead-letters", "dead.jsonl", "acme.csv", "bolt.csv")
    assert code == 0 and json.loads(out)["dead_letters"] == {"bad_price": 1, "bad_size": 1, "bad_timestamp": 1}
    letters = [json.loads(line) for line in Path("dead.jsonl").read_text().splitlines()]
    assert sorted((d["reason"], d["origin"], d["raw"]) for d in letters) == [
        ("bad_price", "acme.csv, line 7", rows["acme"][5]), ("bad_size", "bolt.csv, line 9", rows["bolt"][7]),
        ("bad_timestamp", "bolt.csv, line 32", rows["bolt"][30])]


def test_replay_dead_letters_of_duplicates_and_late_prints_say_which_file_and_line_they_are_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The duplicate guard refuses prints after the files are merged: their dead letters had an
    empty origin, unlike every other refused print of a file."""
    monkeypatch.chdir(tmp_path)
    header = "ts_recv,ts_event,price,size,symbol,sequence"
    rows = {name: [f"2025-05-05T14:00:{i:02d}.0001Z,2025-05-05T14:00:{i:02d}Z,{100 + i / 100:.2f},{100 + i},"
                   f"{name.upper()},{i + 1}" for i in range(40)] for name in ("acme", "bolt")}
    rows["bolt"].insert(20, rows["bolt"][12])  # sent again: line 22
    rows["acme"].insert(30, rows["acme"][29].replace(":29Z", ":19Z").replace(",30", ",99"))  # 10 s late: line 32
    for name, lines in rows.items():
        Path(f"{name}.csv").write_text("\n".join([header, *lines]) + "\n")
    code, out = run("replay", "--json", "--dead-letters", "dead.jsonl", "acme.csv", "bolt.csv")
    assert code == 0 and json.loads(out)["dead_letters"] == {"duplicate": 1, "out_of_order": 1}
    letters = [json.loads(line) for line in Path("dead.jsonl").read_text().splitlines()]
    assert sorted((d["reason"], d["origin"]) for d in letters) == [("duplicate", "bolt.csv, line 22"),
                                                                   ("out_of_order", "acme.csv, line 32")]


def test_evaluate_scores_each_generated_file_against_its_own_labels(tmp_path: Path) -> None:
    one, two = tmp_path / "one.dbn", tmp_path / "two.dbn"
    assert run("generate", str(one), "--symbols", "2", "--trades", "20000", "--seed", "1")[0] == 0
    assert run("generate", str(two), "--symbols", "3", "--trades", "30000", "--seed", "2")[0] == 0
    each = [json.loads(run("evaluate", "--json", str(path))[1]) for path in (one, two)]
    both = json.loads(run("evaluate", "--json", str(one), str(two))[1])
    assert both["total_trades"] == 50_000 and both["false_alarms"] == sum(r["false_alarms"] for r in each)
    assert sorted(both["missed"]) == sorted(f"{name}:{i}" for name, r in zip(("one", "two"), each) for i in r["missed"])
    error = one_line_error(["evaluate", str(one), "--labels", str(tmp_path / "two.labels.json")])
    assert error.startswith("Error: the labels describe 30,000 trades but DATA holds 20,000: they are not its labels")


def test_evaluate_says_which_detectors_stockanomaly_detectors_left_out(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Left set from a replay, the variable made evaluate score four detectors at recall 0 (macro F1
    0.33 on a 500-symbol market) with nothing to say they had not run."""
    data = tmp_path / "m.dbn"
    assert run("generate", str(data), "--symbols", "2", "--trades", "20000", "--seed", "1")[0] == 0
    assert "detectors_not_run" not in json.loads(run("evaluate", "--json", str(data))[1])
    monkeypatch.setenv("STOCKANOMALY_DETECTORS", "high_volume,price_change")
    off = ["isolation_forest", "trade_burst", "volume_surge", "vwap_deviation"]
    assert json.loads(run("evaluate", "--json", str(data))[1])["detectors_not_run"] == off
    code, out = run("evaluate", str(data))
    assert code == 0 and out.splitlines()[0] == (f"not run (STOCKANOMALY_DETECTORS): {', '.join(off)}; the events "
                                                 "they are expected to catch count as missed")
    code, out = run("label", "0" * 32, "--confirmed", "--file", str(tmp_path / "v.jsonl"))
    code, out = run("evaluate", str(data), "--verdicts", str(tmp_path / "v.jsonl"))  # on no anomaly found here
    assert code == 1 and f", by detectors not run (STOCKANOMALY_DETECTORS: {', '.join(off)}), or on incidents " in out
    assert out.rstrip().endswith("; nothing to score"), out
    monkeypatch.delenv("STOCKANOMALY_DETECTORS")
    assert run("replay", str(data), "--json", "--out", str(tmp_path / "all.jsonl"))[0] == 0
    found = json.loads((tmp_path / "all.jsonl").read_text().splitlines()[0])["id"]
    assert run("label", found, "--confirmed", "--file", str(tmp_path / "v.jsonl"))[0] == 0
    monkeypatch.setenv("STOCKANOMALY_DETECTORS", "high_volume,price_change")
    code, out = run("evaluate", str(data), "--verdicts", str(tmp_path / "v.jsonl"))
    assert code == 0 and f"not run (STOCKANOMALY_DETECTORS): {', '.join(off)}" in out.splitlines()


def test_evaluate_scores_the_detectors_whatever_stockanomaly_suppressions_holds_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rules file named by the variable (the worker's) held detections back from evaluate: the
    events they caught counted as missed, and the detectors' recall fell with no word of why."""
    from adapters.files.suppressions import save_suppressions
    from domain.suppressions import Suppression

    data = tmp_path / "m.dbn"
    assert run("generate", str(data), "--symbols", "2", "--trades", "20000", "--seed", "1")[0] == 0
    plain = json.loads(run("evaluate", "--json", str(data))[1])
    assert plain["detections"] > 0 and plain["caught"]
    rules = tmp_path / "rules.json"
    every = ("high_volume", "price_change", "trade_burst", "volume_surge", "vwap_deviation", "isolation_forest")
    save_suppressions(rules, [Suppression.of(detector=d) for d in every])
    monkeypatch.setenv("STOCKANOMALY_SUPPRESSIONS", str(rules))
    assert json.loads(run("evaluate", "--json", str(data))[1]) == plain
    held = json.loads(run("replay", "--json", "--top", "0", str(data))[1])
    assert held["anomalies"] == 0 and sum(held["suppressed"].values()) > 0  # replay honours them, as it should


def test_evaluate_writes_nothing_where_replays_output_variables_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """STOCKANOMALY_OUT and _DEAD_LETTERS stand in for replay's --out and --dead-letters: evaluate, which
    has neither, wrote (over) both files all the same, unchecked and unsaid."""
    data = tmp_path / "m.dbn"
    assert run("generate", str(data), "--symbols", "2", "--trades", "20000", "--seed", "1")[0] == 0
    found = tmp_path / "found" / "all.jsonl"  # an anomaly of m.dbn to give a verdict on
    assert run("replay", str(data), "--json", "--out", str(found))[0] == 0
    monkeypatch.setenv("STOCKANOMALY_OUT", str(tmp_path / "a.jsonl"))
    monkeypatch.setenv("STOCKANOMALY_DEAD_LETTERS", str(tmp_path / "dl.jsonl"))
    assert run("evaluate", "--json", str(data))[0] == 0
    anomaly = json.loads(found.read_text().splitlines()[0])["id"]
    assert run("label", anomaly, "--confirmed", "--file", str(tmp_path / "v.jsonl"))[0] == 0
    assert run("evaluate", "--json", str(data), "--verdicts", str(tmp_path / "v.jsonl"))[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["found", "m.dbn", "m.labels.json", "v.jsonl"]


def test_replay_says_which_detectors_did_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A detector left out (STOCKANOMALY_DETECTORS left set from another run) read as one that found nothing."""
    assert "detectors_not_run" not in json.loads(run("replay", "--json", "--top", "0")[1])
    monkeypatch.setenv("STOCKANOMALY_DETECTORS", "trade_burst")
    code, out = run("replay", "--json", "--top", "0", "--detectors", "high_volume,price_change")
    assert code == 0 and json.loads(out)["detectors_not_run"] == [
        "isolation_forest", "trade_burst", "volume_surge", "vwap_deviation"]
    code, out = run("replay", "--top", "0")
    assert code == 0 and ("not run (--detectors, STOCKANOMALY_DETECTORS): high_volume, price_change, "
                          "isolation_forest, volume_surge, vwap_deviation") in out.splitlines()
    # Any case, as --symbols takes.
    code, out = run("replay", "--json", "--top", "0", "--detectors", "High_Volume, PRICE_CHANGE")
    assert code == 0 and json.loads(out)["detectors_not_run"] == [
        "isolation_forest", "trade_burst", "volume_surge", "vwap_deviation"]


def test_evaluate_with_a_file_that_is_not_labels_fails_in_one_line(tmp_path: Path) -> None:
    data, anomalies = tmp_path / "m.dbn", tmp_path / "a.jsonl"
    assert run("generate", str(data), "--symbols", "2", "--trades", "20000")[0] == 0
    assert run("replay", str(data), "--out", str(anomalies))[0] == 0
    assert "is not a labels file" in one_line_error(["evaluate", str(data), "--labels", str(anomalies)])


def test_evaluate_keeps_apart_the_events_of_two_files_of_one_name(tmp_path: Path) -> None:
    for seed in ("1", "2"):
        (tmp_path / seed).mkdir()
        assert run("generate", str(tmp_path / seed / "m.dbn"), "--symbols", "2", "--trades", "20000",
                   "--seed", seed)[0] == 0
    code, out = run("evaluate", "--json", str(tmp_path / "1" / "m.dbn"), str(tmp_path / "2" / "m.dbn"))
    assert code == 0, out
    assert json.loads(out)["events"] == 2 * len(json.loads((tmp_path / "1" / "m.labels.json").read_text())["events"])


def test_evaluate_refuses_hand_edited_labels_in_one_line(tmp_path: Path) -> None:
    """A count that is not one was a traceback (ValueError from int()); an event listed twice scored twice."""
    data, labels = tmp_path / "m.dbn", tmp_path / "m.labels.json"
    assert run("generate", str(data), "--symbols", "2", "--trades", "20000")[0] == 0
    written = json.loads(labels.read_text())
    edited = tmp_path / "edited.labels.json"
    edited.write_text(json.dumps({**written, "anomalous_trades": "many"}))
    assert one_line_error(["evaluate", str(data), "--labels", str(edited)]) == (
        f"Error: {edited} is not a labels file written by `stockanomaly generate`: anomalous_trades 'many' is not a "
        "count of trades")
    edited.write_text(json.dumps({**written, "events": written["events"] + written["events"][:1]}))
    n = len(written["events"]) + 1
    assert one_line_error(["evaluate", str(data), "--labels", str(edited)]).endswith(
        f"event {n} ({written['events'][0]['id']}) has the id of event 1: each event is scored once")


def test_replay_top_zero_shows_no_top_anomalies_but_counts_them(sample_json: dict) -> None:
    code, out = run("replay", "--json", "--top", "0")
    assert code == 0, out
    assert json.loads(out)["top"] == [] and json.loads(out)["anomalies"] == sample_json["anomalies"]
    code, out = run("replay", "--top", "0")
    assert code == 0 and "Top anomalies" not in out and "Top incidents" not in out and "by session" in out


def test_replay_top_says_it_limits_the_top_incidents_too() -> None:
    """Its help said 'How many top anomalies to show': --top 0 left out the incidents as well, unsaid."""
    code, out = run("replay", "--json", "--top", "2")
    assert code == 0 and len(json.loads(out)["top"]) == len(json.loads(out)["top_incidents"]) == 2
    code, out = run("replay", "--help")
    assert "How many top anomalies, and top incidents, to show and to list in --json" in " ".join(out.split())


def test_tables_written_to_a_pipe_keep_each_row_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich assumes 80 columns off a terminal: every reason was folded over several lines (ungreppable)."""
    from entrypoints.render import console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert console().width > 1_000
    code, out = run("replay", "--top", "3")
    assert code == 0
    top = out[out.index("Top anomalies"):out.index("Top incidents")].splitlines()
    rows = [line for line in top if line.startswith("│ ")]
    assert len(rows) == 3 and all(line.startswith("│ 2025-") for line in rows)  # no continuation lines


def test_replay_tables_give_each_row_its_whole_id_where_show_and_label_can_take_it(
        sample_json: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ids were only in --json and --out: an analyst who saw an anomaly in the table had no id to
    `show` or `label` it by."""
    top = [a["id"] for a in sample_json["top"][:3]]
    incidents = [i["id"] for i in sample_json["top_incidents"][:3]]
    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe: one line a row, the id its last cell
    code, out = run("replay", "--top", "3")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│ 2025-")]
    assert [row.split("│")[-2].strip() for row in rows] == top + incidents
    from rich.console import Console

    import entrypoints.render

    monkeypatch.setattr(entrypoints.render, "out", Console(width=100))  # a narrow terminal: under the time
    code, out = run("replay", "--top", "3")
    assert code == 0 and max(map(len, out.splitlines())) <= 100
    under = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│ ")]
    assert [cell for cell in under if len(cell) == 32 and " " not in cell] == top + incidents


def test_replay_with_metrics_port_zero_says_which_port_it_picked() -> None:
    result = CliRunner().invoke(main, ["replay", "--json", "--metrics-port", "0"])
    assert result.exit_code == 0, result.stderr
    port = int(result.stderr.split("metrics on http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    assert port > 0


def test_replay_names_the_address_it_cannot_serve_metrics_on_and_its_variable() -> None:
    """'cannot serve metrics on port 0: [Errno 99] ...' named only the port; the address was the problem."""
    result = CliRunner().invoke(main, ["replay", "--json", "--metrics-port", "0"],
                                env={"STOCKANOMALY_METRICS_ADDR": "192.0.2.1"})  # TEST-NET-1: on no interface
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == ("Error: cannot serve /metrics on 192.0.2.1:0 (STOCKANOMALY_METRICS_ADDR / "
                                     "--metrics-port): Cannot assign requested address")


def test_replay_reports_a_window_of_some_symbols_exactly_as_the_full_run_judged_them(tmp_path: Path) -> None:
    data = tmp_path / "m.dbn"
    assert run("generate", str(data), "--symbols", "4", "--trades", "120000", "--seed", "3")[0] == 0
    assert run("replay", str(data), "--out", str(tmp_path / "all.jsonl"))[0] == 0
    everything = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    times = sorted(a["ts_event"] for a in everything)
    since, until = times[len(times) // 4], times[3 * len(times) // 4]
    symbol = everything[0]["symbol"]
    code, out = run("replay", str(data), "--json", "--out", str(tmp_path / "some.jsonl"), "--symbols",
                    f"{symbol.lower()},NOSUCH", "--since", str(since), "--until", str(until))
    assert code == 0, out
    some = [json.loads(line) for line in (tmp_path / "some.jsonl").read_text().splitlines()]
    expected = [a["id"] for a in everything if a["symbol"] == symbol and since <= a["ts_event"] < until]
    assert [a["id"] for a in some] == expected and expected
    assert json.loads(out.splitlines()[0])["anomalies"] == len(expected)
    assert out.splitlines()[1:] == ["--symbols: no trade of NOSUCH was read"]


def test_generate_counts_one_symbol_as_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "m.dbn.zst"), "--symbols", "1", "--trades", "1002"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"wrote 1,002 trades for 1 symbol to {tmp_path / 'm.dbn.zst'}"


@pytest.mark.parametrize(("events", "said"), [(1_083, "1,083 labelled anomalies"), (1, "1 labelled anomaly")],
                         ids=["thousands", "one"])
def test_generate_counts_the_labelled_anomalies_as_it_counts_trades(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    events: int, said: str) -> None:
    """A 5,000-symbol market said 'wrote 6,000,000 trades' above 'wrote 1083 labelled anomalies'."""
    import types

    import adapters.synthetic

    monkeypatch.setattr(adapters.synthetic, "generate",
                        lambda *_, **__: types.SimpleNamespace(total_trades=6_000_000, events=[{}] * events))
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "m.dbn.zst"), "--symbols", "5000"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"wrote 6,000,000 trades for 5,000 symbols to {tmp_path / 'm.dbn.zst'}",
                                          f"wrote {said} to {tmp_path / 'm.labels.json'}"]


def test_generate_takes_a_name_in_capitals_as_the_readers_do(tmp_path: Path) -> None:
    """X.DBN.ZST was refused (the readers take it), and its labels or compression went by the case."""
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "M.DBN.ZST"), "--symbols", "1", "--trades", "1002"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "M.DBN.ZST").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd, as the name says
    assert result.stdout.splitlines()[1].endswith(f"to {tmp_path / 'M.labels.json'}")
    assert (tmp_path / "M.labels.json").exists()


def test_replay_says_which_of_the_symbols_asked_for_never_traded() -> None:
    result = CliRunner().invoke(main, ["replay", "--json", "--symbols", "NOPE,vndr"])
    assert result.exit_code == 0
    assert result.stderr.strip().splitlines()[-1] == "--symbols: no trade of NOPE, VNDR was read"


@pytest.mark.parametrize(("window", "said"), [
    (["--since", "2030-01-01"], "--since 2030-01-01: no trade was read from then on (the last at 2025-"),
    (["--until", "2000-01-01"], "--until 2000-01-01: no trade was read before it"),
])
def test_replay_says_when_its_window_holds_no_trade(window: list[str], said: str) -> None:
    """Nothing judged or reported, exit 0: a mistyped year read like a quiet day."""
    result = CliRunner().invoke(main, ["replay", "--json", *window])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["anomalies"] == 0
    assert result.stderr.strip().splitlines()[-1].startswith(said)


def test_messages_on_stderr_stay_on_one_line_when_it_is_not_a_terminal() -> None:
    """rich assumed 80 columns off a terminal and folded a message over several lines (a log
    collector then sees fragments)."""
    names = [f"NOSUCH{i:03d}" for i in range(40)]
    result = CliRunner().invoke(main, ["replay", "--json", "--symbols", ",".join(names)])
    assert result.exit_code == 0
    assert result.stderr.strip().splitlines()[-1] == \
        f"--symbols: no trade of {', '.join(names[:20])} and 20 more was read"
    assert json.loads(result.stdout)["anomalies"] == 0


def test_replay_narrowed_by_symbols_or_time_says_its_figures_are_of_that_selection() -> None:
    """--json and the summary said '0 anomalies' for a symbol or window of a busy tape, with nothing to
    tell them from a quiet run's."""
    code, out = run("replay", "--json", "--symbols", "nope,ZVE", "--since", "2025-03-03T14:30:00Z")
    assert code == 0, out
    assert json.loads(out.splitlines()[0])["selection"] == {"symbols": ["NOPE", "ZVE"],
                                                            "since": "2025-03-03T14:30:00Z"}
    code, out = run("replay", "--until", "1741012200000000001")
    assert code == 0, out
    assert "read only up to 2025-03-03T14:30:00.000000001Z (09:30:00 New York) (--until)" in out.splitlines()
    code, out = run("replay", "--json", "--top", "0")
    assert "selection" not in json.loads(out)


def test_a_replays_time_selection_is_said_on_the_exchanges_clock_too() -> None:
    """Every table shows New York time, but a --since without an offset is UTC: an analyst who typed the
    09:50 of a table got 05:50 New York, and the note said only '2025-05-06T09:50:00Z'."""
    code, out = run("replay", "--since", "2025-03-03T14:30", "--until", "2025-03-04T00:00Z", "--top", "0")
    assert code == 0, out
    note = next(line for line in out.splitlines() if line.startswith("reported only"))
    assert "from 2025-03-03T14:30:00Z (09:30:00 New York)" in note
    assert note.endswith("read only up to 2025-03-04T00:00:00Z (2025-03-03 19:00:00 New York) (--until)")


def test_a_report_narrowed_by_since_charts_the_trades_from_then_on(tmp_path: Path) -> None:
    """Its note said 'reported only: from 11:00', and its charts and subtitle began at the open (every
    trade read: the trades before --since are judged, for the state, not reported)."""
    report = tmp_path / "r.html"
    code, out = run("replay", "--since", "2025-03-03T16:00:00Z", "--report", str(report), "--top", "0")
    assert code == 0, out
    html = report.read_text()
    assert "Trades from 2025-03-03 11:00 to 2025-03-03 16:00 New York time" in html
    code, out = run("replay", "--report", str(report), "--top", "0")
    assert code == 0 and "Trades from 2025-03-03 09:30 to" in report.read_text()  # the whole day without it


def test_replay_until_reads_and_counts_only_the_trades_before_it(tmp_path: Path) -> None:
    """It judged and counted the whole chunk it was in the middle of (the report charted 70 minutes
    past it on a real day)."""
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol\n" + "".join(
        f"2025-05-05T14:{m // 60:02d}:{m % 60:02d}Z,100.{m % 100:02d},100,ACME\n" for m in range(3_000)))
    code, out = run("replay", str(data), "--json", "--until", "2025-05-05T14:20:00Z")
    assert code == 0, out
    assert json.loads(out)["trades"] == 20 * 60


def test_replay_narrowed_to_a_symbol_and_a_time_reports_the_full_runs_incidents_whole(tmp_path: Path) -> None:
    """An incident in the selection (its symbol's, overlapping the window) is the full run's, even one
    that started before --since: it used to be regrouped from the reported anomalies only (another
    id, fewer members)."""
    assert run("replay", "--out", str(tmp_path / "all.jsonl"))[0] == 0  # the built-in sample
    incidents = [json.loads(line) for line in (tmp_path / "all.incidents.jsonl").read_text().splitlines()]
    straddling = next(i for i in incidents if i["size"] >= 2)
    since = (straddling["start_ns"] + straddling["end_ns"]) // 2
    code, out = run("replay", "--out", str(tmp_path / "cut.jsonl"), "--symbols", straddling["symbol"],
                    "--since", str(since))
    assert code == 0, out
    cut = [json.loads(line) for line in (tmp_path / "cut.incidents.jsonl").read_text().splitlines()]
    assert cut == [i for i in incidents if i["symbol"] == straddling["symbol"] and i["end_ns"] >= since]
    assert straddling in cut


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "2025-05-06T15:00Z", "--until", "2025-05-06T13:00Z"], "is not before --until"),
    # Named, and without the age (1h) that query's message offers: a replay refuses ages.
    (["--since", "yesterdayish"], "--since: cannot read time 'yesterdayish': give a time (2025-05-05T13:00:00Z, "
                                  "2025-05-05T09:30:00-04:00), a date or integer ns"),
    (["--until", "2025-13-01"], "--until: cannot read time '2025-13-01'"),
    # An age counts from the clock: a replay of history selected nothing with it, silently.
    (["--since", "1h"], "--since '1h' is relative to now, and a replay reads history"),
    (["--until", "now"], "--until 'now' is relative to now, and a replay reads history"),
])
def test_replay_refuses_a_window_it_cannot_use_in_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["replay", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("command", "option", "target", "message"), [
    ("replay", "--out", "input", "--out {input} is the input {input}"),
    ("replay", "--dead-letters", "input", "--dead-letters {input} is the input {input}"),
    ("replay", "--report", "input", "--report {input} is the input {input}"),
    ("replay", "--out", "thresholds", "--out {thresholds} is --thresholds {thresholds}"),
    ("replay", "--dead-letters", "incidents", "--dead-letters {incidents} is --out's incidents file: both would "
                                              "write that file; choose another"),
    ("calibrate", "--out", "input", "--out {input} is the input {input}"),
])
def test_an_output_that_is_an_input_or_another_output_is_refused_before_anything_is_written(
        tmp_path: Path, command: str, option: str, target: str, message: str) -> None:
    """Opening such a file for writing emptied the input before it was read (a 6.5 MB day became 168
    bytes), or two outputs wrote into one file."""
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol\n" + "".join(
        f"2025-05-05T14:{m:02d}:00Z,100.{m:02d},100,ACME\n" for m in range(30)))
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text('{"ACME": {"size_threshold": 500}}')
    kept = {p: p.read_bytes() for p in (data, thresholds)}
    paths = {"input": data, "thresholds": thresholds, "incidents": tmp_path / "a.incidents.jsonl"}
    args = [command, str(tmp_path)] if command == "calibrate" else [command, str(data), "--thresholds", str(thresholds)]
    if option != "--out" or command == "calibrate":
        args += ["--out", str(tmp_path / "a.jsonl")] if command == "replay" else []
    code, out = run(*args, option, str(paths[target]))
    assert code == 1, out
    said = message.format(**{k: str(v) for k, v in paths.items()})
    ending = "" if "both would" in said else ": writing it would destroy it; choose another file"
    assert out.strip().splitlines() == [f"Error: {said}{ending}"]
    assert {p: p.read_bytes() for p in kept} == kept
    assert not (tmp_path / "a.jsonl").exists()


@pytest.mark.parametrize(("command", "option"), [("replay", "--out"), ("replay", "--report"),
                                                 ("replay", "--dead-letters"), ("calibrate", "--out")])
def test_an_output_named_as_a_file_of_trades_is_refused_before_anything_is_written(
        tmp_path: Path, command: str, option: str) -> None:
    """`replay DAY --out other-day.dbn.zst` wrote the anomalies' JSON lines over another day's data (and
    its incidents beside it, as other-day.dbn.incidents.zst), exit 0; a new file of that name was left
    for replay to fail on later."""
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol\n" + "".join(
        f"2025-05-05T14:{m:02d}:00Z,100.{m:02d},100,ACME\n" for m in range(30)))
    other = tmp_path / "other-day.dbn.zst"
    other.write_bytes(b"market data")
    code, out = run(command, str(data), option, str(other))
    assert code == 1, out
    assert out.strip().splitlines() == [
        f"Error: {option} {other} is named as a file of trades (.dbn, .dbn.zst, .csv, .csv.zst), which this command "
        "does not write: it would overwrite one, or leave one no reader can read; choose another name"]
    assert other.read_bytes() == b"market data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.csv", "other-day.dbn.zst"]


@pytest.mark.parametrize("variable", ["STOCKANOMALY_OUT", "STOCKANOMALY_DEAD_LETTERS"])
def test_an_output_variable_that_names_an_input_is_refused_as_the_flag_is(
        tmp_path: Path, variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables stand in for --out and --dead-letters: one naming the input emptied it before it
    was read (`nothing was read`), where the flag is refused."""
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol\n" + "".join(
        f"2025-05-05T14:{m:02d}:00Z,100.{m:02d},100,ACME\n" for m in range(30)))
    kept = data.read_bytes()
    monkeypatch.setenv(variable, str(data))
    code, out = run("replay", str(data))
    assert code == 1, out
    assert out.strip().splitlines() == [f"Error: {variable} {data} is the input {data}: writing it would destroy it; "
                                        "choose another file"]
    assert data.read_bytes() == kept


def test_an_empty_input_path_is_refused_not_read_as_the_current_directory() -> None:
    code, out = run("replay", "")
    assert code == 1 and "an empty input path" in out


def test_generate_then_evaluate(tmp_path: Path) -> None:
    data = tmp_path / "m.dbn.zst"
    code, out = run("generate", str(data), "--symbols", "4", "--trades", "120000", "--seed", "3")
    assert code == 0, out
    assert data.exists() and (tmp_path / "m.labels.json").exists()
    code, out = run("evaluate", str(data), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert "by_type" in report and "by_detector" in report
    assert report["false_alarms_per_100k_normal"] >= 0


@needs_shared
def test_evaluate_refuses_another_markets_labels_with_as_many_trades(tmp_path: Path) -> None:
    """Another seed's labels passed the trade count check and scored every event as missed, exit 0."""
    for seed in ("1", "2"):
        code, out = run("generate", str(tmp_path / f"m{seed}.dbn.zst"), "--symbols", "2", "--trades", "3000",
                        "--seed", seed)
        assert code == 0, out
    error = one_line_error(["evaluate", str(tmp_path / "m1.dbn.zst"), "--labels", str(tmp_path / "m2.labels.json")])
    assert error.startswith("Error: the labels' events are on symbols DATA does not trade (") and \
        error.endswith(f"they are not its labels ({tmp_path / 'm2.labels.json'})")


def test_calibrate_says_how_many_records_it_rejected_and_why(tmp_path: Path) -> None:
    """They were left out of the thresholds in silence (replay counts the same rows as rejected)."""
    data = tmp_path / "day.csv"
    rows = [f"2025-05-05T14:{m:02d}:00Z,100.{m:02d},100,ACME" for m in range(30)]
    rows[3], rows[7], rows[9] = "2025-05-05T14:03:00Z,abc,100,ACME", "2025-05-05T14:07:00Z,-1,100,ACME", \
        "2025-05-05T14:09:00Z,100.09,0,ACME"
    data.write_text("ts_event,price,size,symbol\n" + "\n".join(rows) + "\n")
    code, out = run("calibrate", str(data), "--out", str(tmp_path / "t.json"), "--min-trades", "1")
    assert code == 0, out
    assert "(27 trades, auction crosses aside)" in out  # replay counts the crosses too: said where they differ
    assert out.strip().splitlines()[-1] == "rejected, not counted: bad_price 1, bad_row 1, bad_size 1"


def test_replay_says_where_its_rejected_records_can_be_seen(tmp_path: Path) -> None:
    """'rejected: bad_row 1' alone left the way to the rows and their reasons to the help page."""
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol\n2025-05-05T14:00:00Z,100.5,100,ACME\n"
                    "2025-05-05T14:01:00Z,abc,100,ACME\n")
    code, out = run("replay", str(data))
    assert code == 0, out
    assert "rejected (--dead-letters FILE keeps each with its place and why): bad_row 1" in out.splitlines()
    code, out = run("replay", str(data), "--dead-letters", str(tmp_path / "dl.jsonl"))
    assert code == 0 and "rejected: bad_row 1" in out.splitlines()  # kept: nothing to point to
    assert json.loads((tmp_path / "dl.jsonl").read_text())["origin"] == f"{data}, line 3"


def test_calibrate_with_no_symbol_reaching_min_trades_writes_nothing_and_says_why(tmp_path: Path) -> None:
    """It wrote a thresholds file of 0 symbols and exited 0: given to a worker, it changes nothing."""
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol\n" + "\n".join(f"2025-05-05T14:{m:02d}:00Z,100,100,ACME"
                                                                for m in range(30)) + "\n")
    out = tmp_path / "t.json"
    assert one_line_error(["calibrate", str(data), "--out", str(out)]) == (
        f"Error: no symbol has --min-trades 1,000 trades (auction crosses aside) in {data}: "
        f"no thresholds written to {out}")
    assert not out.exists()


def test_calibrate_counts_a_day_given_twice_once_and_says_so(tmp_path: Path) -> None:
    """A copy of the day beside it doubled every symbol's trades (and let --min-trades through)."""
    code, out = run("generate", str(tmp_path / "m.dbn.zst"), "--symbols", "2", "--trades", "3000", "--seed", "1")
    assert code == 0, out
    (tmp_path / "copy.dbn.zst").write_bytes((tmp_path / "m.dbn.zst").read_bytes())
    code, once = run("calibrate", str(tmp_path / "m.dbn.zst"), "--out", str(tmp_path / "a.json"), "--min-trades", "1")
    assert code == 0, once
    code, twice = run("calibrate", str(tmp_path / "m.dbn.zst"), str(tmp_path / "copy.dbn.zst"),
                      "--out", str(tmp_path / "b.json"), "--min-trades", "1")
    assert code == 0, twice
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert twice.strip().splitlines()[-1] == ("rejected, not counted: duplicate 3,000 (duplicate: a trade read more "
                                              "than once, as from one day in two files, counts once)")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("STOCKANOMALY_CHUNK_SIZE", "abc", "Error: STOCKANOMALY_CHUNK_SIZE: Input should be a valid integer"),
    ("STOCKANOMALY_DETECTORS", "nope", "Error: STOCKANOMALY_DETECTORS: unknown detector 'nope'"),
    ("STOCKANOMALY_THRESHOLDS", "labels", "Error: thresholds file {labels}: not a thresholds file"),
])
def test_evaluate_with_a_bad_setting_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       variable: str, value: str, message: str) -> None:
    """It was a traceback (ConfigError) when scoring against generated labels."""
    data, labels = tmp_path / "m.dbn.zst", tmp_path / "m.labels.json"
    code, out = run("generate", str(data), "--symbols", "2", "--trades", "3000", "--seed", "1")
    assert code == 0, out
    monkeypatch.setenv(variable, str(labels) if value == "labels" else value)
    assert one_line_error(["evaluate", str(data)]).startswith(message.format(labels=labels))


def test_an_unknown_detector_is_refused_naming_the_flag_or_the_variable_that_gave_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate has no --detectors: 'unknown detectors' alone left a variable set long ago to be guessed."""
    assert one_line_error(["replay", "--detectors", "high_volume,telepathy"]).startswith(
        "Error: --detectors: unknown detector 'telepathy'; choose from high_volume, ")
    # Several are named as given, not as a Python list.
    assert one_line_error(["replay", "--detectors", "telepathy,high_volume,clairvoyance"]).startswith(
        "Error: --detectors: unknown detectors 'clairvoyance', 'telepathy'; choose from high_volume, ")
    monkeypatch.setenv("STOCKANOMALY_DETECTORS", "Telepathy")
    assert one_line_error(["replay"]).startswith("Error: STOCKANOMALY_DETECTORS: unknown detector 'telepathy'")


def test_evaluate_refuses_labels_and_verdicts_together(tmp_path: Path) -> None:
    """--labels was ignored in silence: the table scored the verdicts."""
    (tmp_path / "v.jsonl").write_text("")
    (tmp_path / "m.labels.json").write_text("{}")
    result = CliRunner().invoke(main, ["evaluate", str(DBN_SAMPLE), "--labels", str(tmp_path / "m.labels.json"),
                                       "--verdicts", str(tmp_path / "v.jsonl")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == \
        "Error: give --labels (a generated market's) or --verdicts (analysts'), not both"


@needs_shared
def test_a_book_file_without_trades_says_so_and_evaluate_says_there_is_nothing_to_score(tmp_path: Path) -> None:
    """An mbp-1 file of book adds only replayed as '0 trades' without a word, and `evaluate
    --verdicts` on it printed a table header and nothing else."""
    book = SHARED / "databento" / "xnas-itch.mbp-1.sample.dbn.zst"
    code, out = run("replay", str(book))
    assert code == 0, out
    assert "0 trades in" in out
    assert out.strip().splitlines()[-1] == ("no trade in the input: book files (mbp-1, mbp-10, tbbo) hold trades "
                                            "only as their records with action T")
    # a CSV of a header only is no book file: no hint about them
    header = tmp_path / "header.csv"
    header.write_text("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,"
                      "ts_in_delta,sequence,symbol\n")
    code, out = run("replay", str(header))
    assert code == 0 and out.strip().splitlines()[-1] == "no trade in the input"
    verdicts = tmp_path / "v.jsonl"
    assert run("label", "0" * 32, "--confirmed", "--file", str(verdicts))[0] == 0
    code, out = run("evaluate", str(book), "--verdicts", str(verdicts))
    assert code == 0, out
    assert out.strip().splitlines() == [f"no detections in {book}: nothing to score against 1 verdict in {verdicts}"]


@needs_shared
def test_a_file_with_trades_says_nothing_of_book_files() -> None:
    code, out = run("replay", "--top", "0", str(DBN_SAMPLE))
    assert code == 0 and "trades in" in out and "0 trades in" not in out
    assert "book files" not in out


def test_calibrate_on_a_market_lists_a_few_symbols_and_counts_the_rest_and_those_left_out(tmp_path: Path) -> None:
    """It printed a line per symbol: 1,488 lines for a 2,000-symbol market, the summary at their end, and
    not a word on the 512 symbols that got no threshold (too few trades) and stay on the default rule."""
    from entrypoints.cli_review import CALIBRATE_LISTED

    rows = [f"2025-05-05T14:00:{k // 100:02d}.{k % 100:02d}Z,100,{1 + k % 7},S{s:03d}"
            for s in range(CALIBRATE_LISTED + 5) for k in range(3 if s % 5 == 0 else 20)]
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol,side\n" + "".join(r + ",B\n" for r in rows))
    out = tmp_path / "t.json"
    code, text = run("calibrate", str(data), "--out", str(out), "--min-trades", "10")
    assert code == 0, text
    lines = text.strip().splitlines()
    assert len(json.loads(out.read_text())["symbols"]) == 20 == len(lines) - 2
    assert lines[-2:] == [f"wrote thresholds for 20 symbols to {out}",
                          "no threshold for 5 symbols with fewer than --min-trades 10 trades (auction crosses aside): "
                          "the default rule judges them"]
    more = [f"S{s:03d}" for s in range(CALIBRATE_LISTED + 5) if s % 5] + ["S999"]
    data.write_text("ts_event,price,size,symbol,side\n" + "".join(
        f"2025-05-05T14:00:{k // 100:02d}.{k % 100:02d}Z,100,{1 + k % 7},{s},B\n" for s in more for k in range(20)))
    code, text = run("calibrate", str(data), "--out", str(out), "--min-trades", "10")
    assert code == 0, text
    lines = text.strip().splitlines()
    assert len(lines) == CALIBRATE_LISTED + 2 and lines[0].startswith("S001 ")
    assert lines[-2:] == [f"... and 1 more, none busier (every symbol's is in {out})",
                          f"wrote thresholds for 21 symbols to {out}"]


def test_calibrate_lists_the_busiest_symbols_first_and_its_file_keeps_every_one_by_name(tmp_path: Path) -> None:
    """It listed the first 20 symbols by name: a market's A-names, whatever they trade. An analyst wants
    the names that trade most: their thresholds judge the most prints and rest on the most history."""
    from entrypoints.cli_review import CALIBRATE_LISTED

    # Z00..Z24 trade 30..54 times (the busiest last by name); A00..A04 50 times, as Z20 does; B00 once.
    counts = {f"Z{s:02d}": 30 + s for s in range(25)} | {f"A{s:02d}": 50 for s in range(5)} | {"B00": 1}
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol,side\n" + "".join(
        f"2025-05-05T14:{k // 60:02d}:{k % 60:02d}Z,100,{1 + k % 7},{symbol},B\n"
        for k in range(max(counts.values())) for symbol, n in counts.items() if k < n))
    out = tmp_path / "t.json"
    code, text = run("calibrate", str(data), "--out", str(out), "--min-trades", "10")
    assert code == 0 and "rejected" not in text, text
    lines = text.strip().splitlines()
    # Most trades first, a tie by name.
    assert [line.split()[0] for line in lines[:CALIBRATE_LISTED]] == \
        ["Z24", "Z23", "Z22", "Z21", "A00", "A01", "A02", "A03", "A04", "Z20"] + [f"Z{s:02d}" for s in range(19, 9, -1)]
    assert [int(line.split("(")[1].split()[0]) for line in lines[:6]] == [54, 53, 52, 51, 50, 50]
    assert lines[CALIBRATE_LISTED:] == [
        f"... and 10 more, none busier (every symbol's is in {out})", f"wrote thresholds for 30 symbols to {out}",
        "no threshold for 1 symbol with fewer than --min-trades 10 trades (auction crosses aside): the default rule "
        "judges them"]
    # The file holds every one, by name: a lookup table, and two calibrations compare line by line.
    assert list(json.loads(out.read_text())["symbols"]) == sorted(set(counts) - {"B00"})


def test_calibrate_json_is_one_object_with_every_symbols_threshold_and_those_left_out(tmp_path: Path) -> None:
    """Automation had only the lines: 20 symbols listed, the rest counted, to be parsed from words."""
    from entrypoints.cli_review import CALIBRATE_LISTED

    counts = {f"Z{s:02d}": 30 + s for s in range(CALIBRATE_LISTED + 5)} | {"B00": 1, "B01": 3}
    rows = [f"2025-05-05T14:{k // 60:02d}:{k % 60:02d}Z,100,{1 + k % 7},{symbol},B"
            for k in range(max(counts.values())) for symbol, n in counts.items() if k < n]
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol,side\n" + "\n".join(rows) + "\n2025-05-05T15:00:00Z,abc,1,Z00,B\n")
    out = tmp_path / "t.json"
    result = CliRunner().invoke(main, ["calibrate", str(data), "--out", str(out), "--min-trades", "10", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1
    said = json.loads(result.stdout)
    written = json.loads(out.read_text())["symbols"]
    assert [t["symbol"] for t in said["symbols"]] == [f"Z{s:02d}" for s in range(CALIBRATE_LISTED + 4, -1, -1)]
    assert {t.pop("symbol"): t for t in said["symbols"]} == written  # every one, as the file holds it
    assert {k: said[k] for k in ("source", "out", "quantile", "multiple", "min_trades", "too_few", "dead_letters")} \
        == {"source": [str(data)], "out": str(out), "quantile": 0.999, "multiple": 8.0, "min_trades": 10,
            "too_few": {"B01": 3, "B00": 1}, "dead_letters": {"bad_row": 1}}
    assert list(said["too_few"]) == ["B01", "B00"]  # most trades first, as the symbols


def test_replay_names_a_few_unseen_symbols_and_counts_the_rest(tmp_path: Path) -> None:
    """A watch list of 2,000 symbols, none traded in the file, gave a 14 KB line naming each."""
    data = tmp_path / "day.csv"
    data.write_text("ts_event,price,size,symbol\n2025-05-05T14:00:00Z,100,100,ACME\n")
    wanted = ",".join(f"Q{k:04d}" for k in range(2000))
    result = CliRunner().invoke(main, ["replay", str(data), "--symbols", wanted])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if line.startswith("--symbols")]
    assert said == ["--symbols: no trade of " + ", ".join(f"Q{k:04d}" for k in range(20)) + " and 1,980 more was read"]


def test_calibrate_writes_thresholds_the_replay_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "thresholds.json"
    code, text = run("calibrate", str(NVDA_DAY), "--out", str(out))
    assert code == 0, text
    saved = json.loads(out.read_text())
    assert 1_000 < saved["symbols"]["NVDA"]["size_threshold"] < 100_000
    code, text = run("replay", "--json", "--thresholds", str(out), "--detectors", "high_volume", str(DBN_SAMPLE))
    assert code == 0 and json.loads(text)["thresholds_file"] == str(out), text
    # Which file moved high_volume's line is said, also when a variable set long ago named it.
    monkeypatch.setenv("STOCKANOMALY_THRESHOLDS", str(out))
    code, text = run("replay", str(DBN_SAMPLE))
    assert code == 0 and f"calibrated size thresholds from {out} (high_volume)" in " ".join(text.split()), text
    monkeypatch.delenv("STOCKANOMALY_THRESHOLDS")
    code, text = run("replay", "--json", str(DBN_SAMPLE))
    assert code == 0 and "thresholds_file" not in json.loads(text), text


def test_thresholds_of_which_no_symbol_traded_are_said_to_have_changed_nothing(tmp_path: Path) -> None:
    """Thresholds calibrated on another market (NVDA's, over a generated one) were taken without a
    word, and every print was judged by the default rule as if they had been read."""
    data, thresholds = tmp_path / "m.dbn", tmp_path / "t.json"
    assert run("generate", str(data), "--symbols", "4", "--trades", "20000")[0] == 0
    thresholds.write_text(json.dumps({"format": 1, "quantile": 0.999, "multiple": 8.0,
                                      "symbols": {"NVDA": {"size_threshold": 28_000.0}}}))
    said = (f"--thresholds {thresholds}: none of its 1 symbol (NVDA) traded here: every print was judged by the "
            "default rule")
    for command in (["replay", "--json"], ["evaluate", "--json"]):
        result = CliRunner().invoke(main, [*command, str(data), "--thresholds", str(thresholds)])
        assert result.exit_code == 0, result.output
        assert result.stderr.strip().splitlines()[-1] == said
    result = CliRunner().invoke(main, ["replay", "--json", str(DBN_SAMPLE), "--thresholds", str(thresholds)])
    assert result.exit_code == 0 and "none of its" not in result.stderr  # the sample trades NVDA


@needs_shared
def test_calibrate_counts_symbols_in_words_and_a_bad_thresholds_file_is_named(tmp_path: Path) -> None:
    out = tmp_path / "thresholds.json"
    code, text = run("calibrate", str(NVDA_DAY), "--out", str(out))
    assert code == 0 and f"wrote thresholds for 1 symbol to {out}" in text, text
    saved = json.loads(out.read_text())
    saved["symbols"]["NVDA"]["size_threshold"] = 0
    out.write_text(json.dumps(saved))
    assert one_line_error(["replay", "--thresholds", str(out), str(DBN_SAMPLE)]) == \
        f"Error: thresholds file {out}: symbol 'NVDA': size_threshold must be positive, got 0.0"


@pytest.mark.parametrize(("option", "value"), [("--quantile", "nan"), ("--multiple", "inf"), ("--multiple", "nan")])
def test_calibrate_refuses_a_number_that_is_not_finite(option: str, value: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["calibrate", str(DBN_SAMPLE), "--out", str(tmp_path / "t.json"), option, value])
    assert result.exit_code == 2 and f"'{value}' is not a finite number" in result.output
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("command", [["replay", "--report"], ["replay", "--dead-letters"], ["calibrate", "--out"],
                                     ["generate"], ["suppress", "--symbol", "NVDA", "--file"], ["label", "0" * 32,
                                                                                              "--confirmed", "--file"]])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    target = str(tmp_path / "a-file" / "out")
    args = [*command, target] + ([str(DBN_SAMPLE)] if command[0] == "calibrate" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"'{target}' cannot be created: '{tmp_path / 'a-file'}' is not a directory" in result.output


@pytest.mark.parametrize("command", [["replay", "--report"], ["replay", "--out"], ["replay", "--dead-letters"],
                                     ["calibrate", "x.dbn", "--out"], ["generate"],
                                     ["suppress", "--symbol", "NVDA", "--file"],
                                     ["label", "0" * 32, "--confirmed", "--file"]],
                         ids=["replay-report", "replay-out", "replay-dead-letters", "calibrate-out", "generate",
                              "suppress-file", "label-file"])
@pytest.mark.parametrize("where", ["a link to a missing directory", "/proc"], ids=["link-to-nowhere", "proc"])
def test_an_output_the_system_would_refuse_is_refused_before_any_data_is_read(
        command: list[str], where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked of its directory (os.access), the check said yes: `replay --report` failed once the whole run
    was over ('Error: r.html: No such file or directory'), as calibrate's --out and generate's OUT did."""
    import entrypoints.cli as cli
    import entrypoints.cli_review as cli_review

    if where == "/proc" and not Path("/proc/self").exists():
        pytest.skip("needs Linux's /proc")
    monkeypatch.setattr(cli, "sample_source", lambda *_: pytest.fail("data was read"))
    for module in (cli, cli_review):  # replay's and calibrate's
        monkeypatch.setattr(module, "file_source", lambda *_: pytest.fail("data was read"))
    target = Path("/proc/out.dbn") if where == "/proc" else tmp_path / "out.dbn"
    if where != "/proc":
        target.symlink_to(tmp_path / "missing" / "out.dbn")

    result = CliRunner().invoke(main, [*command, str(target)])

    assert result.exit_code == 2 and "Traceback" not in result.output
    option = "'OUT'" if command == ["generate"] else f"'{command[-1]}'"
    assert result.output.splitlines()[-1].startswith(f"Error: Invalid value for {option}: '{target}' cannot be created: ")


def test_generate_refuses_before_generating_when_its_labels_cannot_be_written_beside_it(tmp_path: Path) -> None:
    """It wrote the market, then failed on its labels ('Error: m.labels.json.partial: Is a directory'): a
    market without labels, and an error naming a file the user never named."""
    (tmp_path / "m.labels.json").mkdir()

    result = CliRunner().invoke(main, ["generate", str(tmp_path / "m.dbn.zst"), "--trades", "5000"])

    assert result.exit_code == 2 and not (tmp_path / "m.dbn.zst").exists()
    assert result.output.splitlines()[-1] == (f"Error: Invalid value for 'OUT': its labels are written beside it, "
                                              f"but '{tmp_path}/m.labels.json' is a directory")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("option", ["--out", "--dead-letters", "--report"])
def test_a_full_disk_ends_the_command_in_one_line_naming_the_file(option: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"  # a row the reader refuses: a dead letter to write
    bad.write_text("ts_event,price,size,symbol\n2025-05-05T14:00:00Z,100.0,10,NVDA\n2025-05-05T14:00:01Z,x,10,NVDA\n")
    result = CliRunner().invoke(main, ["replay", option, "/dev/full"] + ([str(bad)] if option == "--dead-letters" else []))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: /dev/full: No space left on device"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_generate_names_the_file_it_was_asked_for_not_the_one_written_in_its_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """It said 'Error: /proc/x.dbn.zst.partial: No such file or directory': a name the user never gave.
    (OUT is tried before the work now; skipped here, as when only the write itself fails.)"""
    import entrypoints.cli as cli

    monkeypatch.setattr(cli, "unwritable", lambda _: None)
    result = CliRunner().invoke(main, ["generate", "/proc/x.dbn.zst", "--trades", "5000"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: /proc/x.dbn.zst: No such file or directory"


def test_ctrl_c_during_a_replay_closes_its_outputs_and_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import entrypoints.cli as cli

    made = cli.sample_source

    class Interrupted:
        """The built-in sample, with Ctrl-C pressed once half of it was read."""

        def __init__(self, chunk_size: int) -> None:
            self.source = made(chunk_size)

        def chunks(self):  # type: ignore[no-untyped-def]
            for n, chunk in enumerate(self.source.chunks()):
                if n * len(chunk.trades) >= 200_000:
                    raise KeyboardInterrupt
                yield chunk

    monkeypatch.setattr(cli, "sample_source", Interrupted)
    out = tmp_path / "a.jsonl"
    result = CliRunner().invoke(main, ["replay", "--out", str(out), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 130 and "Traceback" not in result.output
    # Every file it wrote named (the incidents beside --out were not), and the report it did not write.
    assert result.output.strip().splitlines()[-1] == (
        f"interrupted: no summary; {out} and {tmp_path / 'a.incidents.jsonl'} hold what was found until then; "
        f"no report written to {tmp_path / 'r.html'}")
    assert (tmp_path / "a.incidents.jsonl").exists() and not (tmp_path / "r.html").exists()
    found = [json.loads(line) for line in out.read_text().splitlines()]  # whole lines: the file was closed
    assert found and all(a["detector"] for a in found)


def test_kernels_are_cached_under_the_temporary_directory_when_neither_the_sources_nor_a_home_can_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from entrypoints import kernel_cache_dir

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "a-file").write_text("")
    blocked = tmp_path / "a-file"  # nothing can be created below a file, even by root
    fallback = kernel_cache_dir(blocked / "domain", blocked / "cache" / "numba")
    assert fallback is not None and Path(fallback).parent == Path(tempfile.gettempdir())
    assert kernel_cache_dir(tmp_path / "domain", blocked / "numba") is None  # beside the sources
    assert kernel_cache_dir(blocked / "domain", tmp_path / "home" / ".cache" / "numba") is None  # the home's cache
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert kernel_cache_dir(blocked / "domain", blocked / "numba") is None  # the user's choice stands


def test_the_command_starts_without_importing_the_model_library_or_the_search_client() -> None:
    # scikit-learn (~1.1 s) is imported at the first model fit and the elasticsearch client (~0.35 s)
    # by the commands that talk to Elasticsearch: `--help`, ingest, tail and decode need neither.
    import subprocess
    import sys

    probe = ("import sys; import entrypoints.cli, entrypoints.settings; entrypoints.settings.load_settings(); "
             "print(sorted(m for m in ('sklearn', 'elasticsearch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ctrl_c_while_the_cli_is_still_loading_is_one_line_and_status_130(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C in the half second the CLI's imports take printed a KeyboardInterrupt traceback."""
    import sys
    import types

    from entrypoints import launch

    class Loading(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "entrypoints.cli", Loading("entrypoints.cli"))
    with pytest.raises(SystemExit) as ended:
        launch.main()
    assert ended.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_the_reports_incidents_do_not_follow_the_terminals_top(tmp_path: Path) -> None:
    """`--top` is how many the terminal lists: with --top 0 the report had no incidents at all."""
    for top in ("0", "3"):
        code, out = run("replay", "--top", top, "--json", "--report", str(tmp_path / f"r{top}.html"))
        assert code == 0, out
        html = (tmp_path / f"r{top}.html").read_text(encoding="utf-8")
        section = html[html.index("<h2>Top incidents</h2>"):html.index("<h2>Charts</h2>")]
        incidents = json.loads(out.splitlines()[0])["incidents"]
        assert section.count("<tr>") - 1 == min(incidents, 50) and incidents > 3


@pytest.mark.parametrize(("name", "where"), [
    ("empty.csv", "line 1"), ("empty.csv.zst", "line 1"), ("empty.dbn", "the start"), ("empty.dbn.zst", "the start")])
def test_a_file_with_nothing_in_it_is_one_line_without_an_empty_summary(tmp_path: Path, name: str, where: str) -> None:
    """A CSV printed a summary of 0 trades and empty tables, then "ArrowInvalid: Empty CSV file; the
    results above cover only what was read before it"; a DBN file said "ValueError: Cannot create
    data source from empty file: .../empty.dbn" (databento's exception, and the path a second time)."""
    empty = tmp_path / name
    empty.write_bytes(b"")
    result = CliRunner().invoke(main, ["replay", str(empty)])
    assert result.exit_code == 1
    header = "header line" if name.startswith("empty.csv") else "DBN header"
    assert result.output.strip().splitlines() == [
        f"Error: {empty}: unreadable from {where} on: the file is empty (no {header}); nothing was read"]


def test_count_tables_keep_their_title_on_one_line_say_what_was_left_out_and_are_not_printed_empty(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A narrow table folded its title ('Anomalies by' / 'symbol'); 15 of 19 symbols were shown as if they
    were all; a run that found nothing printed two empty tables."""
    import io

    from rich.console import Console

    from entrypoints import render

    def shown(result: dict) -> str:
        buffer = io.StringIO()
        monkeypatch.setattr(render, "out", Console(file=buffer, width=4096))
        render.render_replay({"source": ["x"], "trades": 10, "seconds": 1.0, "trades_per_second": 10.0,
                              "anomalies": sum(result.values()), "dead_letters": {}, "top": [],
                              "by_detector": {"high_volume": sum(result.values())} if result else {},
                              "by_symbol": result})
        return buffer.getvalue()

    many = {f"S{i:02d}": 20 - i for i in range(19)}
    text = shown(many)
    lines = [line.rstrip() for line in text.splitlines()]
    assert "Anomalies by symbol (the first 15 of 19)" in lines and "Anomalies by detector" in lines
    assert "S14" in text and "S15" not in text
    text = shown({})
    assert "Anomalies by" not in text and "0 anomalies" in text


def test_the_replay_summary_counts_one_of_a_thing_in_the_singular(monkeypatch: pytest.MonkeyPatch) -> None:
    """'2 anomalies in 1 incidents' (replay --symbols GIM on a generated market), '1 trades in',
    and show's '1 anomalies' for an incident of one."""
    import io

    from rich.console import Console

    from entrypoints import render

    console = Console(file=io.StringIO(), width=200)
    monkeypatch.setattr(render, "out", console)
    render.render_replay({"source": ["x.csv"], "trades": 1, "seconds": 0.1, "trades_per_second": 10.0,
                          "anomalies": 1, "incidents": 1, "by_detector": {}, "by_symbol": {}, "dead_letters": {},
                          "top": []})
    render.render_replay({"source": ["x.csv"], "trades": 2_000, "seconds": 0.1, "trades_per_second": 10.0,
                          "anomalies": 2, "incidents": 1, "by_detector": {}, "by_symbol": {}, "dead_letters": {},
                          "top": []})
    text = console.file.getvalue()  # type: ignore[attr-defined]

    assert "1 trade in 0.10s" in text and "1 anomaly in 1 incident\n" in text
    assert "2,000 trades in" in text and "2 anomalies in 1 incident\n" in text


@pytest.mark.parametrize(("variable", "args"), [
    ("STOCKANOMALY_OUT", ["replay", "--top", "0"]),
    ("STOCKANOMALY_DEAD_LETTERS", ["replay", "--top", "0"]),
    ("STOCKANOMALY_VERDICTS", ["label", "6a3e76bb1970fb5d3a8a335adcc3a6e7", "--confirmed"]),
    ("STOCKANOMALY_SUPPRESSIONS", ["suppress", "--symbol", "NVDA"]),
], ids=["out", "dead-letters", "verdicts", "suppressions"])
def test_an_output_variable_under_a_file_is_refused_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, args: list[str]) -> None:
    """As the flags are: creating the directory failed with 'notes.txt: File exists', naming neither
    the variable nor what was wrong."""
    (tmp_path / "notes.txt").write_text("a file, not a directory\n")
    monkeypatch.setenv(variable, str(tmp_path / "notes.txt" / "out.jsonl"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output == (f"Error: {variable}: '{tmp_path}/notes.txt/out.jsonl' cannot be created: "
                             f"'{tmp_path}/notes.txt' is not a directory\n")


def test_a_first_run_says_it_is_compiling_the_kernels_before_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """make replay's first run sat 20-50 s on a still progress bar (the compiler holds the
    interpreter): it read as a hang. Said on a terminal when numba has no kernel on disk yet."""
    import io

    from rich.console import Console

    import entrypoints.cli as cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, width=200))
    monkeypatch.setattr(cli, "kernels_cached", lambda kernel=None: False)
    assert run("replay", "--top", "0", "--detectors", "high_volume", str(DBN_SAMPLE))[0] == 0
    assert "compiling the detectors' kernels: once per machine, 30-60 s" in screen.getvalue()
    monkeypatch.setattr(cli, "kernels_cached", lambda kernel=None: True)
    screen.truncate(0)
    assert run("replay", "--top", "0", "--detectors", "high_volume", str(DBN_SAMPLE))[0] == 0
    assert "compiling" not in screen.getvalue()
    from domain.compiled import kernels_cached

    assert kernels_cached()  # the real check: numba's index of the kernels just run is on disk


def test_a_first_run_outside_a_terminal_says_it_is_compiling_in_one_plain_line_on_stderr(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a terminal (CI logs, cron, `replay ... | jq`, a container's first start) a machine's
    first run sat silent for ~49 s while numba compiled. Said there too, plainly, on stderr: stdout is
    the --json reader's."""
    import io

    from rich.console import Console

    import entrypoints.cli as cli

    monkeypatch.setattr(cli, "err", Console(file=io.StringIO(), force_terminal=False, width=4096))
    said = "compiling the detectors' kernels: once per machine, 30-60 s (later runs start at once)\n"
    runs = {}
    for cached in (False, True):
        monkeypatch.setattr(cli, "kernels_cached", lambda kernel=None, cached=cached: cached)
        result = CliRunner().invoke(main, ["replay", "--json", "--top", "1", "--detectors", "high_volume",
                                           str(DBN_SAMPLE)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        runs[cached] = result
    assert runs[False].stderr.count("compiling") == 1 and said in runs[False].stderr
    assert "\x1b" not in runs[False].stderr  # no colour, no spinner: a line a log keeps as it is
    assert "compiling" not in runs[True].stderr  # kernels on disk: a later run says nothing
    summaries = [json.loads(runs[cached].stdout) for cached in (False, True)]  # stdout untouched: JSON alone
    for summary in summaries:
        del summary["seconds"], summary["trades_per_second"]  # the clock's, not the run's
    assert summaries[0] == summaries[1] and summaries[0]["trades"] > 0


def test_evaluate_against_verdicts_says_it_is_compiling_the_kernels_too(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate --verdicts replays its DATA as evaluate does: the same wait, said the same way."""
    import io

    from rich.console import Console

    import entrypoints.cli as cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, width=200))
    monkeypatch.setattr(cli, "kernels_cached", lambda kernel=None: False)
    (tmp_path / "v.jsonl").write_text(json.dumps({"id": "0" * 32, "verdict": "confirmed"}) + "\n")
    code, out = run("evaluate", str(DBN_SAMPLE), "--verdicts", str(tmp_path / "v.jsonl"))
    assert code == 0 and out.startswith("no detections in "), out  # the sample has none to score
    assert "compiling the detectors' kernels: once per machine, 30-60 s" in screen.getvalue()


def test_replay_says_it_is_writing_the_report_after_its_bar_has_gone(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A report of 100 named symbols took 8 s after the replay's progress bar had gone, with nothing on
    the terminal; said on a terminal only, as the bar is."""
    import io

    from rich.console import Console

    import entrypoints.cli as cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, width=200))
    report = tmp_path / "r.html"
    assert run("replay", "--top", "0", "--report", str(report), str(DBN_SAMPLE))[0] == 0
    assert f"writing the report to {report}" in screen.getvalue() and report.exists()
    screen.truncate(0)
    assert run("replay", "--json", "--report", str(report), str(DBN_SAMPLE))[0] == 0
    assert "writing the report" not in screen.getvalue()


def test_a_first_ingest_says_it_is_compiling_its_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine's first ingest sat ~7 s on a still progress bar while its kernels compiled."""
    import io

    from rich.console import Console

    import numpy as np

    import entrypoints.cli as cli
    from adapters.kafka.codec import _symbol_tables, encode_runs
    from application.ingest import symbol_batches
    from builders import calm_flow

    runs = symbol_batches(calm_flow(50), 20)
    assert list(encode_runs(runs, np.zeros(len(runs), np.int64), 20))  # compiled, or loaded from numba's cache
    assert cli.kernels_cached(_symbol_tables)  # so numba's index of it exists: what a first ingest lacks
    screen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, width=200))
    monkeypatch.setattr(cli, "kernels_cached", lambda kernel=None: kernel is not _symbol_tables)
    assert run("ingest", str(DBN_SAMPLE), "--bootstrap", "127.0.0.1:1")[0] == 1  # said before Kafka is reached
    assert "compiling the ingest's kernels: once per machine, about 10 s" in screen.getvalue()


@pytest.mark.parametrize("command", [["tail"], ["decode"], ["ingest", str(DBN_SAMPLE)]])
def test_a_kafka_that_does_not_answer_is_said_in_one_line(command: list[str]) -> None:
    """The Kafka client's own message of the failed first connection came first: two lines."""
    result = CliRunner().invoke(main, [*command, "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: Kafka at 127.0.0.1:1: KafkaConnectionError: no broker answered at 127.0.0.1:1"]


def test_kafka_errors_read_as_one_clause_with_their_type() -> None:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    from adapters.kafka.errors import said

    both = ("Unable to bootstrap from [('a', 9092, <AddressFamily.AF_INET: 2>), "
            "('::1', 9093, <AddressFamily.AF_INET6: 10>)]")
    assert said(KafkaConnectionError(both)) == "KafkaConnectionError: no broker answered at a:9092, ::1:9093"
    assert said(KafkaTimeoutError()) == "KafkaTimeoutError"
    assert said(ValueError("x")) == "ValueError: x"
