"""The tape around an anomaly: the trades of its symbol before it (on the anomaly) and after it (on its
incident), bounded in count and time, the same however the stream was cut, and `stockanomaly show`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from builders import calm_flow
from click.testing import CliRunner

from adapters.memory import InMemoryBlobStore, InMemoryTradeSource
from application.replay import Replay
from domain.context import CONTEXT_TRADES, CONTEXT_WINDOW_NS
from domain.model import TRADE_DTYPE, Print
from entrypoints.cli import main
from entrypoints.container import build_container

POINT_DETECTORS = {"high_volume", "price_spike", "vwap_deviation", "isolation_forest"}


def market() -> np.ndarray:
    """Two busy symbols and a thin one (a trade every 20 s on average), with block trades in each."""
    flows = [calm_flow(15_000, symbol="AAA", price=12.0, seed=1), calm_flow(15_000, symbol="BBB", price=450.0, seed=2),
             calm_flow(1_000, symbol="THIN", price=30.0, rate=0.05, seed=3)]
    trades = np.concatenate(flows).astype(TRADE_DTYPE)
    trades = trades[np.argsort(trades["ts_event"], kind="stable")]
    for symbol, k in (("AAA", 12_000), ("BBB", 13_000), ("BBB", 13_004), ("THIN", 800)):
        rows = np.flatnonzero(trades["symbol"] == symbol)
        trades["size"][rows[k]] = 400_000
    return trades


def prints(rows: np.ndarray) -> tuple[Print, ...]:
    return tuple(Print(int(r["ts_event"]), float(r["price"]), int(r["size"]), r["side"].decode() or "N") for r in rows)


def replayed(trades: np.ndarray, chunk: int, per_symbol: int = 64) -> tuple[list, list]:
    container = build_container()
    replay = Replay(container.detect(), InMemoryBlobStore(), top_n=10_000, per_symbol=per_symbol)
    summary = replay(InMemoryTradeSource(trades, chunk_size=chunk))
    return container.collected_anomalies().anomalies, summary.ranked_incidents()


def test_an_anomaly_carries_the_trades_before_it_and_its_incident_the_trades_after() -> None:
    trades = market()
    anomalies, incidents = replayed(trades, 4_096)
    blocks = [a for a in anomalies if a.detector == "high_volume"]
    assert {(a.symbol, a.size) for a in blocks} == {("AAA", 400_000), ("BBB", 400_000), ("THIN", 400_000)}
    after = {m: ps for i in incidents for m, ps in i.after.items()}
    for a in (a for a in anomalies if a.detector in POINT_DETECTORS):
        tape = trades[trades["symbol"] == a.symbol]
        at = int(np.flatnonzero((tape["ts_event"] == a.ts_event) & (tape["sequence"] == a.sequence))[0])
        near = np.abs(tape["ts_event"] - a.ts_event) <= CONTEXT_WINDOW_NS
        expected_before = tape[max(0, at - CONTEXT_TRADES):at][near[max(0, at - CONTEXT_TRADES):at]]
        expected_after = tape[at + 1:at + 1 + CONTEXT_TRADES]
        expected_after = expected_after[near[at + 1:at + 1 + CONTEXT_TRADES]]
        assert a.context == prints(expected_before), a
        assert after[a.id] == prints(expected_after), a
    thin = next(a for a in blocks if a.symbol == "THIN")
    assert len(thin.context) < CONTEXT_TRADES and all(a.ts_event - p.ts_event <= CONTEXT_WINDOW_NS
                                                      for p in thin.context)  # bounded in time, not only count
    assert all(len(a.context) == CONTEXT_TRADES for a in blocks if a.symbol != "THIN")
    # An incident's tape starts with its first member's.
    first = {a.id: a for a in anomalies}
    assert all(i.before == first[i.members[0]].context for i in incidents)


def test_contexts_are_the_same_however_the_stream_was_cut() -> None:
    trades = market()
    runs = [replayed(trades, chunk, per_symbol) for chunk, per_symbol in ((65_536, 64), (997, 1), (5, 1))]
    anomaly_sets = [{(a.id, a.context) for a in anomalies} for anomalies, _ in runs]
    incident_sets = [{(i.id, i.before, tuple(sorted(i.after.items()))) for i in incidents} for _, incidents in runs]
    assert anomaly_sets[0] == anomaly_sets[1] == anomaly_sets[2]
    assert incident_sets[0] == incident_sets[1] == incident_sets[2]
    assert sum(len(after) for _, _, after in incident_sets[0]) > 0


def with_a_burst(n: int = 400, within_ns: int = 500_000_000, symbol: str = "AAA", at: int = 9_000) -> np.ndarray:
    """market() and `n` trades of `symbol` within `within_ns` after its `at`-th (a trade_burst
    episode), then its calm again."""
    trades = market()
    mine = np.flatnonzero(trades["symbol"] == symbol)
    burst = np.repeat(trades[mine[at]:mine[at] + 1], n)
    burst["ts_event"] += np.linspace(1, within_ns, n).astype(np.int64)
    burst["ts_recv"] = burst["ts_event"]
    merged = np.concatenate([trades, burst])
    merged = merged[np.argsort(merged["ts_event"], kind="stable")]
    merged["sequence"] = np.arange(1, len(merged) + 1)
    return merged


@pytest.mark.parametrize(("symbol", "chunk"), [("AAA", 4_096), ("AAA", 7), ("THIN", 4_096), ("THIN", 7)])
def test_a_rate_episodes_tape_runs_on_to_the_print_that_completed_it_with_no_print_lost(symbol: str, chunk: int) -> None:
    """An episode is found at the print that completed its measure: that print was in neither its
    context (the trades before it) nor its incident's (the trades after it), and `show` listed the
    episode's own print twice."""
    from domain.context import own_print_at

    # AAA's burst goes on well past its crossing; THIN's crosses near its end, and THIN is then quiet
    # for seconds: its episode's tape reaches back to its own print.
    trades = with_a_burst(400, 500_000_000) if symbol == "AAA" else with_a_burst(100, 200_000_000, "THIN", 700)
    anomalies, incidents = replayed(trades, chunk)
    after = {m: ps for i in incidents for m, ps in i.after.items()}
    episodes = [a for a in anomalies if a.detector == "trade_burst" and a.symbol == symbol]
    assert episodes
    for a in episodes:
        tape = prints(trades[trades["symbol"] == a.symbol])
        around = a.context + after[a.id]
        starts = [k for k in range(len(tape)) if tape[k:k + len(around)] == around]
        assert starts, f"{a.id}: its tape is not a run of its symbol's trades"
        assert a.context[-1].ts_event > a.ts_event  # runs on past its own print
        own = own_print_at(a.context, a.ts_event, a.price, a.size)
        reaches = a.context[0].ts_event <= a.ts_event  # the context reaches back to its own print
        assert (own is not None) == reaches and (own is None or a.context[own].ts_event == a.ts_event)
        assert reaches == (symbol == "THIN")
    singles = [a for a in anomalies if a.detector in POINT_DETECTORS]
    assert singles and all(own_print_at(a.context, a.ts_event, a.price, a.size) is None for a in singles)


def test_show_marks_an_episodes_own_print_among_its_tape_once(tmp_path: Path) -> None:
    data = tmp_path / "burst.csv"
    from fixtures_sources.writers import csv_lines, write_csv

    write_csv(data, csv_lines(with_a_burst(100, 200_000_000, "THIN", 700)))
    out = tmp_path / "a.jsonl"
    assert run("replay", str(data), "--out", str(out))[0] == 0
    episode = next(a for a in map(json.loads, out.read_text().splitlines())
                   if a["detector"] == "trade_burst" and a["symbol"] == "THIN")
    code, text = run("show", episode["id"], "--file", str(out))
    assert code == 0, text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    own = [r for r in rows if "<- trade_burst" in r]
    clock = episode["ts_local"][11:26]
    assert len(own) == 1 and not [r for r in rows if clock in r and r not in own]
    assert "trades up to the print that completed its measure" in text


def test_an_episodes_tape_that_no_longer_reaches_its_print_says_trades_are_left_out() -> None:
    """Every rate episode on the real NVDA days: its print, then the ten trades before its end (0.07 ms
    to 58 s later), read as if nothing had traded in between, where a burst had hundreds of trades."""
    import io

    from rich.console import Console

    from entrypoints import render
    from entrypoints.render import tape_table

    ts = 1_746_537_393_000_000_000
    anomaly = {"ts_event": ts, "ts_local": "2025-05-06T09:16:33.000000000-04:00", "price": 112.5, "size": 100,
               "detector": "trade_burst"}
    later = [{"ts_event": ts + 800_000_000 + k, "price": 112.6, "size": 5, "side": "B"} for k in range(10)]
    console = Console(file=io.StringIO(), width=200)
    console.print(tape_table(later, [], anomaly, "tape"))
    rows = [line for line in console.file.getvalue().splitlines() if line.startswith("│")]  # type: ignore[attr-defined]

    assert "<- trade_burst" in rows[0] and rows[1].split("│")[1].strip() == render.EPISODE_GAP
    assert "+800.0" in rows[2] and len(rows) == 12


def test_the_tape_kept_per_symbol_is_small_and_fixed() -> None:
    engine = build_container().engine()
    assert engine.tape_schema.record_bytes <= 256  # 10 trades: time, price, size, side


def test_an_incident_collects_after_contexts_for_a_bounded_number_of_members() -> None:
    from builders import market_batch

    from domain.context import BatchTape
    from domain.incidents import MAX_CONTEXTS, IncidentGrouper
    from domain.model import Anomaly

    # 60 anomalies 2 s apart: one incident of 60 members, after-contexts for the first MAX_CONTEXTS only.
    flow = calm_flow(3_000, symbol="AAA", rate=20.0, seed=9)
    batch = market_batch(flow)
    tape = BatchTape(batch, np.array([0]))
    found = list(range(100, 100 + 40 * 60, 40))
    anomalies = [Anomaly.of_print("high_volume", "AAA", int(batch.ts[i]), 1.0, 1, 2, 7, int(batch.sequence[i]),
                                  2.0, "big", found=i) for i in found]
    grouper = IncidentGrouper()
    grouper.add(anomalies, tape)
    [incident] = grouper.flush()
    assert incident.size == 60 and len(incident.after) == MAX_CONTEXTS
    assert set(incident.after) == {a.id for a in anomalies[:MAX_CONTEXTS]}
    assert all(incident.after[a.id] == prints(flow[i + 1:i + 1 + CONTEXT_TRADES]) for a, i in zip(anomalies, found)
               if a.id in incident.after)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def replay_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("show") / "anomalies.jsonl"
    code, text = run("replay", "--out", str(out), "--top", "0")
    assert code == 0, text
    assert "incidents written to" in text and (out.parent / "anomalies.incidents.jsonl").exists()
    return out


def test_show_prints_an_anomaly_with_the_trades_around_it(replay_out: Path) -> None:
    incidents = [json.loads(line) for line in (replay_out.parent / "anomalies.incidents.jsonl").read_text().splitlines()]
    incident = next(i for i in incidents if "high_volume" in i["detectors"])
    anomalies = {a["id"]: a for a in map(json.loads, replay_out.read_text().splitlines())}
    member = next(m for m in incident["members"] if anomalies[m]["detector"] == "high_volume")
    code, text = run("show", member, "--file", str(replay_out), "--json")
    assert code == 0, text
    shown = json.loads(text)
    assert shown["kind"] == "anomaly" and shown["anomaly"]["id"] == member
    assert shown["incident"]["id"] == incident["id"]
    assert shown["before"] == anomalies[member]["context"] and len(shown["before"]) == CONTEXT_TRADES
    assert shown["after"] == incident["after"][member] and len(shown["after"]) == CONTEXT_TRADES
    code, text = run("show", member, "--file", str(replay_out))
    assert code == 0 and f"anomaly {member}" in text and "the tape around high_volume" in text
    # what was asked for first, then the incident it is in (which came first, unsaid what it was to it)
    assert text.index(f"anomaly {member}") < text.index(f"in incident {incident['id']}")
    assert f"{anomalies[member]['size']:,}" in text and "<- high_volume" in text


def test_show_prints_an_incident_with_its_members(replay_out: Path) -> None:
    incident = json.loads((replay_out.parent / "anomalies.incidents.jsonl").read_text().splitlines()[0])
    code, text = run("show", incident["id"], "--file", str(replay_out))
    assert code == 0, text
    assert f"incident {incident['id']}" in text and "members" in text and "the tape around" in text
    assert all(m in text for m in incident["members"][:3])


def test_show_names_the_members_of_an_incident_its_file_does_not_hold(replay_out: Path, tmp_path: Path) -> None:
    """`replay --since` writes an incident whole (grouped from the full run) but only the members from
    --since on: `show` said "2 anomalies", listed one, and its headline's anomaly was nowhere."""
    incidents = [json.loads(line) for line in (replay_out.parent / "anomalies.incidents.jsonl").read_text().splitlines()]
    incident = next(i for i in incidents if len(i["members"]) >= 2)
    first = incident["members"][0]
    out = tmp_path / "since.jsonl"
    out.write_text("".join(line + "\n" for line in replay_out.read_text().splitlines() if json.loads(line)["id"] != first))
    (tmp_path / "since.incidents.jsonl").write_text((replay_out.parent / "anomalies.incidents.jsonl").read_text())

    code, text = run("show", incident["id"], "--file", str(out), "--json")
    assert code == 0, text
    shown = json.loads(text)
    assert shown["absent_members"] == [first] and first not in [m["id"] for m in shown["members"]]
    code, text = run("show", incident["id"], "--file", str(out))
    assert code == 0 and f"not stored here: 1 of its {len(incident['members'])} anomalies ({first})" in text


def test_show_explains_in_one_line_what_it_cannot_find(replay_out: Path, tmp_path: Path) -> None:
    from test_cli import one_line_error

    unknown = "0123" * 8
    assert one_line_error(["show", unknown, "--file", str(replay_out)]) == \
        f"Error: no anomaly or incident has id '{unknown}' in {replay_out}"  # it said 'here'
    # what cannot be an id is said so, as `label` says it, not looked for
    assert one_line_error(["show", "0123", "--file", str(replay_out)]) == \
        "Error: '0123' is too short for an id: give at least 8 of its 32 hex digits"
    assert one_line_error(["show", "0123456z", "--file", str(replay_out)]) == \
        "Error: '0123456z' is not an anomaly or incident id (32 hex digits, or the first 8 or more of them, as " \
        "replay --out and query show)"
    assert "does not exist" in one_line_error(["show", unknown, "--file", str(tmp_path / "none.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    assert "line 1: not an anomaly" in one_line_error(["show", unknown, "--file", str(bad)])
    incidents = replay_out.parent / "anomalies.incidents.jsonl"  # replay's last 'written to' line names it
    alone = tmp_path / "copied" / incidents.name  # without the --out file it was written beside
    alone.parent.mkdir()
    alone.write_text(incidents.read_text())
    assert one_line_error(["show", "0123", "--file", str(alone)]) == \
        f"Error: {alone} holds a replay's incidents: give the --out file they were written beside " \
        f"({alone.parent / replay_out.name}); show reads both"
    (tmp_path / "bare.incidents.jsonl").write_text(incidents.read_text())  # an --out without a suffix: .jsonl
    assert one_line_error(["show", "0123", "--file", str(tmp_path / "bare.incidents.jsonl")]).endswith(
        f"written beside ({tmp_path / 'bare.jsonl'}); show reads both")
    trades = tmp_path / "day.dbn.zst"  # the day replayed, not what replay wrote ('utf-8' codec can't decode ...)
    trades.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)))
    assert one_line_error(["show", "0123", "--file", str(trades)]) == \
        f"Error: {trades} is not text: give the JSON lines replay --out wrote"


def test_show_given_the_incidents_file_reads_the_out_file_beside_it(replay_out: Path, tmp_path: Path) -> None:
    """Replay's last line names its incidents file, so that is the path copied into `show --file`: it
    was refused, with a pointer to the file beside it. Now that file is read, as if it had been given."""
    incidents_file = replay_out.parent / "anomalies.incidents.jsonl"
    incident = json.loads(incidents_file.read_text().splitlines()[0])
    anomaly = json.loads(replay_out.read_text().splitlines()[-1])["id"]
    for record in (incident["id"], anomaly):
        assert run("show", record, "--file", str(incidents_file), "--json") == \
            run("show", record, "--file", str(replay_out), "--json")
        assert run("show", record, "--file", str(incidents_file))[0] == 0
    (tmp_path / "bare").write_text(replay_out.read_text())  # an --out without a suffix: its incidents got .jsonl
    (tmp_path / "bare.incidents.jsonl").write_text(incidents_file.read_text())
    code, text = run("show", anomaly, "--file", str(tmp_path / "bare.incidents.jsonl"), "--json")
    assert code == 0 and json.loads(text)["anomaly"]["id"] == anomaly


def test_the_tape_quotes_prices_in_cents_and_sub_penny_prints_in_full() -> None:
    """`show` printed 112.3 beside 112.34 (trailing zeros stripped) and the report's tape 114 beside
    113.99: a column of prices an analyst compares at a glance."""
    import io

    from rich.console import Console

    from entrypoints.render import tape_table

    ts = 1_746_537_393_000_000_000
    before = [{"ts_event": ts - 2_000_000, "price": 112.3, "size": 5, "side": "A"},
              {"ts_event": ts - 1_000_000, "price": 114.255, "size": 7, "side": "N"}]
    after = [{"ts_event": ts + 1_000_000, "price": 1234.5, "size": 9, "side": "B"}]
    anomaly = {"ts_event": ts, "ts_local": "2025-05-06T09:16:33.000000000-04:00", "price": 114.0, "size": 100,
               "detector": "high_volume"}
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(tape_table(before, after, anomaly, "tape"))
    prices = [line.split("│")[3].strip() for line in buffer.getvalue().splitlines() if line.startswith("│")]
    assert prices == ["112.30", "114.255", "114.00", "1,234.50"], buffer.getvalue()
    # The report's tape (formatted by its script) keeps cents the same way.
    from adapters.report import html

    script = Path(html.__file__).read_text()
    assert 'p[2].toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 4})' in script


def test_show_and_the_report_say_how_far_a_tape_reaches(replay_out: Path, tmp_path: Path) -> None:
    """'0 trades before its print' read as a symbol's first print, where it had only not traded in the
    minute before."""
    anomaly = json.loads(replay_out.read_text().splitlines()[0])
    code, text = run("show", anomaly["id"], "--file", str(replay_out))
    assert code == 0, text
    assert " after (at most 10 each side, none over 60 s away)" in " ".join(text.split())
    code, text = run("replay", "--top", "0", "--report", str(tmp_path / "r.html"))
    assert code == 0 and '" after (at most 10 each side, none over 60 s away)"' in (tmp_path / "r.html").read_text()


def test_show_looks_where_replay_wrote_by_default_and_points_an_embedded_run_at_its_file(
        replay_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With STOCKANOMALY_OUT set, `replay` wrote there but `show ID` asked Elasticsearch, and with no
    Elasticsearch said only that it was not reachable, not where an embedded run's records are."""
    from test_cli import one_line_error

    anomaly = json.loads(replay_out.read_text().splitlines()[0])["id"]
    monkeypatch.setenv("STOCKANOMALY_OUT", str(replay_out))
    assert run("show", anomaly, "--json") == run("show", anomaly, "--file", str(replay_out), "--json")
    monkeypatch.setenv("STOCKANOMALY_OUT", str(tmp_path / "later.jsonl"))
    assert one_line_error(["show", anomaly]) == (
        f"Error: STOCKANOMALY_OUT names {tmp_path / 'later.jsonl'}, which does not exist yet (replay writes it; "
        "--file names another)")
    monkeypatch.delenv("STOCKANOMALY_OUT")
    monkeypatch.setenv("ELASTICSEARCH_URL", "http://127.0.0.1:1")  # nothing listens on port 1
    error = one_line_error(["show", anomaly])
    assert error.startswith("Error: Elasticsearch is not reachable at http://127.0.0.1:1")
    assert error.endswith("(a replay's anomalies and incidents: --file, its --out file)")


def test_show_says_what_its_tape_holds_on_one_line(replay_out: Path) -> None:
    """The tape's caption was the table's title, folded to the table's width: 'the tape around ... : 3' /
    'trades before its print, 1 after (at most 10 each side, none over 60' / 's away)'."""
    anomaly = json.loads(replay_out.read_text().splitlines()[0])
    code, text = run("show", anomaly["id"], "--file", str(replay_out))
    assert code == 0, text
    caption = next(line for line in text.splitlines() if line.startswith("the tape around"))
    assert caption.endswith(" after (at most 10 each side, none over 60 s away)")
    assert text.splitlines()[text.splitlines().index(caption) + 1].startswith("┏")  # the table right under it
