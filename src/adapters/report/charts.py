"""One symbol's interactive price/volume chart with its anomalies marked, as a plotly figure.

Times are on the exchange's clock (America/New_York), pre-market and after-hours shaded, nights and
weekends cut out of the axis. Volume has its own log-scaled pane, so an auction cross thousands of
times a normal minute does not flatten the rest of the day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from adapters.report.bars import MINUTE_NS
from domain.detectors import DETECTOR_NAMES
from domain.model import Anomaly

NEW_YORK = ZoneInfo("America/New_York")
PRICE_COLOR = "#2c5d8a"
BAND_COLOR = "rgba(157,188,217,0.55)"
VOLUME_COLOR = "#a3adb8"
SEVERITY_SIZE = {"low": 8, "medium": 11, "high": 15}
_PALETTE = ["#e4572e", "#8e44ad", "#f0a202", "#17a589", "#d81b60", "#6d4c41", "#00838f", "#7cb342"]
_SYMBOLS = ["circle", "triangle-up", "diamond", "square", "cross", "x", "triangle-down", "star"]
_GLYPHS = {"circle": "●", "triangle-up": "▲", "diamond": "◆", "square": "■", "cross": "✚", "x": "✖",
           "triangle-down": "▼", "star": "★"}
# Extended-hours sessions in New York time, shaded on every chart (the regular session is left clear).
_SHADED = ((time(4, 0), time(9, 30), "rgba(255,196,0,0.10)", "pre-market"),
           (time(16, 0), time(20, 0), "rgba(100,120,160,0.10)", "after-hours"))


@dataclass(frozen=True, slots=True)
class DetectorStyle:
    color: str
    marker: str

    @property
    def glyph(self) -> str:
        return _GLYPHS[self.marker]


def detector_styles(detectors: Iterable[str]) -> dict[str, DetectorStyle]:
    """A colour and marker per detector, the same in every report (a detector's place among the
    built-in ones, then any other after them), so charts and table agree and one report reads like
    the next (numbered per report, trade_burst would be a diamond in one and a square in another)."""
    present = set(detectors)
    order = {name: i for i, name in enumerate(DETECTOR_NAMES)}
    order |= {name: len(DETECTOR_NAMES) + i for i, name in enumerate(sorted(present - set(order)))}
    return {name: DetectorStyle(_PALETTE[order[name] % len(_PALETTE)], _SYMBOLS[order[name] % len(_SYMBOLS)])
            for name in sorted(present)}


def local_times(ts_ns: np.ndarray) -> list[str]:
    """UTC ns as New York wall-clock ISO strings (what the chart's axis shows)."""
    return [datetime.fromtimestamp(int(t) // 1_000_000_000, NEW_YORK).strftime("%Y-%m-%d %H:%M:%S")
            + f".{int(t) % 1_000_000_000 // 1_000_000:03d}" for t in ts_ns]


def _days(ts_ns: np.ndarray) -> list[date]:
    if not len(ts_ns):
        return []
    first, last = (datetime.fromtimestamp(int(t) // 1_000_000_000, NEW_YORK).date() for t in (ts_ns.min(), ts_ns.max()))
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


@cache
def _layout() -> dict[str, Any]:
    """Every chart's layout but its shading: two panes sharing the time axis, nights and weekends cut out
    (a multi-day replay reads as one tape), the volume pane log-scaled. Built and validated by plotly
    once, not per chart: a figure of make_subplots, its template copied in and each shaded band
    validated cost ~60 ms a chart (6 s of a report of 100 named symbols); the traces alone, ~7 ms."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.74, 0.26], vertical_spacing=0.03)
    fig.update_layout(height=430, margin={"l": 60, "r": 20, "t": 30, "b": 30}, template="plotly_white",
                      legend={"orientation": "h", "y": 1.08, "x": 0, "font": {"size": 11}},
                      hovermode="closest", bargap=0, dragmode="zoom")
    fig.update_xaxes(rangebreaks=[{"bounds": ["sat", "mon"]}, {"bounds": [20, 4], "pattern": "hour"}],
                     showspikes=True, spikemode="across", spikethickness=1)
    fig.update_xaxes(title_text="New York time", row=2, col=1)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="volume", type="log", row=2, col=1)
    layout: dict[str, Any] = fig.to_plotly_json()["layout"]
    return layout


# The panes' axes, as make_subplots names them: price above, volume below.
_PRICE, _VOLUME = {"xaxis": "x", "yaxis": "y"}, {"xaxis": "x2", "yaxis": "y2"}


def figure(bars: np.ndarray, anomalies: Sequence[Anomaly], styles: dict[str, DetectorStyle],
           index: dict[str, int]) -> dict[str, Any]:
    """The chart of one symbol, as the figure plotly.js draws (`plotly.io.to_html` takes it; `go.Figure`
    validates it); each anomaly marker carries its row in the report's anomaly list (`index`: anomaly
    id -> row) as customdata, so clicking it shows its context."""
    traces: list[go.Scatter | go.Bar] = []
    if len(bars):
        x = local_times(bars["ts"] + MINUTE_NS // 2)
        traces.append(go.Scatter(x=x, y=bars["high"], mode="lines", line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, **_PRICE))
        traces.append(go.Scatter(x=x, y=bars["low"], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=BAND_COLOR, name="1-min high–low", hoverinfo="skip", **_PRICE))
        traces.append(go.Scatter(x=x, y=bars["close"], mode="lines+markers" if len(bars) < 60 else "lines",
                                 line={"color": PRICE_COLOR, "width": 1.2}, name="1-min close",
                                 customdata=np.column_stack([bars["open"], bars["high"], bars["low"], bars["trades"]]),
                                 hovertemplate="%{x}<br>close %{y:,.4f}<br>open %{customdata[0]:,.4f} "
                                               "high %{customdata[1]:,.4f} low %{customdata[2]:,.4f}"
                                               "<br>%{customdata[3]:,} trades<extra></extra>", **_PRICE))
        traces.append(go.Bar(x=x, y=np.maximum(bars["volume"], 1), marker={"color": VOLUME_COLOR, "line": {"width": 0}},
                             name="volume / min", hovertemplate="%{x}<br>volume %{y:,}<extra></extra>", **_VOLUME))
    by_detector: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_detector.setdefault(a.detector, []).append(a)
    for detector in sorted(by_detector):
        found, style = by_detector[detector], styles[detector]
        traces.append(go.Scatter(
            x=local_times(np.array([a.ts_event for a in found], np.int64)), y=[a.price for a in found],
            mode="markers", name=f"{detector} ({len(found)})",
            marker={"symbol": style.marker, "color": style.color, "line": {"color": "white", "width": 1},
                    "size": [SEVERITY_SIZE.get(a.severity, 10) for a in found]},
            customdata=[[index.get(a.id, -1), a.score, a.size, a.reason] for a in found],
            hovertemplate=f"<b>{detector}</b> %{{x}}<br>score %{{customdata[1]:.2f}} · size %{{customdata[2]:,}} "
                          "@ %{y:,.4f}<br>%{customdata[3]}<extra></extra>", **_PRICE))
    times = np.concatenate([bars["ts"] if len(bars) else np.empty(0, np.int64),
                            np.array([a.ts_event for a in anomalies], np.int64)])
    panes = (_PRICE, _VOLUME) if len(bars) else (_PRICE,)  # an empty pane is left unshaded, as plotly's add_vrect does
    shapes = [{"type": "rect", "x0": f"{day} {start}", "x1": f"{day} {end}", "fillcolor": color,
               "line": {"width": 0}, "layer": "below", "xref": pane["xaxis"], "yref": f"{pane['yaxis']} domain",
               "y0": 0, "y1": 1}
              for day in _days(times) for start, end, color, _ in _SHADED for pane in panes]
    # A figure of the traces alone encodes their arrays as plotly.js's typed arrays (compact, exact).
    return {"data": go.Figure(data=traces).to_dict()["data"],
            "layout": _layout() | ({"shapes": shapes} if shapes else {})}


def sessions_legend() -> str:
    return ", ".join(f"{label} {start:%H:%M}–{end:%H:%M}" for start, end, _, label in _SHADED)
