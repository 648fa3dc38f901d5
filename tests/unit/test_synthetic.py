"""The synthetic market: deterministic, realistic, honestly labelled, and real DBN on disk."""

from __future__ import annotations

import json
import re
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import databento as db
import numpy as np
import pytest

from adapters.synthetic import generate, labels_path_for, simulate
from adapters.synthetic.events import EXPECTED_DETECTOR, MIN_TRADES_FOR_EVENTS, SURGE_MIN_PRINTS

SMALL = dict(symbols=4, trades=20_000, seed=11, date="2025-03-03", events_per_type=2)
NEW_YORK = ZoneInfo("America/New_York")
MIN = 60 * 1_000_000_000


@pytest.fixture(scope="module")
def market():
    return simulate(**SMALL)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "day.dbn.zst", **SMALL)


def local_time(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1e9, NEW_YORK).strftime("%H:%M:%S.%f")


def symbol_rows(market, symbol: str) -> np.ndarray:
    return np.flatnonzero(market.tape["symbol_index"] == market.symbols.index(symbol))


def event_rows(market, event) -> np.ndarray:
    return np.flatnonzero(market.tape["event"] == int(event.id[2:]) - 1)


def previous_normal(market, event) -> int:
    """Row of the symbol's last normal print before the event's first print."""
    rows = symbol_rows(market, event.symbol)
    first = event_rows(market, event)[0]
    before = rows[(rows < first) & (market.tape["event"][rows] == -1)]
    return int(before[-1])


def test_same_seed_gives_the_same_day_and_another_seed_does_not(market) -> None:
    again = simulate(**SMALL)
    other = simulate(**{**SMALL, "seed": 12})
    assert again.tape.tobytes() == market.tape.tobytes()
    assert again.labels() == market.labels()
    assert other.symbols != market.symbols


def test_makes_exactly_the_requested_number_of_trades(market) -> None:
    assert len(market.tape) == SMALL["trades"]
    assert market.labels()["total_trades"] == SMALL["trades"]


def test_prices_are_positive_and_on_the_cent_tick(market) -> None:
    trades = market.trades
    assert (market.tape["cents"] > 0).all()
    assert np.allclose(trades["price"] * 100, np.round(trades["price"] * 100))


def test_prints_are_in_event_time_order_with_rising_sequence(market) -> None:
    tape = market.tape
    assert (np.diff(tape["ts_event"]) >= 0).all()
    assert (tape["ts_recv"] > tape["ts_event"]).all()
    assert (np.diff(tape["sequence"].astype(np.int64)) > 0).all()


def test_every_symbol_opens_and_closes_with_a_large_cross_without_side(market) -> None:
    tape = market.tape
    for symbol in market.symbols:
        rows = symbol_rows(market, symbol)
        first, last, normal = tape[rows[0]], tape[rows[-1]], tape[rows[1:-1]]
        median = np.median(normal["size"])
        assert local_time(first["ts_event"]).startswith("09:30:00.")
        assert local_time(last["ts_event"]).startswith("16:00:00.0")
        assert first["side"] == last["side"] == b"N"
        assert first["size"] >= 40 * median and last["size"] >= 40 * median
    assert set(np.unique(tape["side"]).tolist()) == {b"A", b"B", b"N"}


def test_each_label_describes_exactly_the_prints_of_its_event(market) -> None:
    labels = market.labels()
    assert {e["type"] for e in labels["events"]} == set(EXPECTED_DETECTOR)
    assert labels["anomalous_trades"] == int((market.tape["event"] >= 0).sum())
    for event in market.events:
        rows = event_rows(market, event)
        assert len(rows) == event.n_trades
        assert market.tape["ts_event"][rows[0]] == event.ts_start
        assert market.tape["ts_event"][rows[-1]] == event.ts_end
        assert set(market.tape["symbol_index"][rows].tolist()) == {market.symbols.index(event.symbol)}
        assert event.expected_detector == EXPECTED_DETECTOR[event.type]


def test_events_keep_clear_of_the_open_the_auctions_and_each_other(market) -> None:
    session = market.session
    for symbol in market.symbols:
        mine = sorted((e for e in market.events if e.symbol == symbol), key=lambda e: e.ts_start)
        for e in mine:
            assert e.ts_start >= session.open_ns + 30 * MIN
            assert e.ts_end <= session.close_ns - 2 * MIN
        for a, b in zip(mine, mine[1:]):
            assert b.ts_start - a.ts_end >= 5 * MIN


def test_the_normal_tape_has_no_unlabelled_extremes(market) -> None:
    tape = market.tape
    for symbol in market.symbols:
        rows = symbol_rows(market, symbol)[1:-1]
        normal = rows[tape["event"][rows] == -1]
        p999 = np.percentile(tape["size"][normal], 99.9)
        assert tape["size"][normal].max() < 5 * p999
        # Tick-to-tick moves between neighbouring normal prints: no natural jump reaches a spike.
        normal_pair = (tape["event"][rows][:-1] == -1) & (tape["event"][rows][1:] == -1)
        moves = np.abs(np.diff(np.log(tape["cents"][rows].astype(float))))[normal_pair]
        assert moves.max() < 0.015, symbol


@pytest.mark.parametrize("kind", sorted(EXPECTED_DETECTOR))
def test_injected_events_have_the_promised_shape(market, kind: str) -> None:
    tape = market.tape
    for event in (e for e in market.events if e.type == kind):
        rows = event_rows(market, event)
        d = event.details
        before = tape["cents"][previous_normal(market, event)]
        if kind == "block_trade":
            assert 20 <= tape["size"][rows[0]] / d["p999_size"] <= 80
            assert tape["cents"][rows[0]] == before
        elif kind == "price_spike":
            assert abs(np.log(tape["cents"][rows[0]] / before)) >= max(0.015, 40 * d["typical_move"])
        elif kind == "unusual_trade":
            assert 2.0 <= tape["size"][rows[0]] / d["p999_size"] <= 4.0  # big, but under the 8x block rule
            assert 0 < abs(np.log(tape["cents"][rows[0]] / before)) < d["spike_threshold"] / 3
        elif kind == "trade_burst":
            span_s = max((event.ts_end - event.ts_start) / 1e9, 1e-9)
            assert 200 <= event.n_trades <= 400 and span_s <= 1.0
            assert event.n_trades / span_s >= 50 * d["normal_rate_per_s"]
            assert (np.abs(tape["cents"][rows] - before) <= 2).all()
        elif kind == "volume_surge":
            assert 14.9 <= d["volume_factor"] <= 30.1
            assert tape["size"][rows].max() <= 3 * d["p999_size"]
            # about 2x the normal count on a busy name, at least an order's worth of prints on a quiet one
            assert event.n_trades <= max(2.2 * d["expected_trades"] + 2, 2 * SURGE_MIN_PRINTS)
        elif kind == "ramp":
            path = np.log(np.concatenate(([before], tape["cents"][rows]))).astype(float)
            assert 0.03 <= abs(path[-1] - path[0]) <= 0.09
            assert np.abs(np.diff(path)).max() < d["spike_threshold"] / 4


def test_single_print_events_leave_the_price_path_where_it_was(market) -> None:
    tape = market.tape
    for event in (e for e in market.events if e.type in ("price_spike", "unusual_trade")):
        rows = symbol_rows(market, event.symbol)
        at = event_rows(market, event)[0]
        before, after = tape["cents"][previous_normal(market, event)], tape["cents"][rows[rows > at][0]]
        assert abs(np.log(after / before)) < event.details["spike_threshold"] / 3


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_dbn_file_round_trips_through_databento_with_symbols_mapped(generated) -> None:
    store = db.DBNStore.from_file(generated.path)
    records = store.to_ndarray()
    trades = generated.trades
    assert store.metadata.version == 3 and store.dataset == "XNAS.ITCH" and store.schema == "trades"
    assert len(records) == SMALL["trades"]
    assert np.array_equal(records["ts_event"], trades["ts_event"].astype(np.uint64))
    assert np.array_equal(records["price"], np.round(trades["price"] * 100).astype(np.int64) * 10_000_000)
    assert np.array_equal(records["size"], trades["size"])
    assert np.array_equal(records["sequence"], trades["sequence"])
    assert (records["publisher_id"] == 2).all()
    frame = store.to_df(price_type="fixed", pretty_ts=False)
    assert frame["symbol"].tolist() == trades["symbol"].tolist()


def test_plain_dbn_is_written_uncompressed(tmp_path) -> None:
    result = generate(tmp_path / "day.dbn", **SMALL)
    assert result.path.read_bytes()[:4] == b"DBN\x03"


def test_a_generation_stopped_while_writing_leaves_the_previous_market_whole(tmp_path, monkeypatch) -> None:
    """Ctrl-C while writing left a cut file (42 of 66 MB) beside the previous market's labels."""
    import zstandard

    from adapters.synthetic import dbn_writer

    first = generate(tmp_path / "day.dbn.zst", **SMALL)
    kept = {p: p.read_bytes() for p in (first.path, first.labels_path)}
    assert zstandard.get_frame_parameters(kept[first.path]).has_checksum  # damage inside is found on reading

    class Interrupted:  # a compressor stopped by Ctrl-C after part of the frame
        def __init__(self, **kwargs: object) -> None:
            pass

        def stream_writer(self, raw, **kwargs):  # type: ignore[no-untyped-def]
            raw.write(b"(\xb5/\xfd half a frame")
            raise KeyboardInterrupt

    monkeypatch.setattr(dbn_writer, "zstandard", SimpleNamespace(ZstdCompressor=Interrupted))
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "day.dbn.zst", **{**SMALL, "seed": 12})
    assert {p: p.read_bytes() for p in kept} == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.dbn.zst", "day.labels.json"]


def test_labels_file_sits_beside_the_data_and_matches_the_market(generated) -> None:
    assert generated.labels_path == labels_path_for(generated.path)
    assert json.loads(generated.labels_path.read_text()) == json.loads(json.dumps(generated.labels()))


@pytest.mark.parametrize(("data", "labels"), [
    ("out/day.dbn.zst", "out/day.labels.json"),
    ("day.dbn", "day.labels.json"),
    ("x.y.csv.zst", "x.y.labels.json"),
], ids=["dbn-zst", "dbn", "csv-zst"])
def test_labels_path_for(data: str, labels: str) -> None:
    assert str(labels_path_for(data)) == labels


def test_sizes_are_heavy_tailed_like_the_real_tape() -> None:
    """Real NVDA days: prints of 2x the day's p99.9 size are about a fifth as common as prints above it
    (36 of 172, 53 of 207 in regular hours); a clipped body would make size alone give anomalies away."""
    day = simulate(symbols=2, trades=400_000, seed=5, events_per_type=1)
    tape = day.tape
    for s in range(2):
        sizes = tape["size"][(tape["symbol_index"] == s) & (tape["event"] == -1)][1:-1].astype(float)
        p999 = np.percentile(sizes, 99.9)
        share = (sizes >= 2 * p999).sum() / (sizes >= p999).sum()
        assert 0.12 <= share <= 0.35, share


def test_a_market_of_five_thousand_symbols_is_generated() -> None:
    day = simulate(symbols=5_000, trades=2_000_000, seed=3, events_per_type=1)
    counts = np.bincount(day.tape["symbol_index"], minlength=5_000)
    assert len(day.symbols) == 5_000 and counts.min() >= 20 and counts.sum() == 2_000_000
    by_symbol = dict(zip(day.symbols, counts))
    assert all(by_symbol[e.symbol] >= 0.5 * MIN_TRADES_FOR_EVENTS for e in day.events)


@pytest.mark.parametrize(("symbols", "trades", "message"), [
    (5_000, 20_000, "too few for 5,000 symbols"),
    (5_000, 800_000, "too few for an injected anomaly: the busiest of 5,000 symbols would get"),
], ids=["too-few-trades", "no-symbol-busy-enough"])
def test_impossible_combinations_are_refused_with_the_reason(symbols: int, trades: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(symbols=symbols, trades=trades, seed=3)


@pytest.mark.parametrize("trades", [1_002, 11_200], ids=["too-few-for-the-symbols", "too-few-for-an-anomaly"])
def test_the_trades_a_refusal_asks_for_are_enough(trades: int) -> None:
    """1,002 trades for 100 symbols asked for 11,200, which was then refused asking for 22,360."""
    with pytest.raises(ValueError, match=r"ask for at least ([\d,]+) trades") as refused:
        simulate(symbols=100, trades=trades, seed=7)
    enough = int(re.search(r"ask for at least ([\d,]+) trades", str(refused.value)).group(1).replace(",", ""))  # type: ignore[union-attr]

    assert len(simulate(symbols=100, trades=enough, seed=7).tape) == enough


@pytest.mark.parametrize(("today", "last"), [("2025-03-04", "2025-03-03"), ("2025-03-03", "2025-02-28"),
                                             ("2025-11-29", "2025-11-26"), ("2025-12-26", "2025-12-23")])
def test_the_last_full_trading_day_skips_weekends_holidays_and_early_closes(today: str, last: str) -> None:
    from datetime import date

    from adapters.synthetic.arrivals import Session

    assert Session.last_full_day(date.fromisoformat(today)).isoformat() == last


def test_each_symbols_activity_mood_is_a_slow_ar1_walk_from_its_own_level() -> None:
    from adapters.synthetic.arrivals import Activity

    activity = Activity.draw(np.random.default_rng(5), symbols=400, seconds=390 * 60)
    mood = activity.mood
    slope = float(np.polyfit(mood[:, :-1].ravel(), mood[:, 1:].ravel(), 1)[0])
    assert mood.shape == (400, 390) and abs(slope - 0.92) < 0.02
    assert 0.2 < float(mood.std()) < 0.4  # stationary: 0.1 / sqrt(1 - 0.92**2) ~ 0.26, not a random walk
    assert np.allclose([activity.per_second(s).sum() for s in (0, 199, 399)], 1.0)


def test_making_a_market_imports_no_scipy() -> None:
    """scipy.signal (for one AR(1) filter) took a second of every replay of the built-in sample."""
    import subprocess
    import sys

    code = ("import sys; from adapters.synthetic import generate_market; "
            "generate_market(symbols=3, trades=5_000, seed=1); print(sorted(m for m in sys.modules if m.startswith('scipy')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
