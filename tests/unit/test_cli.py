"""The `stockanomaly` command as a user runs it."""

from __future__ import annotations

import json
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


def test_replay_is_deterministic(sample_json: dict) -> None:
    code, out = run("replay", "--json")
    again = json.loads(out)
    assert again["by_detector"] == sample_json["by_detector"]
    assert [a["id"] for a in again["top"]] == [a["id"] for a in sample_json["top"]]


def test_replay_prints_a_readable_summary() -> None:
    code, out = run("replay", "--detectors", "high_volume,price_change")
    assert code == 0
    assert "Anomalies by detector" in out and "Top anomalies" in out and "trades/s" in out


def test_replay_writes_anomalies_and_report(tmp_path: Path) -> None:
    out, report = tmp_path / "a.jsonl", tmp_path / "r.html"
    code, text = run("replay", "--json", "--out", str(out), "--report", str(report))
    assert code == 0, text
    summary = json.loads(text)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == summary["anomalies"]
    assert {"id", "symbol", "ts_event", "detector", "score", "reason", "price", "size"} <= set(rows[0])
    assert isinstance(rows[0]["ts_event"], int)
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<img" in html


@needs_shared
def test_replay_reads_real_dbn_files() -> None:
    code, out = run("replay", "--json", str(DBN_SAMPLE))
    assert code == 0, out
    result = json.loads(out)
    assert result["trades"] == 4 and result["anomalies"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["replay", "/no/such/file.dbn.zst"], "/no/such/file.dbn.zst"),
    (["replay", "--detectors", "telepathy"], "unknown detectors"),
    (["generate", "market.txt"], "must end with .dbn"),
    (["calibrate", "--out", "x.json"], "Missing argument"),
    (["replay", "--detectors", ","], "no detector selected"),
    (["generate", "m.dbn.zst", "--symbols", "5000", "--trades", "20000"], "too few for 5,000 symbols"),
    (["generate", "m.dbn.zst", "--date", "2025-13-45"], "is not a calendar day"),
], ids=["missing-file", "unknown-detector", "bad-extension", "no-paths", "no-detector", "impossible-market",
        "bad-date"])
def test_bad_arguments_give_a_clear_error(args: list[str], message: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output


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
def test_calibrate_writes_thresholds_the_replay_accepts(tmp_path: Path) -> None:
    out = tmp_path / "thresholds.json"
    code, text = run("calibrate", str(NVDA_DAY), "--out", str(out))
    assert code == 0, text
    saved = json.loads(out.read_text())
    assert 1_000 < saved["symbols"]["NVDA"]["size_threshold"] < 100_000
    code, text = run("replay", "--json", "--thresholds", str(out), "--detectors", "high_volume", str(DBN_SAMPLE))
    assert code == 0, text
