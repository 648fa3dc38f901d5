"""Scoring detections against labels: matches, misses, false alarms and the rates built on them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from application.evaluate import evaluate, load_labels, merge_labels, render_text
from domain.model import Anomaly, anomaly_id

T0 = 1_741_100_400_000_000_000
MS = 1_000_000
S = 1_000_000_000


def event(id: str = "ev000001", type: str = "block_trade", symbol: str = "ACME", ts_start: int = T0,
          ts_end: int | None = None, n_trades: int = 1, expected_detector: str = "high_volume") -> dict:
    return {"id": id, "type": type, "symbol": symbol, "ts_start": ts_start,
            "ts_end": ts_start if ts_end is None else ts_end, "n_trades": n_trades,
            "expected_detector": expected_detector}


def burst(**kw: object) -> dict:
    return event(**{"type": "trade_burst", "ts_end": T0 + S // 2, "n_trades": 300,
                    "expected_detector": "trade_burst", **kw})  # type: ignore[arg-type]


def surge(**kw: object) -> dict:
    return event(**{"type": "volume_surge", "ts_end": T0 + 60 * S, "n_trades": 150,
                    "expected_detector": "volume_surge", **kw})  # type: ignore[arg-type]


def labels(*events: dict, total_trades: int = 100_100, anomalous_trades: int | None = None) -> dict:
    anomalous = sum(e["n_trades"] for e in events) if anomalous_trades is None else anomalous_trades
    return {"format": 1, "seed": 7, "symbols": ["ACME", "OTHR"], "total_trades": total_trades,
            "anomalous_trades": anomalous, "events": list(events)}


def detection(detector: str = "high_volume", ts: int = T0, symbol: str = "ACME", sequence: int = 1) -> Anomaly:
    return Anomaly(id=anomaly_id(detector, symbol, 2, 7, ts, sequence), detector=detector, symbol=symbol,
                   ts_event=ts, price=100.0, size=100, score=2.0, severity="medium", reason="test",
                   publisher_id=2, instrument_id=7, sequence=sequence)


def type_score(report, kind: str):
    return next(t for t in report.by_type if t.type == kind)


def detector_score(report, name: str):
    return next(d for d in report.by_detector if d.detector == name)


CASES = [
    # (label events, detections, expected (tp, fn, fp) for the first event's type)
    pytest.param([event()], [detection()], (1, 0, 0), id="exact-hit"),
    pytest.param([event()], [detection(ts=T0 + MS // 2)], (1, 0, 0), id="single-print-within-1ms"),
    pytest.param([event()], [detection(ts=T0 + 5 * MS)], (0, 1, 1), id="single-print-5ms-late-misses"),
    pytest.param([event()], [], (0, 1, 0), id="miss"),
    pytest.param([event()], [detection(), detection(symbol="OTHR")], (1, 0, 1), id="false-alarm-on-another-symbol"),
    pytest.param([burst()], [detection("trade_burst", T0 + S // 4)], (1, 0, 0), id="burst-partway-in"),
    pytest.param([burst()], [detection("trade_burst", T0 + S // 2 + 3 * S // 2)], (1, 0, 0),
                 id="burst-within-tolerance-after-end"),
    pytest.param([burst()], [detection("trade_burst", T0 + S // 2 + 3 * S)], (0, 1, 1), id="burst-past-tolerance"),
    pytest.param([burst()], [detection("trade_burst", T0 - 10 * MS)], (0, 1, 1), id="burst-before-start"),
    pytest.param([surge()], [detection("volume_surge", T0 + 100 * S)], (1, 0, 0),
                 id="surge-echo-within-its-own-length-after-end"),
    pytest.param([surge()], [detection("volume_surge", T0 + 125 * S)], (0, 1, 1), id="surge-past-its-echo"),
    pytest.param([burst()], [detection("trade_burst", T0 + i * MS, sequence=i) for i in range(5)], (1, 0, 0),
                 id="several-detections-on-one-event-count-once"),
    pytest.param([event()], [detection(), detection()], (1, 0, 0), id="duplicate-ids-count-once"),
]


@pytest.mark.parametrize(("events", "detections", "expected"), CASES)
def test_counts_true_positives_misses_and_false_alarms(events, detections, expected) -> None:
    report = evaluate(labels(*events), detections)
    score = type_score(report, events[0]["type"])
    assert (score.tp, score.fn, score.fp) == expected
    assert report.false_alarms == expected[2]


def test_several_detections_on_one_event_are_matched_not_false_alarms() -> None:
    report = evaluate(labels(burst()), [detection("trade_burst", T0 + i * MS, sequence=i) for i in range(5)])
    burst_detector = detector_score(report, "trade_burst")
    assert (burst_detector.detections, burst_detector.matched, burst_detector.false_alarms) == (5, 5, 0)
    assert burst_detector.precision == 1.0 and burst_detector.recall == 1.0


def test_an_event_caught_only_by_another_detector_is_caught_by_any_but_not_a_true_positive() -> None:
    report = evaluate(labels(event()), [detection("volume_surge")])
    block = type_score(report, "block_trade")
    assert (block.tp, block.fn, block.caught_by_any) == (0, 1, 1)
    surge = detector_score(report, "volume_surge")
    assert (surge.matched, surge.false_alarms, surge.expected_events, surge.recall) == (1, 0, 0, None)
    assert report.false_alarms == 0 and report.missed == ("ev000001",)


def test_precision_recall_and_f1_per_type() -> None:
    events = [event(f"ev{i:06d}", ts_start=T0 + i * 60 * S) for i in range(4)]
    found = [detection(ts=T0 + i * 60 * S, sequence=i) for i in range(3)] + [detection(ts=T0 + 30 * S, sequence=9)]
    score = type_score(evaluate(labels(*events), found), "block_trade")
    assert (score.tp, score.fn, score.fp) == (3, 1, 1)
    assert score.precision == pytest.approx(0.75) and score.recall == pytest.approx(0.75)
    assert score.f1 == pytest.approx(0.75)


def test_false_alarms_per_100k_normal_trades() -> None:
    report = evaluate(labels(event(), total_trades=100_001),
                      [detection("price_change", T0 + i * S, sequence=i) for i in range(1, 4)])
    assert report.normal_trades == 100_000
    assert report.false_alarms == 3
    assert report.false_alarms_per_100k_normal == pytest.approx(3.0)


def test_total_trades_argument_overrides_the_labels() -> None:
    report = evaluate(labels(event()), [], total_trades=200_001)
    assert report.normal_trades == 200_000


def test_undefined_ratios_are_none_and_a_missed_type_scores_zero_f1() -> None:
    score = type_score(evaluate(labels(event()), []), "block_trade")
    assert score.precision is None and score.recall == 0.0 and score.f1 == 0.0


def test_accepts_anomaly_dicts_as_read_back_from_a_sink() -> None:
    report = evaluate(labels(event()), [detection().to_dict()])
    assert type_score(report, "block_trade").tp == 1


def test_report_serialises_and_renders() -> None:
    report = evaluate(labels(event(), burst(id="ev000002", symbol="OTHR")),
                      [detection(), detection("price_change", T0 + 9 * S)])
    assert json.loads(json.dumps(report.to_dict()))["false_alarms"] == 1
    text = render_text(report)
    assert "block_trade" in text and "trade_burst" in text and "per 100k" in text
    # Each missed event as an analyst looks it up: type, symbol and New York time (the ids alone said nothing).
    lines = text.splitlines()
    assert lines[lines.index("missed:") + 1] == "  ev000002  trade_burst    OTHR     2025-03-04 10:00:00 New York"
    assert report.to_dict()["missed_events"][0]["symbol"] == "OTHR"


def test_load_labels_checks_the_format(tmp_path) -> None:
    good, bad = tmp_path / "good.labels.json", tmp_path / "bad.labels.json"
    good.write_text(json.dumps(labels(event())))
    bad.write_text(json.dumps({**labels(event()), "format": 2}))
    assert load_labels(good)["events"][0]["id"] == "ev000001"
    with pytest.raises(ValueError, match="format"):
        load_labels(bad)


@pytest.mark.parametrize(("content", "message"), [
    ({"format": 1}, "no list of events"),
    ({"format": 1, "events": [7]}, "event 1 is not an object"),
    ({"format": 1, "events": [{"id": "a"}]}, "event 1 lacks type, symbol, ts_start"),
])
def test_load_labels_checks_every_event(tmp_path, content: dict, message: str) -> None:
    path = tmp_path / "x.labels.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        load_labels(path)


@pytest.mark.parametrize(("content", "message"), [
    # each of these was scored without a word (or, for a count that is not one, a traceback)
    (labels(event(), event()), r"^event 2 \(ev000001\) has the id of event 1: each event is scored once$"),
    (labels(event(), burst(id="ev000001")), r"^event 2 \(ev000001\) has the id of event 1"),
    (labels(event(expected_detector="high_volum")),
     r"^event 1 \(ev000001\): expected_detector 'high_volum' is not a detector \(high_volume, price_change, "),
    (labels(burst(ts_end=T0 - S)), r"^event 1 \(ev000001\): ts_start \d+ to ts_end \d+ is not a window of event time"),
    (labels(event(ts_start=-1)), r"^event 1 \(ev000001\): ts_start -1 to ts_end -1 is not a window"),
    (labels(event(ts_start=10**30)), r"is not a window"),
    (labels(burst(n_trades=0)), r"^event 1 \(ev000001\): n_trades 0 is not a count of prints \(1 or more\)$"),
    (labels(event(symbol=" ")), r"^event 1 \(ev000001\): symbol empty$"),
    ({**labels(event()), "total_trades": "abc"}, r"^total_trades 'abc' is not a count of trades$"),
    ({**labels(event()), "total_trades": 100_000.5}, r"^total_trades 100000.5 is not a count of trades$"),
    ({**labels(event()), "total_trades": True}, r"^total_trades True is not a count of trades$"),
    ({**labels(event()), "anomalous_trades": "abc"}, r"^anomalous_trades 'abc' is not a count of trades$"),
    (labels(event(), total_trades=10, anomalous_trades=11), r"^anomalous_trades 11 is more than total_trades 10$"),
])
def test_a_hand_edited_labels_file_is_refused_naming_the_event(tmp_path, content: dict, message: str) -> None:
    path = tmp_path / "x.labels.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        load_labels(path)


def test_labels_of_several_files_merge_with_their_ids_kept_apart() -> None:
    one, two = labels(event()), labels(event())
    merged = merge_labels([("a", one), ("b", two)])
    assert [e["id"] for e in merged["events"]] == ["a:ev000001", "b:ev000001"]
    assert merged["total_trades"] == one["total_trades"] + two["total_trades"]
    assert merge_labels([("a", one)]) == one
    with pytest.raises(ValueError, match="two labels files under one name: a"):
        merge_labels([("a", one), ("a", two)])  # both files' ev000001 was a:ev000001


def test_false_alarms_are_listed_by_the_ids_show_takes_highest_score_first() -> None:
    """Evaluate counted '7 false alarms' and named none of them: the detections to tune by could only be
    found by replaying with --out and matching each against the labels by hand."""
    mild = detection("price_change", T0 + 9 * S, sequence=2)
    worse = dataclasses.replace(detection("vwap_deviation", T0 + 20 * S, symbol="OTHR", sequence=3), score=3.5)
    report = evaluate(labels(event()), [detection(), mild, worse])

    assert [(d["id"], d["detector"], d["symbol"], d["score"]) for d in report.false_alarm_detections] == [
        (worse.id, "vwap_deviation", "OTHR", 3.5), (mild.id, "price_change", "ACME", 2.0)]
    assert report.false_alarm_detections[1]["time"].startswith("2025-03-04T10:00:09")
    lines = render_text(report).splitlines()
    assert lines[-3:] == ["false alarms, highest score first:",
                          f"  {worse.id}  vwap_deviation   OTHR     2025-03-04 10:00:20 New York  score 3.50",
                          f"  {mild.id}  price_change     ACME     2025-03-04 10:00:09 New York  score 2.00"]


def test_a_long_list_says_how_many_it_leaves_out_and_where_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """'missed (the first 20):' of 28 missed events said neither how many more nor where they were."""
    import application.evaluate as module

    monkeypatch.setattr(module, "MISSED_SHOWN", 1)
    events = [event(f"ev{i:06d}", ts_start=T0 + i * 60 * S) for i in range(1, 4)]
    text = render_text(evaluate(labels(*events), [detection("price_change", T0 + 9 * S, sequence=i) for i in (1, 2)]))
    assert "missed (the first 1 of 3; --json lists every one: missed_events):" in text
    assert "false alarms, highest score first (the first 1 of 2; --json lists every one: false_alarm_detections):" in text
