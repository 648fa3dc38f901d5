"""The replay's report: one self-contained HTML file with summary, charts and anomaly table."""

from __future__ import annotations

import base64
import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from adapters.report.bars import BarCollector
from adapters.report.charts import DetectorStyle, detector_styles, render_chart
from domain.model import Anomaly

_MAX_MAPPING_ITEMS = 12  # e.g. by_symbol can hold thousands of entries

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
.chart img { display:block; width:100%; height:auto; margin-top:6px; }
table.anoms { width:100%; border-collapse:collapse; background:var(--card);
  border:1px solid var(--line); font-size:13px; }
.anoms th { position:sticky; top:0; background:#eef1f5; text-align:left; padding:7px 8px;
  border-bottom:1px solid var(--line); white-space:nowrap; }
.anoms td { padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
.anoms tr:nth-child(even) td { background:#fafbfc; }
.anoms td.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.anoms td.t { white-space:nowrap; font-variant-numeric:tabular-nums; }
.anoms a { color:inherit; }
.sev { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.sev-high { background:#fde2e1; color:#a61b1b; } .sev-medium { background:#fff1d6; color:#8a5a00; }
.sev-low { background:#e3f2e8; color:#24613a; }
.note { color:var(--muted); font-size:13px; }
"""


def write_html_report(path: str | Path, bars: BarCollector, anomalies: Sequence[Anomaly],
                      summary: Mapping[str, Any], max_symbols: int = 20,
                      max_rows: int = 500) -> Path:
    """Write the report to path and return it; images are inlined, so it opens anywhere."""
    styles = detector_styles(a.detector for a in anomalies)
    by_symbol: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_symbol.setdefault(a.symbol, []).append(a)
    symbols = _chart_symbols(bars, by_symbol, max_symbols)
    body = [
        "<h1>Replay report</h1>",
        f'<p class="sub">{escape(_subtitle(bars))}</p>',
        _summary_section(summary),
        _incidents_section(summary.get("top_incidents") or []),
        _charts_section(bars, by_symbol, symbols, styles),
        _table_section(anomalies, styles, set(symbols), max_rows),
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Replay report</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n",
        encoding="utf-8",
    )
    return out


def _chart_symbols(bars: BarCollector, by_symbol: Mapping[str, list[Anomaly]],
                   limit: int) -> list[str]:
    """Most anomalies first; the rest of the room goes to the most traded symbols."""
    ranked = sorted(by_symbol, key=lambda s: (-len(by_symbol[s]), s))[:limit]
    if len(ranked) < limit:
        volumes = bars.volumes()
        quiet = sorted((s for s in volumes if s not in by_symbol), key=lambda s: (-volumes[s], s))
        ranked += quiet[: limit - len(ranked)]
    return ranked


def _utc(ts_ns: int, precision: str = "s") -> str:
    return str(np.datetime64(int(ts_ns), "ns").astype(f"datetime64[{precision}]")) + "Z"


def _subtitle(bars: BarCollector) -> str:
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    span = bars.time_range()
    data = (f"Trades from {_utc(span[0], 'm')} to {_utc(span[1], 'm')}"
            if span else "No trades")
    count = len(bars.symbols())
    return f"{data} · {count:,} symbol{'' if count == 1 else 's'} · generated {generated}"


def _number(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return escape(str(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if "second" in key and "per" not in key:
        return f"{value:,.2f} s"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.3g}"


def _label(key: str) -> str:
    return escape(key.replace("_", " ").replace("per second", "/ s"))


def _summary_section(summary: Mapping[str, Any]) -> str:
    figures, breakdowns = [], []
    for key, value in summary.items():
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
    rows = "".join(f'<tr><td>{escape(str(k))}</td><td class="n">{_number(str(k), v)}</td></tr>'
                   for k, v in items[:_MAX_MAPPING_ITEMS])
    if len(items) > _MAX_MAPPING_ITEMS:
        rows += f'<tr><td class="note" colspan="2">… and {len(items) - _MAX_MAPPING_ITEMS:,} more</td></tr>'
    if not items:
        rows = '<tr><td class="note">none</td></tr>'
    wide = " wide" if len(items) > 4 else ""
    return (f'<div class="card{wide}"><div class="k">{_label(key)}</div>'
            f"<table>{rows}</table></div>")


def _incidents_section(incidents: Sequence[Mapping[str, Any]]) -> str:
    """The top incidents (replay's `top_incidents`, highest score first)."""
    if not incidents:
        return ""
    rows = "".join(
        f'<tr><td>{escape(i.get("ts_local", "")[:23].replace("T", " ") or _utc(i["start_ns"], "ms"))}</td>'
        f'<td>{escape(i.get("session", "").replace("_", "-"))}</td>'
        f'<td><a href="#{_anchor(i["symbol"])}">{escape(i["symbol"])}</a></td>'
        f'<td class="n">{int(i["size"]):,}</td><td>{escape(", ".join(i["detectors"]))}</td>'
        f'<td class="n">{float(i["score"]):.2f}</td><td>{escape(i["headline"])}</td></tr>'
        for i in incidents)
    return ('<h2>Top incidents</h2><p class="note">A symbol\'s anomalies each within 2 minutes of the next, '
            "whichever detectors raised them; headline: the highest-scoring one. Times in New York.</p>"
            '<table class="anoms"><thead><tr><th>start</th><th>session</th><th>symbol</th><th>anomalies</th>'
            "<th>detectors</th><th>score</th><th>headline</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _anchor(symbol: str) -> str:
    return "chart-" + "".join(c if c.isalnum() else f"_{ord(c):x}" for c in symbol)


def _charts_section(bars: BarCollector, by_symbol: Mapping[str, list[Anomaly]],
                    symbols: list[str], styles: dict[str, DetectorStyle]) -> str:
    if not symbols:
        return "<h2>Charts</h2><p class=\"note\">No trades to chart.</p>"
    toc = "".join(f'<li><a href="#{_anchor(s)}">{escape(s)} · {len(by_symbol.get(s, [])):,}</a></li>'
                  for s in symbols)
    parts = ["<h2>Charts</h2>",
             '<p class="note">Symbols with the most anomalies first (count after each name). '
             "Line: 1-minute close; band: 1-minute high–low; grey: volume per minute. "
             "Markers: anomalies at their trade time and price, larger for higher severity.</p>",
             f'<ul class="toc">{toc}</ul>']
    for symbol in symbols:
        parts.append(_chart_block(symbol, bars.bars(symbol), by_symbol.get(symbol, []), styles))
    return "".join(parts)


def _chart_block(symbol: str, bars: np.ndarray, found: list[Anomaly],
                 styles: dict[str, DetectorStyle]) -> str:
    counts = Counter(a.detector for a in found)
    flagged = ", ".join(f'<span style="color:{styles[d].color}">{styles[d].glyph}</span> '
                        f"{escape(d)} {n:,}" for d, n in sorted(counts.items()))
    meta = [f"{len(found):,} anomalies" + (f" ({flagged})" if flagged else ""),
            f"{len(bars):,} one-minute bars", f"{int(bars['trades'].sum()):,} trades",
            f"volume {int(bars['volume'].sum()):,}"]
    if len(bars):
        meta.append(f"price {bars['low'].min():,.2f}–{bars['high'].max():,.2f}")
    png = base64.b64encode(render_chart(bars, found, styles)).decode("ascii")
    return (f'<section class="chart" id="{_anchor(symbol)}"><h3>{escape(symbol)}</h3>'
            f'<div class="meta">{" · ".join(meta)}</div>'
            f'<img alt="{escape(symbol)} price and volume with anomalies" '
            f'src="data:image/png;base64,{png}"></section>')


def _price(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def _table_section(anomalies: Sequence[Anomaly], styles: dict[str, DetectorStyle],
                   charted: set[str], max_rows: int) -> str:
    if not anomalies:
        return "<h2>Anomalies</h2><p class=\"note\">No anomalies were found.</p>"
    top = heapq.nlargest(max_rows, anomalies, key=lambda a: (a.score, -a.ts_event))
    shown = (f"All {len(anomalies):,} anomalies" if len(top) == len(anomalies)
             else f"Top {len(top):,} of {len(anomalies):,} anomalies")
    rows = []
    for a in top:
        style = styles[a.detector]
        symbol = escape(a.symbol)
        if a.symbol in charted:
            symbol = f'<a href="#{_anchor(a.symbol)}">{symbol}</a>'
        severity = escape(a.severity)
        rows.append(
            f'<tr><td class="t" title="{_utc(a.ts_event, "ns")}">{_utc(a.ts_event, "ms")}</td>'
            f"<td>{symbol}</td>"
            f'<td><span style="color:{style.color}">{style.glyph}</span> {escape(a.detector)}</td>'
            f'<td><span class="sev sev-{severity}">{severity}</span></td>'
            f'<td class="n">{a.score:,.2f}</td><td class="n">{_price(a.price)}</td>'
            f'<td class="n">{a.size:,}</td><td>{escape(a.reason)}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in
                   ("Time (UTC)", "Symbol", "Detector", "Severity", "Score", "Price", "Size",
                    "Reason"))
    return (f'<h2>Anomalies</h2><p class="note">{shown}, by score (highest first).</p>'
            f'<table class="anoms"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")
