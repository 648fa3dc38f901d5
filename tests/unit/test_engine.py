"""The engine: bad records become dead letters with reasons, duplicates are refused, symbols stay apart."""

from __future__ import annotations

import numpy as np
import pytest
from builders import S, T0, batch_of, calm_flow, make_trade

from domain.detectors import default_detectors
from domain.engine import DetectionEngine
from domain.guard import GuardState, SequenceGuard
from domain.model import TRADE_DTYPE

DAY = 86_400 * S


@pytest.fixture
def engine() -> DetectionEngine:
    return DetectionEngine(default_detectors())


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("price", float("nan"), "bad_price"),
    ("price", float("inf"), "bad_price"),
    ("price", -1.0, "bad_price"),
    ("price", 0.0, "bad_price"),
    ("size", 0, "bad_size"),
    ("size", -5, "bad_size"),
    ("symbol", "", "missing_symbol"),
    ("ts_event", 0, "bad_timestamp"),
], ids=["nan-price", "inf-price", "negative-price", "zero-price", "zero-size", "negative-size",
        "no-symbol", "no-timestamp"])
def test_impossible_values_become_dead_letters_and_the_rest_is_processed(
        engine: DetectionEngine, field: str, value: object, reason: str) -> None:
    batch = batch_of(make_trade(sequence=1), make_trade(ts_event=T0 + 1, sequence=2),
                     make_trade(ts_event=T0 + 2, sequence=3))
    batch[field][1] = value
    result = engine.detect(batch, {})
    assert [d.reason for d in result.dead_letters] == [reason]
    assert result.accepted == 2


def test_duplicates_in_a_batch_and_across_batches_are_refused(engine: DetectionEngine) -> None:
    first = batch_of(make_trade(sequence=1), make_trade(ts_event=T0 + 5, sequence=2))
    r1 = engine.detect(np.concatenate((first, first[:1])), {})
    assert [d.reason for d in r1.dead_letters] == ["duplicate"]
    r2 = engine.detect(first[1:], r1.states)
    assert [d.reason for d in r2.dead_letters] == ["duplicate"]
    assert r2.accepted == 0


def test_out_of_order_trade_is_refused(engine: DetectionEngine) -> None:
    r1 = engine.detect(batch_of(make_trade(ts_event=T0 + 10 * S, sequence=5)), {})
    r2 = engine.detect(batch_of(make_trade(ts_event=T0, sequence=6)), r1.states)
    assert [d.reason for d in r2.dead_letters] == ["out_of_order"]


def test_sequence_numbers_restarting_next_day_are_new_trades(engine: DetectionEngine) -> None:
    day1 = batch_of(make_trade(sequence=1), make_trade(ts_event=T0 + 1, sequence=2))
    day2 = batch_of(make_trade(ts_event=T0 + DAY, sequence=1), make_trade(ts_event=T0 + DAY + 1, sequence=2))
    r1 = engine.detect(day1, {})
    r2 = engine.detect(day2, r1.states)
    assert r2.dead_letters == [] and r2.accepted == 2


def test_guard_memory_is_bounded_by_its_horizon() -> None:
    guard = SequenceGuard(horizon_ns=S, max_keys=100)
    state = GuardState()
    flow = calm_flow(50_000, rate=50.0)
    for start in range(0, len(flow), 5_000):
        state, verdict = guard.check(flow[start:start + 5_000], state)
        assert (verdict == "").all()
    assert len(state.recent) <= 100


def test_symbols_keep_separate_state(engine: DetectionEngine) -> None:
    a = calm_flow(3_000, symbol="AAA", price=10.0)
    b = calm_flow(3_000, symbol="BBB", price=900.0, seed=2)
    mixed = np.concatenate((a, b)).astype(TRADE_DTYPE)
    mixed = mixed[np.argsort(mixed["ts_event"], kind="stable")]
    result = engine.detect(mixed, {})
    assert set(result.states) == {"AAA", "BBB"}
    assert result.states["AAA"].trades == 3_000 and result.states["BBB"].trades == 3_000
    assert result.anomalies == []


def test_engine_output_does_not_depend_on_batching(engine: DetectionEngine) -> None:
    flow = np.concatenate([calm_flow(20_000, symbol=s, seed=i) for i, s in enumerate(["AAA", "BBB"])])
    flow = flow[np.argsort(flow["ts_event"], kind="stable")]
    flow["size"][[15_000, 30_000]] = 500_000
    whole = engine.detect(flow, {})
    states: dict = {}
    pieces = []
    other = DetectionEngine(default_detectors())
    for start in range(0, len(flow), 3_001):
        r = other.detect(flow[start:start + 3_001], states)
        states.update(r.states)
        pieces += r.anomalies
    assert len(whole.anomalies) >= 2
    assert sorted(a.id for a in pieces) == sorted(a.id for a in whole.anomalies)
