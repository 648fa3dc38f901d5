"""The replay report: 1-minute bars from trade batches, and the self-contained interactive HTML file
(what it does in a browser: tests/integration/test_report_browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from adapters.report.bars import MINUTE_NS, BarCollector
from adapters.report.html import write_html_report
from builders import T0, S
from domain.incidents import Incident
from domain.model import TRADE_DTYPE, Anomaly, Print


def mixed_trades(n: int = 3_000, symbols: tuple[str, ...] = ("AAPL", "MSFT", "BRK.B"),
                 seed: int = 3) -> np.ndarray:
    """Trades of several symbols interleaved in time over ~20 minutes, with equal-time ties."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, TRADE_DTYPE)
    out["ts_event"] = T0 + np.sort(rng.integers(0, 1_200, n)) * S  # whole seconds: many ties
    out["price"] = np.round(100 + rng.normal(0, 1, n), 2)
    out["size"] = rng.integers(1, 500, n)
    out["symbol"] = np.array(symbols)[rng.integers(0, len(symbols), n)]
    out["sequence"] = np.arange(n)
    return out


def naive_bars(trades: np.ndarray) -> dict[tuple[str, int], tuple[float, float, float, float, int, int]]:
    """(symbol, minute start) -> OHLCV and count, in arrival order: open is the earliest trade
    (first arrival on a tie), close the latest (last arrival on a tie)."""
    acc: dict[tuple[str, int], list] = {}
    for row in trades:
        ts, price = int(row["ts_event"]), float(row["price"])
        key = (str(row["symbol"]), ts // MINUTE_NS * MINUTE_NS)
        bar = acc.get(key)
        if bar is None:
            acc[key] = [ts, price, price, price, ts, price, int(row["size"]), 1]
            continue
        if ts < bar[0]:
            bar[0], bar[1] = ts, price
        bar[2], bar[3] = max(bar[2], price), min(bar[3], price)
        if ts >= bar[4]:
            bar[4], bar[5] = ts, price
        bar[6] += int(row["size"])
        bar[7] += 1
    return {k: (b[1], b[2], b[3], b[5], b[6], b[7]) for k, b in acc.items()}


def collected(bars: BarCollector) -> dict[tuple[str, int], tuple[float, float, float, float, int, int]]:
    return {(symbol, int(b["ts"])): (float(b["open"]), float(b["high"]), float(b["low"]),
                                     float(b["close"]), int(b["volume"]), int(b["trades"]))
            for symbol in bars.symbols() for b in bars.bars(symbol)}


def shuffled_within_batches(trades: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [b[rng.permutation(len(b))] for b in np.split(trades, cuts)]


SPLITS = {
    "one_batch": lambda t: [t],
    "batches_cut_mid_minute": lambda t: np.split(t, [17, 18, 400, 1_501, 2_999]),
    "many_tiny_batches": lambda t: np.array_split(t, 300),
    "unsorted_within_batches": lambda t: shuffled_within_batches(t, [700, 1_900]),
    "batches_out_of_order": lambda t: list(reversed(np.array_split(t, 7))),
}


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
@pytest.mark.parametrize("flush_rows", [4, 1 << 16], ids=["merging_often", "merging_at_read"])
def test_bars_equal_a_naive_ohlcv_however_the_trades_are_batched(split, flush_rows):
    trades = mixed_trades()
    batches = split(trades)
    bars = BarCollector(flush_rows=flush_rows)
    for batch in batches:
        bars.add(batch)

    assert collected(bars) == naive_bars(np.concatenate(batches))
    assert bars.trade_count == len(trades)


@pytest.mark.parametrize("symbols", [
    ("SPY", "SPY   240119C00470000", "ÅBC", ""),  # a long one sends its batches the slow way
    ("A", "AA", "AAAAAAAA", "AAAAAAAB"),
], ids=["long_and_empty_symbols", "symbols_one_letter_apart"])
def test_bars_keep_every_symbol_apart(symbols):
    trades = mixed_trades(n=900, symbols=symbols)
    first, middle, last = np.split(trades, [300, 600])
    short = middle[np.char.str_len(middle["symbol"]) <= 8]
    batches = [first, short, middle[np.char.str_len(middle["symbol"]) > 8], last]
    bars = BarCollector(flush_rows=8)
    for batch in batches:
        bars.add(batch)

    assert bars.symbols() == sorted(symbols)
    assert collected(bars) == naive_bars(np.concatenate(batches))


def test_bars_of_an_unseen_symbol_are_empty():
    bars = BarCollector()
    bars.add(mixed_trades(n=10))

    assert len(bars.bars("NOPE")) == 0
    assert BarCollector().time_range() is None


def anomaly(symbol: str, ts: int, score: float, detector: str = "price_change",
            reason: str = "moved 3.1 sigma") -> Anomaly:
    return Anomaly(id=f"{symbol}{ts}{detector}", detector=detector, symbol=symbol, ts_event=ts,
                   price=100.0, size=100, score=score,
                   severity="high" if score >= 4 else "medium" if score >= 2 else "low",
                   reason=reason, session="regular", context=(Print(ts - 2 * S, 99.5, 10, "B"),
                                                               Print(ts - S, 99.8, 20, "A")))


SUMMARY = {"trades": 3_000, "anomalies": 4, "by_detector": {"high_volume": 1, "price_change": 3},
           "seconds": 0.5, "trades_per_second": 6_000.4, "source": ["day.csv.zst"],
           "top": [{"id": "x"}],
           "top_incidents": [{"id": "i1", "symbol": "ZZZT", "start_ns": T0 + 90 * S, "end_ns": T0 + 90 * S, "size": 2,
                              "members": ["a", "b"], "detectors": ["high_volume", "price_change"], "score": 5.0,
                              "severity": "high", "headline": "high_volume: size <b>5000</b>", "session": "regular",
                              "ts_local": "2025-03-04T10:01:30.000000000-05:00"}]}
ANOMALIES = [
    anomaly("ZZZT", T0 + 90 * S, 5.0, "high_volume", reason='size <b>5000</b> & "50x" median </script>'),
    anomaly("ZZZT", T0 + 90 * S, 3.0),
    anomaly("MSFT", T0 + 300 * S, 4.5),
    anomaly("AAPL", T0 + 600 * S, 1.2),
]
INCIDENT = Incident("i1", "ZZZT", T0 + 90 * S, T0 + 90 * S, 2, (ANOMALIES[0].id, ANOMALIES[1].id),
                    ("high_volume", "price_change"), 5.0, "high", "high_volume: size <b>5000</b>",
                    session="regular", ts_local="2025-03-04T10:01:30.000000000-05:00",
                    after={ANOMALIES[0].id: (Print(T0 + 91 * S, 100.2, 30, "N"),)})


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    """A report over three traded symbols plus one that traded once, capped at three charts."""
    bars = BarCollector()
    bars.add(mixed_trades())
    lone = np.zeros(1, TRADE_DTYPE)
    lone["symbol"], lone["ts_event"], lone["price"], lone["size"] = "ZZZT", T0 + 90 * S, 12.5, 5_000
    bars.add(lone)
    path = write_html_report(tmp_path_factory.mktemp("report") / "report.html", bars, ANOMALIES,
                             SUMMARY, max_symbols=3, max_rows=3, incidents=[INCIDENT])
    return Path(path).read_text(encoding="utf-8")


def markup(report: str) -> str:
    """The report without its scripts (plotly.js, the charts' data, the page's code)."""
    return re.sub(r"<script.*?</script>", "", report, flags=re.S)


def embedded_rows(report: str) -> list[dict]:
    text = re.search(r'<script type="application/json" id="anomaly-data">(.*?)</script>', report, re.S).group(1)
    return json.loads(text)


def test_report_charts_the_highest_scoring_symbols_first_up_to_the_cap(report):
    charted = re.findall(r'<section class="chart" id="chart-([^"]+)"', report)

    assert charted == ["ZZZT", "MSFT", "AAPL"]
    assert len(re.findall(r'class="plotly-graph-div"', report)) == 3
    assert report.count("Plotly.newPlot(") == 3


def test_report_table_is_sorted_by_score_and_capped(report):
    table = report[report.index('<table class="anoms" id="anomaly-table">'):]
    scores = [float(s) for s in re.findall(r'<td class="n">(\d+\.\d\d)</td><td class="n">100', table)]

    assert scores == [5.0, 4.5, 3.0]
    assert "Top 3 of 4 anomalies" in report
    assert [r["score"] for r in embedded_rows(report)] == [5.0, 4.5, 3.0]


def test_report_rows_carry_the_tape_around_each_anomaly(report):
    rows = {r["id"]: r for r in embedded_rows(report)}
    top = rows[ANOMALIES[0].id]
    assert [p[1:] for p in top["before"]] == [[-2000.0, 99.5, 10, "B"], [-1000.0, 99.8, 20, "A"]]
    assert top["before"][0][0] == "10:01:28.000"  # New York time of day (UTC-5 in March)
    assert top["after"] == [["10:01:31.000", 1000.0, 100.2, 30, "N"]] and top["incident"] == "i1"
    assert rows[ANOMALIES[2].id]["after"] is None  # no incident closed around it


def test_report_escapes_anomaly_reasons(report):
    assert "size &lt;b&gt;5000&lt;/b&gt; &amp; &quot;50x&quot; median" in report
    assert "<b>5000" not in markup(report)
    # Inside the embedded data, "</script>" cannot end the script element early.
    assert embedded_rows(report)[0]["reason"].endswith("</script>")


def test_report_shows_the_summary(report):
    assert ">6,000<" in report and "0.50 s" in report and "price_change" in report  # whole trades a second
    assert "day.csv.zst" in report and "entries" not in markup(report)  # no "TOP 1 entries" card


def test_report_lists_the_top_incidents_linked_to_their_charts(report):
    incidents = report[report.index("<h2>Top incidents</h2>"):report.index("<h2>Charts</h2>")]
    assert "<a href=\"#chart-ZZZT\">ZZZT</a>" in incidents and "2025-03-04 10:01:30.000" in incidents
    assert "anomalies each within 5 minutes of the next" in incidents
    assert "high_volume, price_change" in incidents and "5.00" in incidents
    assert "size &lt;b&gt;5000&lt;/b&gt;" in incidents


def test_report_gives_each_top_incidents_id_as_the_terminals_tables_do(report):
    """An incident triaged in the report could not be labelled or shown: its id was in no column (an
    anomaly's is said when its row is clicked)."""
    incidents = report[report.index("<h2>Top incidents</h2>"):report.index("<h2>Charts</h2>")]
    head = re.findall(r"<th>([^<]*)</th>", incidents)
    row = re.findall(r"<td[^>]*>(.*?)</td>", incidents[incidents.index("<tbody>"):])
    assert head[-1] == "id" and len(row) == len(head) and row[-1] == INCIDENT.id


def test_report_needs_nothing_from_the_network(report):
    # plotly.js is inlined; the browser test also checks that the page requests nothing.
    assert not re.search(r"<script[^>]+src=", report) and not re.search(r"<link[^>]+href=", report)
    assert "Plotly" in report and "cdn.plot.ly/plotly" not in markup(report)


def test_report_with_no_anomalies_and_no_trades_still_renders(tmp_path):
    bars = BarCollector()
    bars.add(mixed_trades(n=50, symbols=("ONLY",)))

    quiet = write_html_report(tmp_path / "quiet.html", bars, [], {"trades": 50}).read_text()
    empty = write_html_report(tmp_path / "empty.html", BarCollector(), [], {}).read_text()

    assert "No anomalies were found." in quiet and quiet.count('<section class="chart"') == 1
    assert "No trades to chart." in empty


def test_a_symbol_with_one_severe_anomaly_is_charted_before_one_with_many_mild_ones(tmp_path):
    """At 5,000 symbols the 20 charts went to names with 4-7 low-scoring anomalies each, and the
    incidents scoring 16.55 and 15.96 (one anomaly each) had none."""
    bars = BarCollector()
    bars.add(mixed_trades())
    mild = [anomaly("AAPL", T0 + k * 60 * S, 1.1) for k in range(1, 7)]
    text = Path(write_html_report(tmp_path / "r.html", bars, [*mild, anomaly("MSFT", T0 + 300 * S, 16.5)],
                                  SUMMARY, max_symbols=1)).read_text()
    assert re.findall(r'<section class="chart" id="chart-([^"]+)"', text) == ["MSFT"]


def test_symbols_left_out_of_the_charts_are_said_and_not_linked(tmp_path):
    """A 500-symbol market charted 20 of 134 flagged symbols without saying so, and 9 incident links
    pointed at charts that were not there."""
    bars = BarCollector()
    bars.add(mixed_trades())
    summary = {**SUMMARY, "top_incidents": [{**SUMMARY["top_incidents"][0], "symbol": "AAPL"}]}
    text = Path(write_html_report(tmp_path / "r.html", bars, ANOMALIES, summary, max_symbols=1)).read_text()
    assert re.findall(r'<section class="chart" id="chart-([^"]+)"', text) == ["ZZZT"]
    assert "The symbol's anomaly count is after its name; 2 more with anomalies are not charted" in text
    assert "(they are in the table below;" in text
    # With a table too short for them, the note says so instead of sending the reader to it (a
    # 2,000-symbol report sent 289 symbols' readers to a top-500 table that did not hold them).
    short = Path(write_html_report(tmp_path / "short.html", bars, ANOMALIES, summary, max_symbols=1,
                                   max_rows=1)).read_text()
    assert short.count('<tr data-row="') == 1
    assert ("2 more with anomalies are not charted (0 of them have rows in the table below, which holds the "
            "top anomalies by score; every anomaly is in `replay --out`") in short
    incidents = text[text.index("<h2>Top incidents</h2>"):text.index("<h2>Charts</h2>")]
    assert "<td>AAPL</td>" in incidents and 'href="#chart-AAPL"' not in text
    targets = set(re.findall(r'href="#(chart-[^"]+)"', text))
    assert targets <= set(re.findall(r'<section class="chart" id="(chart-[^"]+)"', text))


def test_the_summary_writes_sessions_as_the_tables_do(tmp_path):
    """The session card said pre_market and after_hours where every table says pre-market."""
    summary = {**SUMMARY, "by_session": {"pre_market": 3, "regular": 1, "after_hours": 2}}
    text = Path(write_html_report(tmp_path / "r.html", BarCollector(), [], summary)).read_text()
    assert "<td>pre-market</td>" in text and "<td>after-hours</td>" in text and "pre_market" not in text


def test_a_report_of_some_symbols_charts_only_those(tmp_path):
    bars = BarCollector()
    bars.add(mixed_trades())
    mine = [a for a in ANOMALIES if a.symbol == "AAPL"]
    text = Path(write_html_report(tmp_path / "r.html", bars, mine, SUMMARY, only_symbols=["aapl"])).read_text()
    assert re.findall(r'<section class="chart" id="chart-([^"]+)"', text) == ["AAPL"]


def test_a_detector_looks_the_same_in_every_report() -> None:
    """Styles were handed out in order of the detectors present: trade_burst was a diamond in a
    report with price_change and a square in one without it."""
    from adapters.report.charts import detector_styles

    alone = detector_styles(["trade_burst"])
    together = detector_styles(["high_volume", "price_change", "trade_burst", "volume_surge", "mine"])
    assert alone["trade_burst"] == together["trade_burst"]
    assert len({(s.color, s.marker) for s in together.values()}) == len(together)


def test_a_report_of_a_selection_says_so_above_its_figures(tmp_path):
    """A report of `replay --symbols AAPL` over a day of other symbols read 'anomalies 0' like a quiet day."""
    bars = BarCollector()
    bars.add(mixed_trades())
    summary = {**SUMMARY, "selection": {"symbols": ["AAPL"], "since": "2025-03-04T15:00:00Z"}}
    text = markup(Path(write_html_report(tmp_path / "r.html", bars, [], summary, only_symbols=["AAPL"])).read_text())
    said = text[text.index('<p class="sub">'):text.index("<h2>Summary</h2>")]
    assert ("Reported only: symbol AAPL, from 2025-03-04T15:00:00Z (10:00:00 New York); the anomaly and "
            "incident figures are of these") in said
    assert "selection" not in text[text.index("<h2>Summary</h2>"):]


def test_a_report_names_the_detectors_that_did_not_run(tmp_path):
    bars = BarCollector()
    bars.add(mixed_trades())
    summary = {**SUMMARY, "detectors_not_run": ["trade_burst", "volume_surge"]}
    text = markup(Path(write_html_report(tmp_path / "r.html", bars, ANOMALIES, summary)).read_text())
    said = text[text.index('<p class="sub">'):text.index("<h2>Summary</h2>")]
    assert "Detectors not run (--detectors, STOCKANOMALY_DETECTORS): trade_burst, volume_surge." in said


def test_a_report_of_more_named_symbols_than_its_usual_cap_charts_each_of_them(tmp_path, monkeypatch):
    """`replay --symbols` naming 30 symbols of a 2,000-symbol market charted 20 of them, and its note
    said '`replay --symbols` charts the ones you name' of the 10 it left out."""
    import adapters.report.html as html

    names = [f"S{k:02d}" for k in range(25)]
    bars = BarCollector()
    bars.add(mixed_trades(n=500, symbols=tuple(names)))
    found = [anomaly(s, T0 + 60 * S, 1.0 + k / 10) for k, s in enumerate(names)]

    text = Path(write_html_report(tmp_path / "r.html", bars, found, SUMMARY, only_symbols=names)).read_text()
    assert len(re.findall(r'<section class="chart"', text)) == 25 and "not charted" not in text

    monkeypatch.setattr(html, "MAX_NAMED_CHARTS", 21)  # a list past the named cap: said, with the way out
    text = Path(write_html_report(tmp_path / "r.html", bars, found, SUMMARY, only_symbols=names)).read_text()
    assert len(re.findall(r'<section class="chart"', text)) == 21
    assert ("4 more with anomalies are not charted (they are in the table below; a report charts at most 21 of "
            "the symbols named: name fewer with `replay --symbols`)") in text
    assert "charts the ones you name" not in text


def test_a_charts_count_of_one_anomaly_is_singular(report):
    """Every chart of a symbol with one anomaly (most of them, at market scale) read '1 anomalies'."""
    metas = dict(re.findall(r'<h3>([^<]+)</h3><div class="meta">(\d+ anomal\w+)', report))
    assert metas == {"ZZZT": "2 anomalies", "MSFT": "1 anomaly", "AAPL": "1 anomaly"}


def test_a_report_lays_its_charts_out_once_not_per_chart(tmp_path, monkeypatch):
    """Each chart was a plotly figure built from make_subplots, its template copied in and every shaded
    band validated: ~60 ms a chart, 6 s of a report of 100 named symbols. The layout is built once."""
    import adapters.report.charts as charts

    built = []
    real = charts.make_subplots
    monkeypatch.setattr(charts, "make_subplots", lambda **kw: built.append(kw) or real(**kw))
    if hasattr(charts, "_layout"):
        charts._layout.cache_clear()
    names = ("AAPL", "MSFT", "BRK.B")
    bars = BarCollector()
    bars.add(mixed_trades(symbols=names))

    text = Path(write_html_report(tmp_path / "r.html", bars, [anomaly(s, T0 + 60 * S, 2.0) for s in names],
                                 SUMMARY)).read_text()
    assert text.count("Plotly.newPlot(") == 3
    assert len(built) == 1


def test_a_chart_is_a_valid_figure_of_two_panes_each_shaded_by_session():
    import plotly.graph_objects as go

    from adapters.report.charts import detector_styles, figure

    bars = BarCollector()
    bars.add(mixed_trades(symbols=("AAPL",)))
    found = [anomaly("AAPL", T0 + 60 * S, 2.0, "high_volume")]
    fig = go.Figure(figure(bars.bars("AAPL"), found, detector_styles(["high_volume"]), {found[0].id: 0}))

    assert [(t.type, t.xaxis, t.yaxis) for t in fig.data] == [("scatter", "x", "y")] * 3 + [("bar", "x2", "y2")] \
        + [("scatter", "x", "y")]
    assert fig.data[-1].name == "high_volume (1)" and fig.data[-1].customdata[0][0] == 0
    assert fig.layout.xaxis.matches == "x2" and fig.layout.yaxis2.type == "log"
    assert sorted((s.xref, s.yref, s.x0) for s in fig.layout.shapes) == [
        ("x", "y domain", "2025-03-04 04:00:00"), ("x", "y domain", "2025-03-04 16:00:00"),
        ("x2", "y2 domain", "2025-03-04 04:00:00"), ("x2", "y2 domain", "2025-03-04 16:00:00")]
