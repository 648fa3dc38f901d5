"""One symbol's price/volume chart with its anomalies marked, rendered to PNG with matplotlib."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from adapters.report.bars import MINUTE_NS
from adapters.report.timeaxis import GAP_NS, TradingTimeAxis
from domain.model import Anomaly

PRICE_COLOR = "#2c5d8a"
BAND_COLOR = "#9dbcd9"
VOLUME_COLOR = "#a3adb8"
SEVERITY_SIZE = {"low": 30.0, "medium": 55.0, "high": 95.0}
_PALETTE = ["#e4572e", "#8e44ad", "#f0a202", "#17a589", "#d81b60", "#6d4c41", "#00838f",
            "#7cb342"]
_MARKERS = ["o", "^", "D", "s", "P", "X", "v", "*"]
_GLYPHS = {"o": "●", "^": "▲", "D": "◆", "s": "■", "P": "✚", "X": "✖", "v": "▼", "*": "★"}
_RC = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
       "axes.edgecolor": "#8a949e", "xtick.color": "#4a5560", "ytick.color": "#4a5560",
       "axes.labelcolor": "#4a5560"}


@dataclass(frozen=True, slots=True)
class DetectorStyle:
    color: str
    marker: str

    @property
    def glyph(self) -> str:
        return _GLYPHS[self.marker]


def detector_styles(detectors: Iterable[str]) -> dict[str, DetectorStyle]:
    """A fixed colour and marker per detector, so charts and table agree across the report."""
    names = sorted(set(detectors))
    return {name: DetectorStyle(_PALETTE[i % len(_PALETTE)], _MARKERS[i % len(_MARKERS)])
            for i, name in enumerate(names)}


def _with_gaps(axis: TradingTimeAxis, ts: np.ndarray,
               *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """x at each bar's middle, with a NaN row after each long pause so lines do not bridge it."""
    breaks = np.flatnonzero(np.diff(ts) > GAP_NS) + 1
    x = np.insert(axis(ts + MINUTE_NS // 2), breaks, np.nan)
    return (x, *(np.insert(c.astype(float), breaks, np.nan) for c in columns))


def render_chart(bars: np.ndarray, anomalies: Sequence[Anomaly],
                 styles: dict[str, DetectorStyle], dpi: int = 110) -> bytes:
    """PNG of 1-minute close with its high-low band, volume below, anomalies on the price."""
    times = np.concatenate([bars["ts"], np.array([a.ts_event for a in anomalies], np.int64)])
    axis = TradingTimeAxis.spanning(times if len(times) else np.zeros(1, np.int64))
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(11.0, 4.4), layout="constrained")
        FigureCanvasAgg(fig)
        price_ax, volume_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        _draw_price(price_ax, axis, bars)
        _draw_anomalies(price_ax, axis, anomalies, styles)
        _draw_volume(volume_ax, axis, bars)
        _format_time_axis(volume_ax, price_ax, axis)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _draw_price(ax: Axes, axis: TradingTimeAxis, bars: np.ndarray) -> None:
    ax.set_ylabel("price")
    ax.grid(True, color="#e6e9ed", linewidth=0.7)
    ax.set_axisbelow(True)
    if len(bars) == 0:
        return
    x, close, high, low = _with_gaps(axis, bars["ts"], bars["close"], bars["high"], bars["low"])
    few = len(bars) < 60  # sparse bars read better as dots with range whiskers than as a band
    if few:
        ax.vlines(x, low, high, color=BAND_COLOR, linewidth=3, label="1-min high–low")
    else:
        ax.fill_between(x, low, high, color=BAND_COLOR, alpha=0.55, linewidth=0,
                        label="1-min high–low")
    ax.plot(x, close, color=PRICE_COLOR, linewidth=1.1, label="1-min close",
            marker="o" if few else None, markersize=3)


def _draw_anomalies(ax: Axes, axis: TradingTimeAxis, anomalies: Sequence[Anomaly],
                    styles: dict[str, DetectorStyle]) -> None:
    by_detector: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_detector.setdefault(a.detector, []).append(a)
    handles, _ = ax.get_legend_handles_labels()
    for detector in sorted(by_detector):
        found, style = by_detector[detector], styles[detector]
        ax.scatter(axis([a.ts_event for a in found]), [a.price for a in found],
                   s=[SEVERITY_SIZE.get(a.severity, 40.0) for a in found], marker=style.marker,
                   color=style.color, edgecolors="white", linewidths=0.6, zorder=5)
        handles.append(Line2D([], [], linestyle="none", marker=style.marker, color=style.color,
                              markeredgecolor="white", markersize=7,
                              label=f"{detector} ({len(found)})"))
    if handles:
        # Above the plot, so it never hides a price or a marker.
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8,
                  frameon=False, ncols=len(handles), borderaxespad=0.2)


def _draw_volume(ax: Axes, axis: TradingTimeAxis, bars: np.ndarray) -> None:
    ax.set_ylabel("volume")
    ax.grid(True, axis="y", color="#e6e9ed", linewidth=0.7)
    ax.set_axisbelow(True)
    ax.yaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    ax.yaxis.set_major_locator(ticker.MaxNLocator(3))
    if len(bars) == 0:
        return
    # One StepPatch for all bars (thousands of Rectangles would be slow): each bar spans its
    # minute, with a zero step between bars; a visible gap only where bars are wide enough.
    inset = MINUTE_NS // 8 if len(bars) <= 240 else 0
    starts = bars["ts"]
    edges = axis(np.column_stack([starts + inset, starts + MINUTE_NS - inset]).ravel())
    heights = np.column_stack([bars["volume"], np.zeros(len(bars))]).ravel()[:-1]
    ax.stairs(heights, edges, fill=True, color=VOLUME_COLOR, linewidth=0)
    ax.set_ylim(0, max(float(bars["volume"].max()), 1.0) * 1.1)


def _format_time_axis(ax: Axes, price_ax: Axes, axis: TradingTimeAxis) -> None:
    pad = max(axis.width * 0.01, 2.0)
    ax.set_xlim(-pad, axis.width + pad)
    positions, labels = axis.ticks()
    ax.set_xticks(positions, labels)
    for x in axis.breaks_x:  # where a night or other long pause was cut out
        for a in (ax, price_ax):
            a.axvline(x, color="#b8c0c8", linewidth=0.9, linestyle=(0, (3, 3)), zorder=0)
    ax.set_xlabel("time (UTC); dashed lines mark cut-out pauses" if axis.breaks_x
                  else "time (UTC)")
