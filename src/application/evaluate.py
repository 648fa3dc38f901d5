"""Detection quality: detections scored against the labelled events of a synthetic day.

Matching. A detection matches a labelled event when it is on the event's symbol and its ts_event lies
in the event's window:
- single-print events (n_trades == 1: block_trade, price_spike, unusual_trade):
  |ts_event - ts_start| <= EXACT_NS (1 ms), i.e. the detector flagged that very print;
- multi-print events (trade_burst, volume_surge, ramp):
  ts_start - EXACT_NS <= ts_event <= ts_end + max(tolerance_ns, ts_end - ts_start), because a rate,
  volume or VWAP detector needs part of the event before it can fire, and a detector reading a
  trailing window as long as the event keeps seeing it for that long after its last print (an echo
  of the same event, not a false alarm).
Detections with the same id count once. Several detections on one event are one catch, never false alarms.

Per injected type T, with D its expected detector:
- TP = events of T matched by a detection of D; FN = events of T - TP;
- FP = detections of D that match no labelled event of any type (D's false alarms);
- precision = TP / (TP + FP); recall = TP / events; F1 = 2PR / (P + R);
- caught_by_any = events of T matched by a detection of any detector (and that as a recall).
Per detector D:
- detections; matched = detections that match some event (of any type); false_alarms = the rest;
- precision = matched / detections (the share of D's alerts that point at a labelled event);
- expected_events = events whose expected_detector is D; caught = those matched by D;
  recall = caught / expected_events.
Overall:
- false_alarms = detections of any detector that match no event;
- normal_trades = total_trades - anomalous_trades;
  false_alarms_per_100k_normal = 100,000 * false_alarms / normal_trades;
- recall = events caught by their expected detector / events; macro_f1 = mean of the per-type F1.
A ratio whose denominator is 0 is None.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from domain.detectors import DETECTOR_NAMES
from domain.incidents import Incident, IncidentGrouper
from domain.model import Anomaly
from domain.sessions import SessionCalendar
from domain.suppressions import Suppressions

EXACT_NS = 1_000_000
DEFAULT_TOLERANCE_NS = 2_000_000_000
LABELS_FORMAT = 1


@dataclass(frozen=True, slots=True)
class TypeScore:
    type: str
    expected_detector: str
    events: int
    tp: int
    fn: int
    fp: int
    precision: float | None
    recall: float | None
    f1: float | None
    caught_by_any: int
    caught_by_any_recall: float | None


@dataclass(frozen=True, slots=True)
class DetectorScore:
    detector: str
    detections: int
    matched: int
    false_alarms: int
    precision: float | None
    expected_events: int
    caught: int
    recall: float | None


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    by_type: tuple[TypeScore, ...]
    by_detector: tuple[DetectorScore, ...]
    events: int
    caught: int
    caught_by_any: int
    recall: float | None
    caught_by_any_recall: float | None
    macro_f1: float | None
    detections: int
    false_alarms: int
    total_trades: int
    anomalous_trades: int
    normal_trades: int
    false_alarms_per_100k_normal: float | None
    tolerance_ns: int
    missed: tuple[str, ...]  # ids of events their expected detector did not catch
    # The same events as the analyst looks them up: id, type, symbol, start (New York time, ISO 8601).
    missed_events: tuple[dict[str, str], ...] = ()
    # The detections that match no event, highest score first, by what `show` takes: id, detector,
    # symbol, score, time (New York, ISO 8601). Tuning starts from them; a count alone named none.
    false_alarm_detections: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# What every labelled event carries, and the types scoring reads it as.
EVENT_FIELDS: dict[str, tuple[type, ...]] = {"id": (str,), "type": (str,), "symbol": (str,), "ts_start": (int,),
                                             "ts_end": (int,), "n_trades": (int,), "expected_detector": (str,)}
MAX_NS = 2**63 - 1  # event times are int64 nanoseconds
MISSED_SHOWN = 20  # missed events (and false alarms) the text report lists; --json has every one


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # (JSON true is no count)


def load_labels(path: str | Path) -> dict[str, Any]:
    """A labels file of `stockanomaly generate`, checked (ValueError: what is wrong, and which event:
    its place in `events`, from 1, and its id). A hand-edited one is held to what generate writes:
    each of those mistakes scored without a word (an event listed twice counted twice, an expected
    detector misspelt or a window ending before it starts a miss) or ended in a traceback."""
    labels = json.loads(Path(path).read_text(encoding="utf-8"))  # a JSONDecodeError is a ValueError
    if not isinstance(labels, dict) or labels.get("format") != LABELS_FORMAT:
        found = labels.get("format") if isinstance(labels, dict) else type(labels).__name__
        raise ValueError(f"labels format {found!r}, expected {LABELS_FORMAT}")
    for count in ("total_trades", "anomalous_trades"):
        if count in labels and not (_is_int(labels[count]) and labels[count] >= 0):
            raise ValueError(f"{count} {labels[count]!r} is not a count of trades")
    if labels.get("anomalous_trades", 0) > labels.get("total_trades", MAX_NS):
        raise ValueError(f"anomalous_trades {labels['anomalous_trades']} is more than total_trades "
                         f"{labels['total_trades']}")
    events = labels.get("events")
    if not isinstance(events, list):
        raise ValueError("no list of events")
    first_of: dict[str, int] = {}  # event id -> the place of the event that has it
    for n, event in enumerate(events, 1):
        if not isinstance(event, dict):
            raise ValueError(f"event {n} is not an object")
        wrong = [name for name, kinds in EVENT_FIELDS.items()
                 if not isinstance(event.get(name), kinds) or isinstance(event.get(name), bool)]
        if wrong:
            raise ValueError(f"event {n} lacks {', '.join(wrong)} (or has them of another type)")
        which = f"event {n} ({event['id']})"
        empty = [name for name, kinds in EVENT_FIELDS.items() if kinds == (str,) and not event[name].strip()]
        if empty:
            raise ValueError(f"{which}: {', '.join(empty)} empty")
        if event["id"] in first_of:
            raise ValueError(f"{which} has the id of event {first_of[event['id']]}: each event is scored once")
        first_of[event["id"]] = n
        if event["expected_detector"] not in DETECTOR_NAMES:
            raise ValueError(f"{which}: expected_detector {event['expected_detector']!r} is not a detector "
                             f"({', '.join(DETECTOR_NAMES)})")
        if not 0 < event["ts_start"] <= event["ts_end"] <= MAX_NS:
            raise ValueError(f"{which}: ts_start {event['ts_start']} to ts_end {event['ts_end']} is not a window "
                             "of event time (ns since the epoch, the end not before the start)")
        if event["n_trades"] < 1:
            raise ValueError(f"{which}: n_trades {event['n_trades']} is not a count of prints (1 or more)")
    return labels


def merge_labels(parts: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The labels of several generated files evaluated together, as one: each event's id prefixed
    with its file's name (every file numbers its events from ev000001), trade counts summed."""
    if len(parts) == 1:
        return dict(parts[0][1])
    names = [name for name, _ in parts]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # their events' ids would be one another's (the `missed` list could not tell them apart)
        raise ValueError(f"two labels files under one name: {', '.join(twice)}")
    events = [{**event, "id": f"{name}:{event['id']}"} for name, labels in parts for event in labels["events"]]
    merged: dict[str, Any] = {"format": LABELS_FORMAT, "events": events}
    for count in ("total_trades", "anomalous_trades"):
        if all(count in labels for _, labels in parts):
            merged[count] = sum(int(labels[count]) for _, labels in parts)
    return merged


def evaluate(labels: Mapping[str, Any], anomalies: Iterable[Anomaly | Mapping[str, Any]],
             total_trades: int | None = None, tolerance_ns: int = DEFAULT_TOLERANCE_NS) -> EvaluationReport:
    events = list(labels["events"])
    detections = _unique(anomalies)
    hits: list[set[str]] = [set() for _ in events]  # detectors that caught each event
    matched = np.zeros(len(detections), bool)
    all_ts = np.array([d.ts_event for d in detections], np.int64)
    by_symbol: dict[str, list[int]] = {}
    for i, d in enumerate(detections):
        by_symbol.setdefault(d.symbol, []).append(i)
    rows_of = {sym: np.array(rows, np.int64) for sym, rows in by_symbol.items()}
    for j, ev in enumerate(events):
        rows = rows_of.get(ev["symbol"])
        if rows is None:
            continue
        ts = all_ts[rows]
        lo, hi = _window(ev, tolerance_ns)
        inside = rows[(ts >= lo) & (ts <= hi)]
        matched[inside] = True
        hits[j].update(detections[i].detector for i in inside)
    names = [d.detector for d in detections]
    false_alarms: dict[str, int] = {}
    for name, ok in zip(names, matched.tolist()):
        false_alarms[name] = false_alarms.get(name, 0) + (not ok)
    by_type = _by_type(events, hits, false_alarms)
    by_detector = _by_detector(events, hits, names, false_alarms)
    total = int(labels["total_trades"] if total_trades is None else total_trades)
    anomalous = int(labels.get("anomalous_trades", sum(int(e["n_trades"]) for e in events)))
    normal = total - anomalous
    caught = sum(ev["expected_detector"] in h for ev, h in zip(events, hits))
    n_false = int((~matched).sum())
    f1s = [t.f1 for t in by_type if t.f1 is not None]
    missed = [ev for ev, h in zip(events, hits) if ev["expected_detector"] not in h]
    calendar = SessionCalendar()
    return EvaluationReport(
        by_type=by_type, by_detector=by_detector, events=len(events), caught=caught,
        caught_by_any=sum(bool(h) for h in hits), recall=_ratio(caught, len(events)),
        caught_by_any_recall=_ratio(sum(bool(h) for h in hits), len(events)),
        macro_f1=sum(f1s) / len(f1s) if f1s else None, detections=len(detections), false_alarms=n_false,
        total_trades=total, anomalous_trades=anomalous, normal_trades=normal,
        false_alarms_per_100k_normal=_ratio(100_000 * n_false, normal), tolerance_ns=tolerance_ns,
        missed=tuple(str(ev["id"]) for ev in missed),
        missed_events=tuple({"id": str(ev["id"]), "type": str(ev["type"]), "symbol": str(ev["symbol"]),
                             "start": calendar.local_time(int(ev["ts_start"]))} for ev in missed),
        false_alarm_detections=tuple(
            {"id": d.id, "detector": d.detector, "symbol": d.symbol, "score": d.score,
             "time": calendar.local_time(d.ts_event)}
            for d in sorted((d for d, ok in zip(detections, matched.tolist()) if not ok),
                            key=lambda d: (-d.score, d.ts_event))),
    )


class _Detection(NamedTuple):
    detector: str
    symbol: str
    ts_event: int
    id: str
    score: float


def _unique(anomalies: Iterable[Anomaly | Mapping[str, Any]]) -> list[_Detection]:
    """Each distinct detection once; a detection without an id is its own."""
    seen: set[str] = set()
    out = []
    for a in anomalies:
        if isinstance(a, Anomaly):
            row = _Detection(a.detector, a.symbol, int(a.ts_event), a.id, float(a.score))
        else:
            row = _Detection(str(a["detector"]), str(a["symbol"]), int(a["ts_event"]), str(a.get("id", "")),
                             float(a.get("score", 0.0)))
        if row.id:
            if row.id in seen:
                continue
            seen.add(row.id)
        out.append(row)
    return out


def _window(event: Mapping[str, Any], tolerance_ns: int) -> tuple[int, int]:
    start, end = int(event["ts_start"]), int(event["ts_end"])
    if int(event["n_trades"]) == 1:
        return start - EXACT_NS, start + EXACT_NS
    return start - EXACT_NS, end + max(tolerance_ns, end - start)


def _by_type(events: list[Mapping[str, Any]], hits: list[set[str]],
             false_alarms: dict[str, int]) -> tuple[TypeScore, ...]:
    out = []
    for kind in sorted({e["type"] for e in events}):
        mine = [(e, h) for e, h in zip(events, hits) if e["type"] == kind]
        detectors = sorted({e["expected_detector"] for e, _ in mine})
        tp = sum(e["expected_detector"] in h for e, h in mine)
        fp = sum(false_alarms.get(d, 0) for d in detectors)
        any_ = sum(bool(h) for _, h in mine)
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, len(mine))
        out.append(TypeScore(kind, "+".join(detectors), len(mine), tp, len(mine) - tp, fp, precision, recall,
                             _f1(precision, recall), any_, _ratio(any_, len(mine))))
    return tuple(out)


def _by_detector(events: list[Mapping[str, Any]], hits: list[set[str]], names: list[str],
                 false_alarms: dict[str, int]) -> tuple[DetectorScore, ...]:
    out = []
    for name in sorted(set(names) | {e["expected_detector"] for e in events}):
        n = names.count(name)
        expected = [h for e, h in zip(events, hits) if e["expected_detector"] == name]
        caught = sum(name in h for h in expected)
        fa = false_alarms.get(name, 0)
        out.append(DetectorScore(name, n, n - fa, fa, _ratio(n - fa, n), len(expected), caught,
                                 _ratio(caught, len(expected))))
    return tuple(out)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None if recall is None else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def render_text(report: EvaluationReport) -> str:
    """A plain-text summary: per type, per detector, then the overall numbers."""
    lines = [f"{'type':<15}{'expected detector':<19}{'events':>7}{'TP':>6}{'FN':>6}{'FP':>6}"
             f"{'precision':>11}{'recall':>8}{'F1':>7}{'any':>7}"]
    for t in report.by_type:
        lines.append(f"{t.type:<15}{t.expected_detector:<19}{t.events:>7}{t.tp:>6}{t.fn:>6}{t.fp:>6}"
                     f"{_fmt(t.precision):>11}{_fmt(t.recall):>8}{_fmt(t.f1):>7}{_fmt(t.caught_by_any_recall):>7}")
    lines += ["", f"{'detector':<19}{'detections':>11}{'matched':>9}{'false alarms':>14}{'precision':>11}"
                  f"{'expected':>10}{'caught':>8}{'recall':>8}"]
    for d in report.by_detector:
        lines.append(f"{d.detector:<19}{d.detections:>11,}{d.matched:>9,}{d.false_alarms:>14,}{_fmt(d.precision):>11}"
                     f"{d.expected_events:>10}{d.caught:>8}{_fmt(d.recall):>8}")
    lines += [
        "",
        f"events {report.events:,}: caught by the expected detector {report.caught:,} (recall {_fmt(report.recall)}), "
        f"by any detector {report.caught_by_any:,} ({_fmt(report.caught_by_any_recall)}); "
        f"macro F1 {_fmt(report.macro_f1)}",
        f"detections {report.detections:,}; false alarms {report.false_alarms:,} over {report.normal_trades:,} "
        f"normal trades = {_fmt(report.false_alarms_per_100k_normal, 2)} per 100k",
    ]
    # Enough of each to look them up (`replay --symbols SYMBOL --report`, `show ID`), not a page of them.
    if report.missed_events:
        shown = report.missed_events[:MISSED_SHOWN]
        lines += ["", f"missed{_first(len(shown), len(report.missed_events), 'missed_events')}:"]
        lines += [f"  {e['id']}  {e['type']:<15}{e['symbol']:<9}{e['start'][:19].replace('T', ' ')} New York"
                  for e in shown]
    if report.false_alarm_detections:
        alarms = report.false_alarm_detections[:MISSED_SHOWN]
        lines += ["", f"false alarms, highest score first"
                      f"{_first(len(alarms), len(report.false_alarm_detections), 'false_alarm_detections')}:"]
        lines += [f"  {d['id']}  {d['detector']:<17}{d['symbol']:<9}{d['time'][:19].replace('T', ' ')} New York"
                  f"  score {d['score']:.2f}" for d in alarms]
    return "\n".join(lines)


def _first(shown: int, total: int, field: str) -> str:
    return "" if shown == total else f" (the first {shown:,} of {total:,}; --json lists every one: {field})"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def with_incident_verdicts(verdicts: Mapping[str, str], incidents: Iterable[Incident]) -> tuple[dict[str, str], int]:
    """Verdicts per anomaly, an incident's given to each of its members that has none of its own (an
    analyst triages incidents: one called a false positive made every alert in it one), and how many
    members got their verdict that way."""
    out = dict(verdicts)
    inherited = 0
    for incident in incidents:
        verdict = verdicts.get(incident.id)
        if verdict is None:
            continue
        for member in incident.members:
            if member not in verdicts:
                out[member] = verdict
                inherited += 1
    return out, inherited


def incidents_under(rules: Suppressions, anomalies: Iterable[Anomaly]) -> list[Incident]:
    """The incidents a run honouring `rules` reports: those of the anomalies no rule holds back. An
    incident's id is derived from its earliest member, so a rule that holds that one back gives the
    rest another id, which an analyst may have labelled; grouping does not depend on how the stream
    was cut, so grouping the run's anomalies again gives the very incidents that run closed."""
    grouper = IncidentGrouper()
    grouper.add(sorted((a for a in anomalies if rules.rule_for(a) is None), key=lambda a: (a.ts_event, a.id)))
    return grouper.flush()


def score_verdicts(anomalies: list[Anomaly], verdicts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per detector (and "all"): detections, how many an analyst confirmed or called false
    positives, how many are unreviewed, and precision over the reviewed ones (None when none was)."""
    rows: dict[str, dict[str, Any]] = {}
    for a in {a.id: a for a in anomalies}.values():
        for key in (a.detector, "all"):
            row = rows.setdefault(key, {"detections": 0, "confirmed": 0, "false_positive": 0, "unreviewed": 0})
            row["detections"] += 1
            row[verdicts.get(a.id, "unreviewed")] += 1
    for row in rows.values():
        reviewed = row["confirmed"] + row["false_positive"]
        row["precision"] = row["confirmed"] / reviewed if reviewed else None
    return dict(sorted(rows.items(), key=lambda kv: (kv[0] == "all", kv[0])))
