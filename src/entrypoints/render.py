"""Readable terminal output: the replay summary, incident tables, and `show`'s record with its tape."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.context import TAPE_BOUNDS, own_print_at
from domain.incidents import GAP_NS
from domain.model import Print


def console(stderr: bool = False) -> Console:
    """Standard output (or error) as rich writes it: the terminal's width, or, written to a file or a
    pipe (where rich would assume 80 columns and fold every reason and message over several lines),
    one line per table row and per message."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal or "COLUMNS" in os.environ else Console(stderr=stderr, width=4096)


out = console()


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


# Tables give each row's id (what `show` and `label` take) whole, never folded, so it can be copied:
# in a column of its own where the console is this wide (a pipe's is), under the row's time where not.
ID_COLUMN_FROM = 160


def records_table(title: str, first: str, columns: tuple[str, ...], text: str,
                  rows: list[tuple[str, tuple[str, ...], str, str]], width: int) -> Table:
    """Rows of (time, columns, text, id): the time and `columns` kept on one line each (but an
    incident's detectors), `text` (a reason, a headline) folded into the width left, and the id in a
    column of its own or under the time (by the `width` of the console it is for)."""
    apart = width >= ID_COLUMN_FROM
    table = Table(title=title, title_justify="left")
    table.add_column(first if apart else f"{first}\nid", no_wrap=True)
    for col in columns:  # (an incident's detectors can be five names long: folded like its headline)
        table.add_column(col, no_wrap=col != "detectors", overflow="fold",
                         justify="right" if col in ("score", "anomalies") else "left")
    table.add_column(text, overflow="fold", ratio=1)
    if apart:
        table.add_column("id", no_wrap=True)
    for when, cells, what, record_id in rows:
        table.add_row(when if apart else f"{when}\n[dim]{record_id}[/]", *cells, what,
                      *((record_id,) if apart else ()))
    return table


def anomalies_table(anomalies: list[dict[str, Any]], title: str, width: int) -> Table:
    """Anomalies (as `Anomaly.to_dict`) as rows: time, symbol, detector, score, reason, id."""
    return records_table(title, "time (New York), session", ("symbol", "detector", "score"), "reason",
                         [(exchange_time(a), (a["symbol"], a["detector"], f"{a['score']:.2f}"), a["reason"], a["id"])
                          for a in anomalies], width)


def incidents_table(incidents: list[dict[str, Any]], title: str, width: int) -> Table:
    """Incidents (as `Incident.to_dict`) as rows: start, symbol, size, detectors, score, headline, id."""
    return records_table(title, "start (New York), session", ("symbol", "anomalies", "detectors", "score"), "headline",
                         [(incident_start(i), (i["symbol"], str(i["size"]), ", ".join(i["detectors"]),
                                               f"{i['score']:.2f}"), i["headline"], i["id"]) for i in incidents], width)


def count_table(title: str, column: str, counts: list[tuple[str, int]], limit: int | None = None) -> Table:
    """Counts as a two-column table, the first `limit` rows of them; the title says when rows were left
    out, and is never folded over two lines (rich folds a title to its table's width)."""
    shown = counts[:limit] if limit is not None else counts
    if len(shown) < len(counts):
        title = f"{title} (the first {len(shown):,} of {len(counts):,})"
    table = Table(title=title, title_justify="left", min_width=len(title))
    table.add_column(column)
    table.add_column("count", justify="right")
    for name, n in shown:
        table.add_row(name, f"{n:,}")
    return table


def counted(n: int, noun: str, nouns: str = "") -> str:
    """'1 incident', '2 incidents', '1,000 anomalies'."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def render_replay(result: dict[str, Any], out_path: str | None = None, report: str | None = None,
                  dead_letters: str | None = None, **_: Any) -> None:
    out.print(f"[bold]Replayed[/] {', '.join(result['source'])}")
    out.print(f"{counted(result['trades'], 'trade')} in {result['seconds']:.2f}s "
              f"([bold]{result['trades_per_second']:,.0f} trades/s[/]); "
              f"[bold]{counted(result['anomalies'], 'anomaly', 'anomalies')}[/] in "
              f"[bold]{counted(result.get('incidents', 0), 'incident')}[/]")
    if result.get("selection"):
        from application.replay import selection_note

        out.print(f"[yellow]{selection_note(result['selection'])}[/]", highlight=False)
    if result.get("detectors_not_run"):
        out.print(f"[yellow]not run[/] (--detectors, STOCKANOMALY_DETECTORS): {', '.join(result['detectors_not_run'])}",
                  highlight=False)
    if result.get("thresholds_file"):
        out.print(f"[yellow]calibrated size thresholds[/] from {result['thresholds_file']} (high_volume)", highlight=False)
    if result.get("suppressed"):
        held = ", ".join(f"rule {k} {v:,}" for k, v in result["suppressed"].items())
        where = f" by {result['suppressions_file']}" if result.get("suppressions_file") else ""
        out.print(f"[yellow]suppressed[/]{where} (judged, not published; --no-suppressions shows them): {held}",
                  highlight=False)
    if result["dead_letters"]:
        rejected = ", ".join(f"{k} {v:,}" for k, v in result["dead_letters"].items())
        said = "" if dead_letters else " (--dead-letters FILE keeps each with its place and why)"
        out.print(f"[yellow]rejected[/]{said}: {rejected}", highlight=False)
    by_detector = sorted(result["by_detector"].items(), key=lambda kv: -kv[1])
    for table in (count_table("Anomalies by detector", "detector", by_detector),
                  count_table("Anomalies by symbol", "symbol", list(result["by_symbol"].items()), limit=15)):
        if table.row_count:  # nothing found: no empty tables
            out.print(table)
    if result["top"]:  # none found, or --top 0
        out.print(anomalies_table(result["top"], "Top anomalies", out.width))
    if result.get("top_incidents"):
        out.print(incidents_table(result["top_incidents"],
                                  f"Top incidents (a symbol's anomalies each within {GAP_NS // 60_000_000_000} minutes of the next)",
                                  out.width))
    if result.get("by_session"):
        out.print("by session: " + ", ".join(f"{SESSION_LABELS.get(k, k)} {v:,}" for k, v in result["by_session"].items()))
    incidents_out = None
    if out_path:
        from adapters.files.records import incidents_path

        incidents_out = str(incidents_path(out_path))
    for label, path in (("anomalies", out_path), ("incidents", incidents_out), ("report", report),
                        ("dead letters", dead_letters)):
        if path:
            out.print(f"{label} written to {path}")


def local_clock(ns: int, like: str) -> str:
    """`ns` on the exchange's clock as HH:MM:SS.ffffff, at the UTC offset of `like` (an ISO time with
    an offset, e.g. an anomaly's ts_local; UTC when it has none)."""
    offset = datetime.fromisoformat(like[:19] + like[29:]).utcoffset() if len(like) > 29 else None
    tz = timezone(offset) if offset is not None else timezone.utc
    return datetime.fromtimestamp(ns / 1e9, tz=tz).strftime("%H:%M:%S.%f")


# The row between an episode's print and the tape kept up to its end: without it the table read as
# if nothing had traded in between, where a real NVDA burst had hundreds of trades (on both real days
# no rate episode's kept tape reached back to its print).
EPISODE_GAP = "..."


def tape_table(before: list[dict[str, Any]], after: list[dict[str, Any]] | None, anomaly: dict[str, Any],
               title: str | None = None) -> Table:
    """The trades before and after the print an anomaly was found at (as `Print.to_dict`), times on the
    exchange's clock and in ms from the anomaly's print."""
    table = Table(title=title, title_justify="left")
    for col in ("time (New York)", "ms from it", "price", "size", "side"):
        table.add_column(col, justify="left" if col == "time (New York)" else "right", no_wrap=True)
    like, at = anomaly.get("ts_local") or "", int(anomaly["ts_event"])

    def price(x: float) -> str:
        # Cents always (112.30 beside 112.34, not 112.3), sub-penny prints to four decimals (114.255).
        whole, _, frac = f"{x:,.4f}".rstrip("0").partition(".")
        return f"{whole}.{frac:0<2}"

    def row(p: dict[str, Any]) -> tuple[str, ...]:
        return (local_clock(p["ts_event"], like), f"{(p['ts_event'] - at) / 1e6:+,.1f}", price(p["price"]),
                f"{p['size']:,}", p["side"])

    # The anomaly's own print marked in its place among the trades before (a rate episode's context
    # runs on to the print that completed its measure, and holds it), then a line where the trades
    # after begin.
    own = own_print_at([Print.from_dict(p) for p in before], at, float(anomaly["price"]), int(anomaly["size"]))
    gap: list[Any] = []
    if own is None:  # not among them: shown in time order
        k = sum(1 for p in before if p["ts_event"] <= at)
        if k == 0 and before:  # an episode's tape that no longer reaches back to its print
            gap = [EPISODE_GAP]
        marked = [*before[:k], None, *gap, *before[k:]]
    else:
        marked = [*before[:own], None, *before[own + 1:]]
    for j, p in enumerate(marked, 1):
        if p is None:
            table.add_row(f"[bold]{local_clock(at, like)}[/]", "0.0", f"[bold]{price(anomaly['price'])}[/]",
                          f"[bold]{anomaly['size']:,}[/]", f"[bold]<- {anomaly['detector']}[/]",
                          end_section=j == len(marked))
        elif p is EPISODE_GAP:
            table.add_row(EPISODE_GAP, EPISODE_GAP, EPISODE_GAP, EPISODE_GAP, EPISODE_GAP)
        else:
            table.add_row(*row(p), end_section=j == len(marked))
    if after is None:
        table.add_row("(the trades after it come with its incident, which has not closed)", "", "", "", "")
    for p in after or []:
        table.add_row(*row(p))
    return table


def render_shown(shown: Any) -> None:
    """`stockanomaly show`: an anomaly or incident (application.show.Shown) and the tape around it.
    An anomaly asked for comes first, then the incident it is in."""
    a, incident = shown.anomaly, shown.incident
    if shown.kind == "anomaly":
        out.print(f"[bold]anomaly {a.id}[/] {a.symbol} {a.detector}  {exchange_time(a.to_dict())}  score {a.score:.2f} "
                  f"({a.severity})")
        out.print(f"  {a.reason}")
        if incident is None:
            out.print("  (its incident is not stored: still open, or not written)")
    if incident is not None:
        i = incident.to_dict()
        end = local_clock(incident.end_ns, i.get("ts_local") or "")[:12]
        within = "in " if shown.kind == "anomaly" else ""
        out.print(f"{within}[bold]incident {incident.id}[/] {incident.symbol}  {incident_start(i)} to {end}  "
                  f"{counted(incident.size, 'anomaly', 'anomalies')}  score {incident.score:.2f} ({incident.severity})")
        out.print(f"  {incident.headline}")
        if shown.kind == "incident" and (shown.members or shown.absent):
            out.print("members:")
            for m in shown.members:
                clock = local_clock(m.ts_event, m.ts_local)[:12]  # the day is the incident's
                out.print(f"  {clock}  {m.detector:<16} {m.score:5.2f}  {m.id}", highlight=False)
                out.print(f"      {m.reason}", highlight=False)
        if shown.absent:
            out.print(f"  not stored here: {len(shown.absent)} of its {incident.size} anomalies "
                      f"({', '.join(shown.absent)}); a replay's --since or --symbols leaves them out of --out",
                      highlight=False)
    if a is None:
        return
    d = a.to_dict()
    episode = bool(shown.before) and shown.before[-1].ts_event > a.ts_event  # its tape runs on past its print
    where = ("up to the print that completed its measure (the episode's end: the last before the line"
             + ("; the trades between its print and them, at the ..., are not kept)"
                if shown.before[0].ts_event > a.ts_event else ")")
             if episode else "before its print")
    title = (f"the tape around {a.detector} at {exchange_time(d)}: {len(shown.before)} trades {where}, "
             f"{len(shown.after or [])} after ({TAPE_BOUNDS})")
    # A line of its own: as the table's title it was folded to the table's 68 columns, three lines
    # cut mid-phrase ("none over 60" / "s away").
    out.print(title, highlight=False)
    out.print(tape_table([p.to_dict() for p in shown.before],
                         None if shown.after is None else [p.to_dict() for p in shown.after], d))
