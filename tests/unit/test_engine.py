"""The engine: bad records become dead letters with reasons, duplicates are refused, symbols stay apart,
and the result does not depend on how the stream is cut."""

from __future__ import annotations

import numpy as np
import pytest
from builders import S, T0, batch_of, calm_flow, make_trade

from adapters.memory import InMemoryStateStore
from domain.detectors import default_detectors
from domain.engine import DetectionEngine, DetectionResult
from domain.errors import ConfigError
from domain.model import TRADE_DTYPE
from domain.sessions import SessionCalendar

DAY = 86_400 * S


class Run:
    """An engine with in-memory state stores, fed batch by batch."""

    def __init__(self, engine: DetectionEngine | None = None) -> None:
        self.engine = engine or DetectionEngine(default_detectors())
        self.states = InMemoryStateStore(self.engine.schema)
        self.pools = InMemoryStateStore(self.engine.pool_schema)

    def __call__(self, trades: np.ndarray) -> DetectionResult:
        batch = self.engine.prepare(trades)
        result = self.engine.detect(batch, self.states.load(batch.symbols), self.pools.load(batch.pool_keys))
        self.states.save(batch.symbols, result.states)
        self.pools.save(batch.pool_keys, result.pool_states)
        return result

    def trades_seen(self, symbol: str) -> int:
        row = self.states.get(symbol)
        return 0 if row is None else int(row["guard"]["trades"][0])


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("price", float("nan"), "bad_price"),
    ("price", float("inf"), "bad_price"),
    ("price", -1.0, "bad_price"),
    ("price", 0.0, "bad_price"),
    ("size", 0, "bad_size"),
    ("price", 1e300, "bad_price"),  # no feed's price (Databento's stop at ~9.2e9)
    ("size", -5, "bad_size"),
    ("size", 2**32, "bad_size"),
    ("symbol", "", "missing_symbol"),
    ("ts_event", 0, "bad_timestamp"),
    ("ts_event", T0 + 1 + 61 * 10**9, "bad_timestamp"),  # over a minute after its receipt (ts_recv)
], ids=["nan-price", "inf-price", "negative-price", "zero-price", "zero-size", "absurd-price", "negative-size",
        "absurd-size", "no-symbol", "no-timestamp", "dated-after-receipt"])
def test_impossible_values_become_dead_letters_and_the_rest_is_processed(
        field: str, value: object, reason: str) -> None:
    batch = batch_of(make_trade(sequence=1), make_trade(ts_event=T0 + 1, sequence=2),
                     make_trade(ts_event=T0 + 2, sequence=3))
    batch[field][1] = value
    result = Run()(batch)
    assert [d.reason for d in result.dead_letters] == [reason]
    assert result.accepted == 2


def test_duplicates_in_a_batch_and_across_batches_are_refused() -> None:
    run = Run()
    first = batch_of(make_trade(sequence=1), make_trade(ts_event=T0 + 5, sequence=2))
    r1 = run(np.concatenate((first, first[:1])))
    assert [d.reason for d in r1.dead_letters] == ["duplicate"]
    r2 = run(first[1:])
    assert [d.reason for d in r2.dead_letters] == ["duplicate"] and r2.accepted == 0


def test_refused_trades_are_worded_one_by_one_as_a_single_refusal_is() -> None:
    """The guard's refusals are built for a whole batch at once (a day read twice is a letter per trade),
    each worded and placed exactly as one built alone."""
    from domain.validation import dead_letter_for, dead_letters_for

    trades = batch_of(make_trade(sequence=1, price=101.25, symbol="BRK.B"), make_trade(ts_event=T0 + 5, sequence=2**63))
    built = dead_letters_for(trades, ["duplicate", "out_of_order"], [7, 3])
    assert [(d.reason, d.row) for d in built] == [("duplicate", 7), ("out_of_order", 3)]
    assert "symbol='BRK.B'" in built[0].detail and "price=101.25 " in built[0].detail
    assert built[1].detail.endswith(f"sequence={2**63}") and f"ts_event={T0 + 5} " in built[1].detail
    assert built == [dead_letter_for(trades[0], "duplicate", row=7), dead_letter_for(trades[1], "out_of_order", row=3)]
    assert dead_letters_for(trades[:0], [], []) == []
    run = Run()
    first = batch_of(make_trade(sequence=1), make_trade(ts_event=T0 + 5, sequence=2))
    refused = run(np.concatenate((first, first[:1], first[1:]))).dead_letters
    assert [(d.reason, d.row) for d in refused] == [("duplicate", 2), ("duplicate", 3)]
    # worded by the guard (what it matched), the trade quoted as any refusal quotes it
    assert refused[0].detail.startswith("the same trade (publisher, instrument, ts_event, sequence) was accepted "
                                        "already: ")
    assert refused[0].detail.split(": ", 1)[1] == dead_letter_for(first[0], "duplicate", row=2).detail.split(": ", 1)[1]


def test_a_redelivered_message_is_refused_whole_however_long() -> None:
    """Twenty prints at one timestamp (a sweep), delivered twice: more than the digests remembered."""
    sweep = batch_of(*[make_trade(sequence=100 + k, price=100.0 + k / 100) for k in range(20)])
    run = Run()
    assert run(sweep).accepted == 20
    again = run(sweep)
    assert again.accepted == 0 and {d.reason for d in again.dead_letters} == {"duplicate"}


def test_prints_at_the_same_time_with_new_sequence_numbers_are_new_trades() -> None:
    run = Run()
    run(batch_of(make_trade(sequence=1)))
    assert run(batch_of(make_trade(sequence=2), make_trade(sequence=3))).accepted == 2


def test_out_of_order_trade_is_refused() -> None:
    run = Run()
    run(batch_of(make_trade(ts_event=T0 + 10 * S, sequence=5)))
    r2 = run(batch_of(make_trade(ts_event=T0, sequence=6)))
    assert [d.reason for d in r2.dead_letters] == ["out_of_order"]
    # how far behind, and behind what: an operator tells a late feed from a replayed file
    assert r2.dead_letters[0].detail.startswith(
        f"10.000000 s older than the symbol's newest accepted print (ts_event {T0 + 10 * S}): symbol=")


def test_a_sequence_the_feed_has_passed_at_the_newest_time_is_a_duplicate_saying_so() -> None:
    run = Run()
    run(batch_of(make_trade(sequence=5)))
    again = run(batch_of(make_trade(sequence=3), make_trade(sequence=6)))
    assert [d.reason for d in again.dead_letters] == ["duplicate"] and again.accepted == 1
    assert again.dead_letters[0].detail.startswith(
        "a sequence the feed has passed at the symbol's newest time (it reached 5): symbol=")
    assert again.dead_letters[0].detail.endswith("sequence=3")


def test_sequence_numbers_restarting_next_day_are_new_trades() -> None:
    run = Run()
    run(batch_of(make_trade(sequence=1), make_trade(ts_event=T0 + 1, sequence=2)))
    r2 = run(batch_of(make_trade(ts_event=T0 + DAY, sequence=1), make_trade(ts_event=T0 + DAY + 1, sequence=2)))
    assert r2.dead_letters == [] and r2.accepted == 2


def test_dead_letters_keep_arrival_order_across_symbols() -> None:
    trades = batch_of(make_trade(symbol="BBB", sequence=1), make_trade(symbol="AAA", sequence=1),
                      make_trade(symbol="BBB", ts_event=T0 + 1, sequence=2))
    trades["size"][0] = 0
    trades["price"][1] = -1
    run = Run()
    run(trades[2:])
    late = np.concatenate((trades, batch_of(make_trade(symbol="BBB", ts_event=T0 - S, sequence=9))))
    letters = run(late).dead_letters
    assert [d.reason for d in letters] == ["bad_size", "bad_price", "duplicate", "out_of_order"]
    # each names its trade's row in the batch given, so an adapter can find the message it came in
    assert [d.row for d in letters] == [0, 1, 2, 3]
    assert "symbol='BBB'" in letters[0].detail  # a plain string, not a numpy repr


def test_symbols_keep_separate_state() -> None:
    a = calm_flow(3_000, symbol="AAA", price=10.0)
    b = calm_flow(3_000, symbol="BBB", price=900.0, seed=2)
    mixed = np.concatenate((a, b)).astype(TRADE_DTYPE)
    mixed = mixed[np.argsort(mixed["ts_event"], kind="stable")]
    run = Run()
    result = run(mixed)
    assert run.trades_seen("AAA") == 3_000 and run.trades_seen("BBB") == 3_000
    assert result.anomalies == []


@pytest.mark.parametrize("symbols", [1, 2, 40], ids=["one", "two", "forty"])
def test_engine_output_does_not_depend_on_batching(symbols: int) -> None:
    flow = np.concatenate([calm_flow(40_000 // symbols, symbol=f"S{i:02d}", seed=i, rate=5.0 / symbols)
                           for i in range(symbols)])
    flow = flow[np.argsort(flow["ts_event"], kind="stable")]
    flow["size"][[15_000, 30_000]] = 500_000
    whole = Run()(flow)
    pieces = Run()
    found = [a for start in range(0, len(flow), 3_001) for a in pieces(flow[start:start + 3_001]).anomalies]
    assert len(whole.anomalies) >= 2
    assert [a.id for a in found] == [a.id for a in whole.anomalies]


def test_disabled_detectors_keep_their_state_part_untouched() -> None:
    run = Run(DetectionEngine(default_detectors(), enabled=["high_volume"]))
    run(calm_flow(3_000))
    row = run.states.get("ACME")
    initial = run.engine.schema.initial_row
    assert row["price_change"].tobytes() == initial["price_change"].tobytes()
    assert row["high_volume"].tobytes() != initial["high_volume"].tobytes()


@pytest.mark.parametrize(("enabled", "message"), [(["high_volume", "telepathy"], "unknown detector"),
                                                  ([], "no detector selected")], ids=["unknown", "none"])
def test_a_detector_selection_that_makes_no_sense_is_refused(enabled: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DetectionEngine(default_detectors(), enabled=enabled)


def test_symbols_are_pooled_by_the_given_function() -> None:
    engine = DetectionEngine(default_detectors(), pool_of=lambda s: {"AAA": 3, "BBB": 1}[s])
    batch = engine.prepare(batch_of(make_trade(symbol="AAA"), make_trade(symbol="BBB")))
    assert batch.pools == (1, 3) and batch.pool_keys == ["1", "3"]
    assert [batch.pools[batch.pool_of_symbol[i]] for i in range(2)] == [3, 1]


def test_every_anomaly_says_its_session_and_its_new_york_time() -> None:
    flow = calm_flow(20_000)
    flow["size"][15_000] = 500_000  # a block trade well after warm-up
    found = Run()(flow).anomalies
    block = [a for a in found if a.detector == "high_volume"]
    assert block and all(a.session in {"pre_market", "regular", "after_hours", "closed"} for a in found)
    calendar = SessionCalendar()
    assert [(a.session, a.ts_local) for a in found] == [(calendar.session_of(a.ts_event),
                                                         calendar.local_time(a.ts_event)) for a in found]


def test_rows_handed_over_are_updated_in_place_with_the_same_outcome() -> None:
    trades = np.concatenate([calm_flow(400, symbol=s, seed=k) for k, s in enumerate(["AAA", "BBB"])])
    trades = trades[np.argsort(trades["ts_event"], kind="stable")]
    engine = DetectionEngine(default_detectors())
    batch = engine.prepare(trades)
    store = InMemoryStateStore(engine.schema)
    store.save(list(batch.symbols), engine.schema.initial(len(batch.symbols)))
    states, pools = store.load(batch.symbols), engine.pool_schema.initial(len(batch.pools))
    assert not np.shares_memory(states, store.rows)  # a load is the caller's own array
    kept = states.copy()
    copied = engine.detect(batch, states, pools)
    assert states.tobytes() == kept.tobytes()  # not handed over: untouched
    owned = engine.detect(batch, states, pools, owned=True)
    assert owned.states is states and owned.states.tobytes() == copied.states.tobytes()
    assert [a.id for a in owned.anomalies] == [a.id for a in copied.anomalies]
    assert store.load(batch.symbols).tobytes() == kept.tobytes()  # the store saw nothing of it


# Run in a process of its own: a dispatcher knows only the signatures used in its process, so there
# what the sweep adds after the warm-up is what a worker would compile (or load) mid-batch.
_WARM_UP_SWEEP = """
import json, sys
from numba.core.registry import CPUDispatcher
from domain.detectors import default_detectors
from domain.engine import DetectionEngine, _warm_up_tape

def signatures():
    return {f"{name}.{attr}": len(value.signatures) for name, module in list(sys.modules.items())
            if name.startswith("domain") for attr, value in vars(module).items() if isinstance(value, CPUDispatcher)}

engine = DetectionEngine(default_detectors())
engine.warm_up()
warmed = signatures()
for symbols in (["AAA"], ["AAA", "BBB"], ["AAA", "BBB", "CCC", "DDD"]):
    tape = _warm_up_tape(symbols)
    for size in (1, 2, 3, 64, 700):
        for start in (0, 1, 4000):
            batch = engine.prepare(tape[start:start + size].copy())
            engine.detect(batch, engine.schema.initial(len(batch.symbols)), engine.pool_schema.initial(len(batch.pools)),
                          engine.tape_schema.initial(len(batch.symbols)))
after = signatures()
print(json.dumps({"kernels": len(warmed), "added": {k: after[k] - warmed.get(k, 0) for k in after if after[k] != warmed.get(k, 0)}}))
"""


def test_the_warm_up_leaves_no_kernel_to_compile_in_the_middle_of_a_batch() -> None:
    """Every batch shape a worker meets (one trade or many, one symbol or several, in one pool or
    several) runs on kernels the warm-up already has: one left out used to be compiled inside a
    fresh container's first batches (2-9 s each, measured in the compose stack)."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _WARM_UP_SWEEP], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["kernels"] >= 10 and result["added"] == {}
