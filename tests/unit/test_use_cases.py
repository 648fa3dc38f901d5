"""Use cases through the same container production uses, with in-memory adapters."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from builders import calm_flow

from adapters.files.thresholds import load_thresholds, save_thresholds
from adapters.memory import InMemoryBlobStore, InMemoryDeadLetterSink, InMemoryStateStore, InMemoryTradeSource
from application.calibrate import calibrate
from domain.errors import ConfigError
from domain.model import TRADE_DTYPE
from entrypoints.container import build_container


def market() -> np.ndarray:
    flows = [calm_flow(15_000, symbol=s, price=p, seed=i) for i, (s, p) in enumerate([("AAA", 12.0), ("BBB", 450.0)])]
    trades = np.concatenate(flows).astype(TRADE_DTYPE)
    trades = trades[np.argsort(trades["ts_event"], kind="stable")]
    trades["size"][[20_000, 25_000]] = 400_000  # two block trades late in the day
    return trades


def test_replay_finds_the_blocks_and_keeps_state_per_symbol() -> None:
    container = build_container()
    summary = container.replay()(InMemoryTradeSource(market(), chunk_size=4_096))
    assert summary.trades == 30_000
    assert summary.by_detector["high_volume"] == 2
    found = container.collected_anomalies().anomalies
    assert {a.size for a in found if a.detector == "high_volume"} == {400_000}
    store = container.state_store()
    assert len(store) == 2 and "AAA" in store and "BBB" in store


def test_replay_groups_anomalies_into_the_same_incidents_however_the_source_is_cut() -> None:
    from adapters.synthetic import generate_market
    from application.replay import Replay

    trades = generate_market(symbols=6, trades=300_000, seed=4).trades
    seen = []
    for chunk, per_symbol in ((65_536, 64), (1_000, 1), (7_777, 16)):
        container = build_container()
        replay = Replay(container.detect(), InMemoryBlobStore(), top_n=10_000, per_symbol=per_symbol)
        summary = replay(InMemoryTradeSource(trades, chunk_size=chunk))
        incidents = summary.ranked_incidents()
        assert summary.incidents == len(incidents) and 0 < len(incidents) < summary.anomalies
        assert sum(i.size for i in incidents) == summary.anomalies  # every anomaly in exactly one
        assert summary.to_dict()["incidents"] == len(incidents)
        seen.append({(i.id, i.members, i.score) for i in incidents})
    assert seen[0] == seen[1] == seen[2]


def with_a_burst_at_the_end(pause_ns: int | None) -> np.ndarray:
    """Two calm symbols; AAA's last trades a burst of 400 within half a second, then (`pause_ns`
    later) a calm print of AAA, or (None) nothing: the input ends within the burst's measure."""
    flows = [calm_flow(15_000, symbol="AAA", seed=1), calm_flow(15_000, symbol="BBB", seed=2)]
    trades = np.concatenate(flows)
    trades = trades[np.argsort(trades["ts_event"], kind="stable")]
    end = int(trades["ts_event"].max())
    burst = np.repeat(trades[trades["symbol"] == "AAA"][-1:], 400)
    burst["ts_event"] = end + np.linspace(1, 500_000_000, 400).astype(np.int64)
    extra = [burst]
    if pause_ns is not None:
        extra.append(burst[-1:].copy())
        extra[-1]["ts_event"] += pause_ns
    out = np.concatenate([trades, *extra])
    out["ts_recv"] = out["ts_event"]
    out["sequence"] = np.arange(1, len(out) + 1)
    return out


@pytest.mark.parametrize("chunk", [65_536, 997])
def test_a_burst_the_input_ends_within_is_reported_with_its_peak_so_far(chunk: int) -> None:
    """A replay ending (a file's end, --until) within a burst's measure dropped it without a word;
    it is reported with the peak so far, said so, and in an incident. The same burst with its
    measure completed is reported as before."""
    from application.replay import Replay

    found = {}
    for pause in (None, 5_000_000_000):
        container = build_container()
        replay = Replay(container.detect(), InMemoryBlobStore(), top_n=10_000)
        summary = replay(InMemoryTradeSource(with_a_burst_at_the_end(pause), chunk_size=chunk))
        bursts = [a for a in container.collected_anomalies().anomalies if a.detector == "trade_burst"]
        assert len(bursts) == 1 and summary.by_detector["trade_burst"] == 1
        assert any(bursts[0].id in i.members for i in summary.ranked_incidents())
        found[pause] = bursts[0]
    cut, whole = found[None], found[5_000_000_000]
    assert cut.id == whole.id and cut.details["input_ended"] == 1.0 and "input_ended" not in whole.details
    assert cut.reason.endswith("after crossing, when the input ended)") and cut.context
    assert cut.details["measured_seconds"] < 1.0 == whole.details["measured_seconds"]
    assert cut.details["window_total"] == whole.details["window_total"] and 400 <= cut.details["window_total"] <= 410


def test_replay_resumes_from_stored_state_without_warming_up_again() -> None:
    trades = market()
    engine = build_container().engine()
    states, pools = InMemoryStateStore(engine.schema), InMemoryStateStore(engine.pool_schema)
    first = build_container()
    first.state_store.override(states)
    first.pool_state_store.override(pools)
    first.replay()(InMemoryTradeSource(trades[:18_000]))
    second = build_container()
    second.state_store.override(states)
    second.pool_state_store.override(pools)
    summary = second.replay()(InMemoryTradeSource(trades[18_000:]))
    whole = build_container()
    whole.replay()(InMemoryTradeSource(trades))
    resumed_ids = {a.id for a in second.collected_anomalies().anomalies}
    whole_late_ids = {a.id for a in whole.collected_anomalies().anomalies
                      if a.ts_event >= trades["ts_event"][18_000]}
    assert summary.by_detector["high_volume"] == 2
    assert resumed_ids == whole_late_ids


def test_replay_writes_anomalies_as_json_lines(tmp_path) -> None:
    out = tmp_path / "anomalies.jsonl"
    container = build_container(out=str(out))
    container.replay()(InMemoryTradeSource(market()))
    container.anomaly_sink().close()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(container.collected_anomalies().anomalies) >= 2
    assert {"id", "symbol", "ts_event", "detector", "score", "reason", "price", "size"} <= set(rows[0])


def test_bad_records_reach_the_dead_letter_sink_and_the_rest_is_processed() -> None:
    trades = market()[:5_000]
    trades["price"][10] = np.nan
    trades["size"][20] = 0
    container = build_container()
    letters = InMemoryDeadLetterSink()
    container.dead_letter_sink.override(letters)
    summary = container.replay()(InMemoryTradeSource(trades))
    assert summary.accepted == 4_998
    assert sorted(d.reason for d in letters.dead_letters) == ["bad_price", "bad_size"]
    assert container.metrics().dead == {"bad_price": 1, "bad_size": 1}


def test_a_replay_keeps_no_dead_letter_in_memory() -> None:
    """Each refused trade stayed in a list nothing read: a 2,000,000-trade market read twice held
    2,000,000 letters (+750 MB). They go to --dead-letters' file, and are counted in the summary."""
    trades = market()[:5_000]
    container = build_container()
    summary = container.replay()(InMemoryTradeSource(np.concatenate((trades, trades))))
    assert sum(summary.dead_letters.values()) == 5_000  # duplicates, or out of order where the copy is late
    assert container.dead_letter_sink().sinks == []


def test_calibrated_thresholds_round_trip_and_drive_the_replay(tmp_path) -> None:
    trades = market()
    thresholds = calibrate(InMemoryTradeSource(trades[:15_000]), quantile=0.99, multiple=3.0, min_trades=500)
    assert set(thresholds.symbols) == {"AAA", "BBB"}
    path = tmp_path / "thresholds.json"
    save_thresholds(thresholds, path)
    loaded = load_thresholds(path)
    assert loaded == thresholds
    container = build_container(thresholds=str(path), detectors="high_volume")
    summary = container.replay()(InMemoryTradeSource(trades))
    low = min(t.size_threshold for t in loaded.symbols.values())
    assert summary.by_detector["high_volume"] > 2  # a 3x p99 threshold also flags big normal prints
    assert all(a.size >= low for a in container.collected_anomalies().anomalies)


def test_calibrate_counts_a_trade_read_twice_once() -> None:
    """The same day in two files (a copy, a CSV and a DBN export of it) was counted twice: every
    symbol's trade count doubled, so --min-trades gave a threshold to a symbol with half the history
    it asks for. Judged as a replay judges it, the copy is refused as duplicates."""
    trades = np.sort(calm_flow(800, symbol="AAA", seed=3), order="ts_event")
    twice = np.sort(np.concatenate([trades, trades]), order=["ts_event", "sequence"], kind="stable")
    rejected: Counter[str] = Counter()

    once = calibrate(InMemoryTradeSource(trades), min_trades=100)
    again = calibrate(InMemoryTradeSource(twice, chunk_size=300), min_trades=100, rejected=rejected)

    assert again == once and once.symbols["AAA"].trades <= 800
    assert rejected == {"duplicate": 800}
    assert calibrate(InMemoryTradeSource(twice), min_trades=1000).symbols == {}


@pytest.mark.parametrize("content", [
    "{", '{"format": 1}', '{"format": 1, "symbols": {"X": {"size_threshold": -1}}}',
    '{"format": 1, "symbols": {"X": {"size_threshold": true}}}',  # it was read as 1: every print alerted
    '{"format": 1, "symbols": {"X": {"size_threshold": Infinity}}}',
    '{"format": 1, "symbols": {"X": {"size_threshold": 1e400}}}',
    '{"format": 1, "symbols": {"X": {"size_threshold": 3000, "trades": "many"}}}',  # a ValueError traceback
    '{"format": 1, "symbols": {"X": 3000}}',
], ids=["not-json", "no-symbols", "negative", "boolean", "infinity", "overflow", "text-count", "no-entry"])
def test_bad_thresholds_file_is_a_clear_error(tmp_path, content: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_thresholds(path)


def test_a_file_that_is_not_thresholds_says_what_one_holds_and_what_is_optional(tmp_path) -> None:
    """It listed quantile and multiple as expected keys, though a file without them is read."""
    path = tmp_path / "t.json"
    path.write_text('{"x": 1}')
    with pytest.raises(ConfigError, match=r'expected \{"format": 1, "symbols": \{\.\.\.\}\}, quantile and multiple '
                                          "optional: what `stockanomaly calibrate` writes"):
        load_thresholds(path)
    path.write_text('{"format": 1, "symbols": {"X": {"size_threshold": 3000}}}')
    assert load_thresholds(path).multiple == 8.0  # the optional keys take the defaults


def test_unknown_detector_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown detector"):
        build_container(detectors="high_volume,telepathy").engine()
