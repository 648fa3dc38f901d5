"""Readable terminal output for the replay summary."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console()


def ts_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


SESSION_LABELS = {"pre_market": "pre-market", "regular": "regular", "after_hours": "after-hours", "closed": "closed"}


def exchange_time(anomaly: dict[str, Any]) -> str:
    """The anomaly's time on the exchange's clock to the millisecond, with its session
    ("2025-05-05 09:30:01.123 regular"); UTC for a record stored without it."""
    local = anomaly.get("ts_local") or ""
    if not local:
        return f"{ts_text(anomaly['ts_event'])} UTC"
    session = SESSION_LABELS.get(anomaly.get("session") or "", anomaly.get("session") or "")
    return f"{local[:10]} {local[11:23]} {session}".rstrip()


def incident_start(incident: dict[str, Any]) -> str:
    """An incident's start as `exchange_time` shows an anomaly's time."""
    return exchange_time({"ts_event": incident["start_ns"], "ts_local": incident.get("ts_local", ""),
                          "session": incident.get("session", "")})


def incidents_table(incidents: list[dict[str, Any]], title: str) -> Table:
    """Incidents (as `Incident.to_dict`) as rows: start, symbol, size, detectors, score, headline."""
    table = Table(title=title, title_justify="left")
    for col in ("start (New York), session", "symbol", "anomalies", "detectors", "score", "headline"):
        table.add_column(col, overflow="fold")
    for i in incidents:
        table.add_row(incident_start(i), i["symbol"], str(i["size"]), ", ".join(i["detectors"]),
                      f"{i['score']:.2f}", i["headline"])
    return table


def render_replay(result: dict[str, Any], out_path: str | None = None, report: str | None = None,
                  dead_letters: str | None = None, **_: Any) -> None:
    out.print(f"[bold]Replayed[/] {', '.join(result['source'])}")
    out.print(f"{result['trades']:,} trades in {result['seconds']:.2f}s "
              f"([bold]{result['trades_per_second']:,.0f} trades/s[/]); "
              f"[bold]{result['anomalies']:,} anomalies[/] in [bold]{result.get('incidents', 0):,} incidents[/]")
    if result.get("suppressed"):
        held = ", ".join(f"rule {k} {v:,}" for k, v in result["suppressed"].items())
        out.print(f"[yellow]suppressed[/] (judged, not published): {held}")
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
    for col in ("time (New York), session", "symbol", "detector", "score", "reason"):
        top.add_column(col, overflow="fold")
    for a in result["top"]:
        top.add_row(exchange_time(a), a["symbol"], a["detector"], f"{a['score']:.2f}", a["reason"])
    out.print(top)
    if result.get("top_incidents"):
        out.print(incidents_table(result["top_incidents"],
                                  "Top incidents (a symbol's anomalies each within 2 minutes of the next)"))
    if result.get("by_session"):
        out.print("by session: " + ", ".join(f"{SESSION_LABELS.get(k, k)} {v:,}" for k, v in result["by_session"].items()))
    for label, path in (("anomalies", out_path), ("report", report), ("dead letters", dead_letters)):
        if path:
            out.print(f"{label} written to {path}")
