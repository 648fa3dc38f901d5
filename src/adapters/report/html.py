"""The replay's report: one self-contained, interactive HTML file (plotly) with the summary, the top
incidents, a chart per symbol, and a sortable, filterable anomaly table whose rows (and chart
markers) open the tape around the anomaly."""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import plotly.io
from plotly.offline import get_plotlyjs

from adapters.files.naming import naming
from adapters.report.bars import BarCollector
from adapters.report.charts import DetectorStyle, detector_styles, figure, local_times, sessions_legend
from application.replay import selection_note
from domain.context import TAPE_BOUNDS, own_print_at
from domain.incidents import GAP_NS, Incident
from domain.model import Anomaly, Print

_MAX_MAPPING_ITEMS = 12  # e.g. by_symbol can hold thousands of entries
MAX_INCIDENTS = 50  # listed in the report, highest score first
# `replay --symbols` names the symbols an analyst wants to see: each is charted, up to this many (a chart
# is ~75 KB, so 100 add ~7.5 MB to plotly.js's 5 MB: a file a browser still opens at once).
MAX_NAMED_CHARTS = 100

_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 24px 48px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:18px; margin:36px 0 12px; }
.sub { color:var(--muted); margin:0 0 20px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(170px,1fr)); gap:12px;
  align-items:start; margin-bottom:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
.card table { width:100%; border-collapse:collapse; font-size:13px; margin-top:4px; }
.card td { padding:1px 0; } .card td.n { text-align:right; font-variant-numeric:tabular-nums; }
.card.wide { grid-column:span 2; }
.toc { display:flex; flex-wrap:wrap; gap:6px; margin:0 0 8px; padding:0; list-style:none; }
.toc a { display:inline-block; padding:3px 9px; border-radius:12px; background:#e4ecf5;
  color:#234; text-decoration:none; font-size:13px; } .toc a:hover { background:#cfdceb; }
.chart { background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:14px 16px 8px; margin:0 0 16px; }
.chart h3 { margin:0 0 2px; font-size:16px; } .chart .meta { color:var(--muted); font-size:13px; }
.chart .plot { width:100%; min-height:430px; }
.filters { display:flex; flex-wrap:wrap; gap:8px; align-items:center; margin:0 0 8px; }
.filters input, .filters select { font:inherit; padding:4px 8px; border:1px solid var(--line); border-radius:6px; }
.anoms th[data-key] { cursor:pointer; user-select:none; } .anoms th[data-key]:hover { background:#dfe5ec; }
.anoms th.sorted-asc::after { content:" ▲"; } .anoms th.sorted-desc::after { content:" ▼"; }
#anomaly-table tbody tr { cursor:pointer; } #anomaly-table tbody tr:hover td { background:#eef4fb; }
#anomaly-table tbody tr.selected td { background:#dbe9f8; }
#context { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px;
  margin:12px 0; } #context h3 { margin:0 0 4px; font-size:16px; }
#context table { border-collapse:collapse; font-size:13px; font-variant-numeric:tabular-nums; margin-top:8px; }
#context td, #context th { padding:2px 10px; text-align:right; } #context td:first-child { text-align:left; }
#context tr.found td { font-weight:700; background:#fff3cd; } #context tr.split td { border-top:1px solid var(--ink); }
table.anoms { width:100%; border-collapse:collapse; background:var(--card);
  border:1px solid var(--line); font-size:13px; }
.anoms th { position:sticky; top:0; background:#eef1f5; text-align:left; padding:7px 8px;
  border-bottom:1px solid var(--line); white-space:nowrap; }
.anoms td { padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
.anoms tr:nth-child(even) td { background:#fafbfc; }
.anoms td.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.anoms td.t { white-space:nowrap; font-variant-numeric:tabular-nums; }
.anoms td.id { font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12px; white-space:nowrap; }
.anoms a { color:inherit; }
.sev { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.sev-high { background:#fde2e1; color:#a61b1b; } .sev-medium { background:#fff1d6; color:#8a5a00; }
.sev-low { background:#e3f2e8; color:#24613a; }
.note { color:var(--muted); font-size:13px; }
"""


def write_html_report(path: str | Path, bars: BarCollector, anomalies: Sequence[Anomaly],
                      summary: Mapping[str, Any], max_symbols: int = 20,
                      max_rows: int = 500, incidents: Sequence[Incident] = (),
                      only_symbols: Collection[str] = ()) -> Path:
    """Write the report to path and return it. plotly.js is inlined, so it opens anywhere, offline.
    `incidents`: the replay's closed incidents, whose after-contexts complete each anomaly's tape;
    `only_symbols` (any case; empty: all): the symbols that may be charted, each of them up to
    MAX_NAMED_CHARTS (`max_symbols` is for a report of every symbol)."""
    styles = detector_styles(a.detector for a in anomalies)
    top = heapq.nlargest(max_rows, anomalies, key=lambda a: (a.score, -a.ts_event))
    index = {a.id: i for i, a in enumerate(top)}
    by_symbol: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_symbol.setdefault(a.symbol, []).append(a)
    only = {s.upper() for s in only_symbols}
    limit = min(max(max_symbols, len(only)), MAX_NAMED_CHARTS) if only else max_symbols
    symbols = _chart_symbols(bars, by_symbol, limit, only)
    after = {m: prints for i in incidents for m, prints in i.after.items()}
    incident_of = {m: i.id for i in incidents for m in i.members}
    body = [
        "<h1>Replay report</h1>",
        f'<p class="sub">{escape(_subtitle(bars))}</p>',
        f'<p class="sub"><strong>{escape(_sentence(selection_note(summary["selection"])))}</strong></p>'
        if summary.get("selection") else "",
        f'<p class="sub"><strong>Detectors not run (--detectors, STOCKANOMALY_DETECTORS): '
        f'{escape(", ".join(summary["detectors_not_run"]))}.</strong></p>' if summary.get("detectors_not_run") else "",
        _summary_section(summary),
        _incidents_section(_top_incidents(incidents, summary), set(symbols)),
        _charts_section(bars, by_symbol, symbols, styles, index, {a.symbol for a in top}, named=bool(only)),
        _table_section(top, len(anomalies), styles, set(symbols)),
        _data_script([_row_data(a, after.get(a.id), incident_of.get(a.id, "")) for a in top]),
        f"<script>{_SCRIPT.replace('TAPE_BOUNDS', TAPE_BOUNDS)}</script>",
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with naming(out):
        out.write_text(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Replay report</title><style>{_CSS}</style>"
            f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
            f"<body><main>{''.join(body)}</main></body></html>\n",
            encoding="utf-8",
        )
    return out


def _chart_symbols(bars: BarCollector, by_symbol: Mapping[str, list[Anomaly]],
                   limit: int, only: set[str]) -> list[str]:
    """The symbols whose anomalies score highest first (then most anomalies): an analyst looks at the
    worst first, and at market scale the symbols with the most anomalies are quiet names with a few
    low-scoring ones each. The rest of the room goes to the most traded symbols (of `only`, if any)."""
    peak = {s: max(a.score for a in found) for s, found in by_symbol.items()}
    ranked = sorted(by_symbol, key=lambda s: (-peak[s], -len(by_symbol[s]), s))[:limit]
    if len(ranked) < limit:
        volumes = bars.volumes()
        quiet = sorted((s for s in volumes if s not in by_symbol and (not only or s.upper() in only)),
                       key=lambda s: (-volumes[s], s))
        ranked += quiet[: limit - len(ranked)]
    return ranked


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _utc(ts_ns: int, precision: str = "s") -> str:
    return str(np.datetime64(int(ts_ns), "ns").astype(f"datetime64[{precision}]")) + "Z"


def _subtitle(bars: BarCollector) -> str:
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    span = bars.time_range()
    data = (f"Trades from {local_times(np.array(span))[0][:16]} to {local_times(np.array(span))[1][:16]} New York time"
            if span else "No trades")
    count = len(bars.symbols())
    return f"{data} · {count:,} symbol{'' if count == 1 else 's'} · generated {generated}"


def _number(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return escape(str(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    number = float(value)
    if "second" in key and "per" not in key:
        return f"{number:,.2f} s"
    if "per_second" in key:  # a rate: whole trades a second (395,086, not 395,086.3)
        return f"{number:,.0f}"
    return f"{number:,.1f}" if abs(number) >= 100 else f"{number:,.3g}"


def _label(key: str) -> str:
    return escape(key.replace("_", " ").replace("per second", "/ s"))


def _summary_section(summary: Mapping[str, Any]) -> str:
    figures, breakdowns = [], []
    for key, value in summary.items():
        if key == "selection":
            continue  # said under the title, above every figure it qualifies
        if isinstance(value, Mapping):
            breakdowns.append(_mapping_card(key, value))
        elif key == "source" and isinstance(value, (list, tuple)):
            figures.append(f'<div class="card wide"><div class="k">{_label(key)}</div>'
                           f'<div class="note">{escape(", ".join(str(v) for v in value))}</div></div>')
        elif isinstance(value, (list, tuple)):
            continue  # the top anomalies and incidents: their own tables below
        else:
            figures.append(f'<div class="card"><div class="k">{_label(key)}</div>'
                           f'<div class="v">{_number(key, value)}</div></div>')
    return (f'<h2>Summary</h2><div class="cards">{"".join(figures)}</div>'
            f'<div class="cards">{"".join(breakdowns)}</div>')


def _mapping_card(key: str, value: Mapping[Any, Any]) -> str:
    items = list(value.items())
    # Sessions are written as the tables write them (pre-market, not pre_market).
    shown = (lambda k: str(k).replace("_", "-")) if key == "by_session" else str
    rows = "".join(f'<tr><td>{escape(shown(k))}</td><td class="n">{_number(str(k), v)}</td></tr>'
                   for k, v in items[:_MAX_MAPPING_ITEMS])
    if len(items) > _MAX_MAPPING_ITEMS:
        rows += f'<tr><td class="note" colspan="2">… and {len(items) - _MAX_MAPPING_ITEMS:,} more</td></tr>'
    if not items:
        rows = '<tr><td class="note">none</td></tr>'
    wide = " wide" if len(items) > 4 else ""
    return (f'<div class="card{wide}"><div class="k">{_label(key)}</div>'
            f"<table>{rows}</table></div>")


def _top_incidents(incidents: Sequence[Incident], summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The incidents the report lists: the replay's closed incidents by score, the first MAX_INCIDENTS
    (whatever `--top` said of the terminal's list: `--top 0` must not leave the report without them), else the
    summary's `top_incidents`."""
    if not incidents:
        return list(summary.get("top_incidents") or [])
    ranked = sorted(incidents, key=lambda i: (-i.score, i.start_ns, i.id))[:MAX_INCIDENTS]
    return [i.to_dict() for i in ranked]


def _incidents_section(incidents: Sequence[Mapping[str, Any]], charted: set[str]) -> str:
    """The top incidents (highest score first); a charted symbol links to its chart. The id is last, as
    in the terminal's tables: `show` and `label` take it."""
    if not incidents:
        return ""
    rows = "".join(
        f'<tr><td>{escape(i.get("ts_local", "")[:23].replace("T", " ") or _utc(i["start_ns"], "ms"))}</td>'
        f'<td>{escape(i.get("session", "").replace("_", "-"))}</td>'
        f'<td>{_symbol_link(i["symbol"], charted)}</td>'
        f'<td class="n">{int(i["size"]):,}</td><td>{escape(", ".join(i["detectors"]))}</td>'
        f'<td class="n">{float(i["score"]):.2f}</td><td>{escape(i["headline"])}</td>'
        f'<td class="id">{escape(i["id"])}</td></tr>'
        for i in incidents)
    return ('<h2>Top incidents</h2><p class="note">A symbol\'s anomalies each within '
            f"{GAP_NS // 60_000_000_000} minutes of the next, "
            "whichever detectors raised them; headline: the highest-scoring one. Times in New York.</p>"
            '<table class="anoms"><thead><tr><th>start</th><th>session</th><th>symbol</th><th>anomalies</th>'
            "<th>detectors</th><th>score</th><th>headline</th><th>id</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _symbol_link(symbol: str, charted: set[str]) -> str:
    return f'<a href="#{_anchor(symbol)}">{escape(symbol)}</a>' if symbol in charted else escape(symbol)


def _anchor(symbol: str) -> str:
    return "chart-" + "".join(c if c.isalnum() else f"_{ord(c):x}" for c in symbol)


def _charts_section(bars: BarCollector, by_symbol: Mapping[str, list[Anomaly]], symbols: list[str],
                    styles: dict[str, DetectorStyle], index: dict[str, int], tabled: set[str],
                    named: bool = False) -> str:
    if not symbols:
        return "<h2>Charts</h2><p class=\"note\">No trades to chart.</p>"
    toc = "".join(f'<li><a href="#{_anchor(s)}">{escape(s)} · {len(by_symbol.get(s, [])):,}</a></li>'
                  for s in symbols)
    left_out = set(by_symbol) - set(symbols)
    parts = ["<h2>Charts</h2>",
             '<p class="note">' + ("The symbol's anomaly count is after its name" if len(symbols) == 1 else
                                   f"The {len(symbols):,} symbols with the highest-scoring anomalies first "
                                   "(count after each name)") + _left_out_note(left_out, tabled, named)
             + ". Drag to zoom, double-click to reset, hover for numbers, click a marker for the tape around it. "
             "Line: 1-minute close; band: 1-minute high–low; grey: volume per minute (log scale). Shaded: "
             f"{escape(sessions_legend())} New York time; nights and weekends are cut out.</p>",
             f'<ul class="toc">{toc}</ul>']
    for symbol in symbols:
        parts.append(_chart_block(symbol, bars.bars(symbol), by_symbol.get(symbol, []), styles, index))
    return "".join(parts)


def _chart_block(symbol: str, bars: np.ndarray, found: list[Anomaly], styles: dict[str, DetectorStyle],
                 index: dict[str, int]) -> str:
    counts = Counter(a.detector for a in found)
    flagged = ", ".join(f'<span style="color:{styles[d].color}">{styles[d].glyph}</span> '
                        f"{escape(d)} {n:,}" for d, n in sorted(counts.items()))
    meta = [f"{len(found):,} anomal{'y' if len(found) == 1 else 'ies'}" + (f" ({flagged})" if flagged else ""),
            f"{len(bars):,} one-minute bars", f"{int(bars['trades'].sum()):,} trades",
            f"volume {int(bars['volume'].sum()):,}"]
    if len(bars):
        meta.append(f"price {bars['low'].min():,.2f}–{bars['high'].max():,.2f}")
    plot = plotly.io.to_html(  # figure() is valid by construction (its tests validate it): not again per chart
        figure(bars, found, styles, index), validate=False, full_html=False, include_plotlyjs=False,
        div_id=f"plot-{_anchor(symbol)}", default_width="100%", config={"displaylogo": False, "responsive": True})
    return (f'<section class="chart" id="{_anchor(symbol)}"><h3>{escape(symbol)}</h3>'
            f'<div class="meta">{" · ".join(meta)}</div><div class="plot">{plot}</div></section>')


def _price(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def _new_york(a: Anomaly) -> str:
    return a.ts_local[:23].replace("T", " ") if a.ts_local else local_times(np.array([a.ts_event]))[0]


def _left_out_note(left_out: set[str], tabled: set[str], named: bool = False) -> str:
    """What the charts leave out, and where those symbols' anomalies are to be found instead (`named`:
    the symbols were named with `replay --symbols`, so naming them is no way to chart them)."""
    if not left_out:
        return ""
    where = ("they are in the table below" if left_out <= tabled else
             f"{len(left_out & tabled):,} of them have rows in the table below, which holds the top anomalies "
             "by score; every anomaly is in `replay --out`")
    how = (f"a report charts at most {MAX_NAMED_CHARTS} of the symbols named: name fewer with `replay --symbols`"
           if named else "`replay --symbols` charts the ones you name")
    return f"; {len(left_out):,} more with anomalies are not charted ({where}; {how})"


def _table_section(top: Sequence[Anomaly], total: int, styles: dict[str, DetectorStyle], charted: set[str]) -> str:
    if not top:
        return "<h2>Anomalies</h2><p class=\"note\">No anomalies were found.</p>"
    shown = f"All {total:,} anomalies" if len(top) == total else f"Top {len(top):,} of {total:,} anomalies"
    rows = []
    for i, a in enumerate(top):
        style = styles[a.detector]
        symbol = _symbol_link(a.symbol, charted)
        severity = escape(a.severity)
        rows.append(
            f'<tr data-row="{i}"><td class="t" title="{_utc(a.ts_event, "ns")}">{escape(_new_york(a))}</td>'
            f"<td>{escape(a.session.replace('_', '-'))}</td><td>{symbol}</td>"
            f'<td><span style="color:{style.color}">{style.glyph}</span> {escape(a.detector)}</td>'
            f'<td><span class="sev sev-{severity}">{severity}</span></td>'
            f'<td class="n">{a.score:,.2f}</td><td class="n">{_price(a.price)}</td>'
            f'<td class="n">{a.size:,}</td><td>{escape(a.reason)}</td></tr>'
        )
    keys = (("time", "Time (New York)"), ("session", "Session"), ("symbol", "Symbol"), ("detector", "Detector"),
            ("severity", "Severity"), ("score", "Score"), ("price", "Price"), ("size", "Size"), ("reason", "Reason"))
    sorted_by = ' class="sorted-desc"'
    head = "".join(f'<th data-key="{k}"{sorted_by if k == "score" else ""}>{h}</th>' for k, h in keys)
    detectors = "".join(f'<option value="{escape(d)}">{escape(d)}</option>' for d in sorted(styles))
    return (f'<h2>Anomalies</h2><p class="note">{shown}, by score (highest first). Click a column to sort, '
            "a row for the tape around it.</p>"
            '<div class="filters"><input id="filter" type="search" placeholder="filter: symbol, reason…" size="30">'
            f'<select id="detector-filter"><option value="">all detectors</option>{detectors}</select>'
            '<select id="severity-filter"><option value="">all severities</option><option>high</option>'
            '<option>medium</option><option>low</option></select><span id="shown-count" class="note"></span></div>'
            '<div id="context" hidden></div>'
            f'<table class="anoms" id="anomaly-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _tape_rows(prints: Sequence[Print], at: int) -> list[list[Any]]:
    times = local_times(np.array([p.ts_event for p in prints], np.int64)) if prints else []
    return [[t[11:], round((p.ts_event - at) / 1e6, 3), p.price, p.size, p.side] for t, p in zip(times, prints)]


def _row_data(a: Anomaly, after: Sequence[Print] | None, incident: str) -> dict[str, Any]:
    """What the page's script needs of one table row: sort keys and the tape around it."""
    return {"id": a.id, "time": a.ts_event, "session": a.session, "symbol": a.symbol, "detector": a.detector,
            "severity": ["low", "medium", "high"].index(a.severity) if a.severity in ("low", "medium", "high") else -1,
            "score": a.score, "price": a.price, "size": a.size, "reason": a.reason, "incident": incident,
            "local": _new_york(a), "before": _tape_rows(a.context, a.ts_event),
            "own": _own(a), "after": None if after is None else _tape_rows(after, a.ts_event)}


def _own(a: Anomaly) -> int:
    """Where the anomaly's own print is among `before` (-1: not there, shown in time order)."""
    at = own_print_at(a.context, a.ts_event, a.price, a.size)
    return -1 if at is None else at


def _data_script(rows: list[dict[str, Any]]) -> str:
    # "</" would end the script element early (a reason may contain anything).
    payload = json.dumps(rows, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="anomaly-data">{payload}</script>'


# The table's sorting and filtering and the context panel: a few lines of plain DOM code over the
# embedded rows (no library does this for a static table without pulling in a framework), text set
# through textContent only, so nothing from the data is ever parsed as HTML.
_SCRIPT = """
(function () {
  const rows = JSON.parse(document.getElementById("anomaly-data").textContent);
  const table = document.getElementById("anomaly-table");
  if (!table) return;
  const body = table.tBodies[0];
  const trs = Array.from(body.rows);
  const panel = document.getElementById("context");
  const filter = document.getElementById("filter");
  const detector = document.getElementById("detector-filter");
  const severity = document.getElementById("severity-filter");
  const count = document.getElementById("shown-count");
  const SEVERITIES = ["low", "medium", "high"];
  function applyFilter() {
    const text = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const tr of trs) {
      const r = rows[+tr.dataset.row];
      const ok = (!text || (r.symbol + " " + r.detector + " " + r.reason + " " + r.id).toLowerCase().includes(text))
        && (!detector.value || r.detector === detector.value)
        && (!severity.value || SEVERITIES[r.severity] === severity.value);
      tr.hidden = !ok;
      shown += ok ? 1 : 0;
    }
    count.textContent = shown + " of " + trs.length + " shown";
  }
  [filter, detector, severity].forEach(el => el.addEventListener("input", applyFilter));
  for (const th of table.tHead.rows[0].cells) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      const desc = !th.classList.contains("sorted-desc");
      for (const other of table.tHead.rows[0].cells) other.classList.remove("sorted-asc", "sorted-desc");
      th.classList.add(desc ? "sorted-desc" : "sorted-asc");
      trs.sort((x, y) => {
        const a = rows[+x.dataset.row][key], b = rows[+y.dataset.row][key];
        const c = typeof a === "number" ? a - b : String(a).localeCompare(String(b));
        return desc ? -c : c;
      });
      trs.forEach(tr => body.appendChild(tr));
    });
  }
  function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
  function tapeRow(tbody, p, cls) {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    cell(tr, p[0]); cell(tr, (p[1] >= 0 ? "+" : "") + p[1].toLocaleString("en-US", {maximumFractionDigits: 3}));
    // Cents always (112.30 beside 112.34, not 112.3), sub-penny prints to four decimals (114.255).
    cell(tr, p[2].toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 4}));
    cell(tr, p[3].toLocaleString("en-US")); cell(tr, p[4]);
    tbody.appendChild(tr);
  }
  function show(i) {
    const r = rows[i];
    if (!r) return;
    trs.forEach(tr => tr.classList.toggle("selected", +tr.dataset.row === i));
    panel.replaceChildren();
    const h = document.createElement("h3");
    h.textContent = r.symbol + " · " + r.detector + " · " + r.local + " New York · score " + r.score.toFixed(2);
    const reason = document.createElement("div");
    reason.className = "note";
    reason.textContent = r.reason + (r.incident ? " (incident " + r.incident + ")" : "") + " · id " + r.id;
    const t = document.createElement("table");
    t.id = "context-tape";
    const head = t.createTHead().insertRow();
    ["time (New York)", "ms from it", "price", "size", "side"].forEach(x => {
      const th = document.createElement("th"); th.textContent = x; head.appendChild(th); });
    const tb = t.createTBody();
    // The anomaly's own print marked in its place: where `own` says (a rate episode's tape runs on
    // past it), else in time order among the trades before.
    const split = r.own >= 0 ? r.own : r.before.filter(p => p[1] <= 0).length;
    const later = r.before.slice(r.own >= 0 ? r.own + 1 : split);
    r.before.slice(0, split).forEach(p => tapeRow(tb, p));
    tapeRow(tb, [r.local.slice(11), 0, r.price, r.size, "\u2190 " + r.detector], "found");
    // An episode's tape that no longer reaches back to its print: the trades between are not kept,
    // and without a row saying so the table read as if nothing had traded in between.
    const gap = r.own < 0 && split === 0 && later.length > 0;
    if (gap) {
      const tr = tb.insertRow(); tr.className = "gap";
      for (let k = 0; k < 5; k++) tr.insertCell().textContent = "\u2026";
    }
    later.forEach(p => tapeRow(tb, p));
    if (r.after === null) {
      const tr = tb.insertRow(); const td = tr.insertCell(); td.colSpan = 5;
      td.textContent = "(the trades after it were not known when the replay ended)";
    } else {
      r.after.forEach((p, k) => tapeRow(tb, p, k === 0 ? "split" : ""));
    }
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = r.before.length + (later.length ? " trades up to the print that completed its measure "
      + "(a rate episode's end: the last before the line"
      + (gap ? "; the trades between its print and them, at the \u2026, are not kept), " : "), ")
      : " trades before it, ")
      + (r.after ? r.after.length : 0) + " after (TAPE_BOUNDS)";
    panel.append(h, reason, note, t);
    panel.hidden = false;
    panel.scrollIntoView({block: "nearest"});
  }
  body.addEventListener("click", ev => {
    const tr = ev.target.closest("tr");
    if (tr && !ev.target.closest("a")) show(+tr.dataset.row);
  });
  document.querySelectorAll(".plotly-graph-div").forEach(div => {
    if (div.on) div.on("plotly_click", ev => {
      const p = ev.points && ev.points[0];
      if (p && Array.isArray(p.customdata) && p.customdata.length === 4 && p.customdata[0] >= 0) show(p.customdata[0]);
    });
  });
  applyFilter();
})();
"""
