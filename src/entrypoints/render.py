"""Readable terminal output for the replay summary."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console()


def ts_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def render_replay(result: dict[str, Any], out_path: str | None = None, report: str | None = None,
                  dead_letters: str | None = None, **_: Any) -> None:
    out.print(f"[bold]Replayed[/] {', '.join(result['source'])}")
    out.print(f"{result['trades']:,} trades in {result['seconds']:.2f}s "
              f"([bold]{result['trades_per_second']:,.0f} trades/s[/]); "
              f"[bold]{result['anomalies']:,} anomalies[/]")
    if result["dead_letters"]:
        rejected = ", ".join(f"{k} {v:,}" for k, v in result["dead_letters"].items())
        out.print(f"[yellow]rejected[/]: {rejected}")
    by_det = Table(title="Anomalies by detector", title_justify="left")
    by_det.add_column("detector")
    by_det.add_column("count", justify="right")
    for name, n in sorted(result["by_detector"].items(), key=lambda kv: -kv[1]):
        by_det.add_row(name, f"{n:,}")
    out.print(by_det)
    by_sym = Table(title="Anomalies by symbol", title_justify="left")
    by_sym.add_column("symbol")
    by_sym.add_column("count", justify="right")
    for name, n in list(result["by_symbol"].items())[:15]:
        by_sym.add_row(name, f"{n:,}")
    out.print(by_sym)
    top = Table(title="Top anomalies", title_justify="left", show_lines=False)
    for col in ("time (UTC)", "symbol", "detector", "score", "reason"):
        top.add_column(col, overflow="fold")
    for a in result["top"]:
        top.add_row(ts_text(a["ts_event"]), a["symbol"], a["detector"], f"{a['score']:.2f}", a["reason"])
    out.print(top)
    for label, path in (("anomalies", out_path), ("report", report), ("dead letters", dead_letters)):
        if path:
            out.print(f"{label} written to {path}")
