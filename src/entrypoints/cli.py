"""The `stockanomaly` command group, its shared options and checks, and `replay` and `generate` (the
analyst's review commands: cli_review; those over Kafka and Elasticsearch: cli_streaming)."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date as date_cls
from pathlib import Path
from typing import Any, NoReturn

import click
import structlog
from click.core import ParameterSource
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from domain.compiled import kernels_cached
from domain.detectors import DETECTOR_NAMES
from domain.errors import ConfigError, DomainError
from entrypoints.logging_setup import configure_logging, quiet_kafka_client
from entrypoints.render import console, counted
from entrypoints.writable import unwritable

log = structlog.get_logger()
err = console(stderr=True)

SAMPLE = {"symbols": 8, "trades": 400_000, "seed": 7}


@contextmanager
def progress_bar(label: str, total: int | None, enabled: bool) -> Iterator[Progress]:
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=not enabled, transient=True) as bar:
        bar.add_task(label, total=total, rate="")
        yield bar


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def say_when_compiling(kernel: Any = None, what: str = "the detectors' kernels", seconds: str = "30-60 s") -> None:
    """A machine's first run compiles the kernels: seconds in which nothing moves (the compiler holds
    the interpreter, so not even the progress bar's spinner), which read as a hang. Said on a terminal,
    and elsewhere too (CI logs, cron, `replay ... | jq`, a container's first start, where a first run
    sat silent for ~49 s) as one plain line on stderr: stdout stays what a --json reader parses."""
    if kernels_cached(kernel):
        return
    said = f"compiling {what}: once per machine, {seconds} (later runs start at once)"
    if err.is_terminal:
        err.print(said, highlight=False)
    else:
        click.echo(said, err=True)


class FiniteRange(click.FloatRange):
    """click's FloatRange, refusing nan and inf too: nan passes its bound checks (every comparison
    with nan is false), and a threshold of nan or inf silently turns a rule always on or off."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class OutputPath(click.Path):
    """A file the command will write: refused before any work when it cannot be (its directory is a
    file, or not writable; tried, see `unwritable`), instead of failing after a long run. A missing
    directory is created."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        problem = unwritable(path)
        if problem:
            self.fail(problem, param, ctx)
        return str(path)


def calendar_day(value: str) -> str:
    try:
        return date_cls.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a calendar day in the form YYYY-MM-DD") from None


def describe_os_error(exc: OSError) -> str:
    """A file-system error as one line: the path and what the system said about it."""
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where else what


class Commands(click.Group):
    """The command group; an error from the file system (an output directory not writable, a full
    disk) ends any command with one line, not a traceback, whenever it happens, and Ctrl-C with
    "interrupted" and exit status 130 (as a shell reports an interrupted command)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # the reader of our output went away (`| head`): nothing left to say
            sys.stderr.close()
            ctx.exit(1)
        except KeyboardInterrupt:  # Ctrl-C before a command's own handling (start-up, warm-up)
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except OSError as exc:
            raise click.ClickException(describe_os_error(exc)) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stockanomaly", message="%(prog)s %(version)s")
# Shown as click shows choices in any case (lower), the default too; configure_logging takes any case.
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="The commands' log level, in any case (the worker, the indexer and, unless this is given, notify take STOCKANOMALY_LOG_LEVEL).")
def main(log_level: str) -> None:
    """Real-time, explainable stock trade anomaly detection over Databento data.

    Start with `stockanomaly replay FILE...` (no FILE: a built-in sample), or make a market to replay
    with `stockanomaly generate m.dbn.zst`."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(?!domain|application|adapters|entrypoints)")
    configure_logging(log_level)
    quiet_kafka_client()


def service_log_level(level: str) -> None:
    """A command that runs as a service (`notify`) logs at STOCKANOMALY_LOG_LEVEL (`level`, INFO by
    default) as the worker and the indexer do, unless --log-level was given: at the commands' WARNING
    a notifier said `kafka_unreachable` and never `kafka_reachable`, nor that it had started."""
    if click.get_current_context().find_root().get_parameter_source("log_level") is ParameterSource.DEFAULT:
        configure_logging(level)


def file_source(paths: tuple[str, ...], chunk_size: int, read_ahead: int = 0) -> Any:
    """The files' trades, read ahead of their consumer on a thread; `read_ahead` > 0 also decodes
    several files side by side (adapters.databento.source)."""
    from adapters.databento import DatabentoFileSource
    from adapters.prefetch import PrefetchingSource

    try:
        return ReadToTheEnd(PrefetchingSource(DatabentoFileSource(list(paths), chunk_size=chunk_size,
                                                                  read_ahead=read_ahead)))
    except DomainError as exc:
        fail(str(exc))


def check_outputs(inputs: Sequence[str], reads: dict[str, str | None], writes: dict[str, str | None]) -> None:
    """Refuse (one line, before any work) an output that is one of the inputs or another output:
    opening it for writing would empty an input before it is read, or two outputs would share a
    file; and one named like a file of trades (`--out day.dbn.zst` wrote JSON lines over a day's
    data). `inputs` are the files to read as given (a directory or glob stands for the files it
    holds); `reads` and `writes` name other files by their option."""
    from adapters.databento.paths import SUPPORTED_SUFFIXES, expand_paths

    named: dict[Path, str] = {}  # what is read
    writes_to: dict[Path, str] = {}
    for raw in inputs:
        try:
            files = expand_paths([raw])
        except DomainError:
            continue  # the reader says what is wrong with it
        for file in files:
            named.setdefault(file.resolve(), f"the input {file}")
    for option, read in reads.items():
        if read:
            named.setdefault(Path(read).resolve(), f"{option} {read}")
    for option, given in writes.items():
        if not given:
            continue
        if given == "-":  # (it would make a file named "-")
            fail(f"{option} - : writes a file, not standard output (--json prints the summary there)")
        target = Path(given).resolve()
        if target in writes_to:
            fail(f"{option} {given} is {writes_to[target]}: both would write that file; choose another")
        if target in named:
            fail(f"{option} {given} is {named[target]}: writing it would destroy it; choose another file")
        if given.lower().endswith(SUPPORTED_SUFFIXES):  # our outputs are JSON or HTML, never trades
            fail(f"{option} {given} is named as a file of trades ({', '.join(SUPPORTED_SUFFIXES)}), which this "
                 "command does not write: it would overwrite one, or leave one no reader can read; choose another name")
        writes_to[target] = option


def event_window(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """--since / --until as event-time ns (None: open). An age (1h, 7d) or `now` counts from the
    clock, which a replay of history has nothing to do with: refused (it would select nothing, silently)."""
    import time

    from application.query import parse_time

    forms = "a time (2025-05-05T13:00:00Z, 2025-05-05T09:30:00-04:00), a date or integer ns"

    def at(option: str, text: str | None) -> int | None:
        if text is None:
            return None
        now = time.time_ns()
        try:
            moment = parse_time(text, now)
        except DomainError as exc:  # query's message offers ages (30m, 1h), which a replay refuses below
            unreadable = str(exc).startswith("cannot read time")
            raise click.BadParameter(f"{option}: cannot read time {text!r}: give {forms}" if unreadable
                                     else f"{option}: {exc}") from None
        if parse_time(text, now + 1) != moment:
            raise click.BadParameter(f"{option} {text!r} is relative to now, and a replay reads history: give {forms}")
        return moment

    window = (at("--since", since), at("--until", until))
    if None not in window and window[0] >= window[1]:  # type: ignore[operator]
        raise click.BadParameter(f"--since {since} is not before --until {until}")
    return window


def utc_text(ns: int | None) -> str | None:
    """Event-time ns as ISO 8601 UTC, to the second when that is exact (2025-05-05T13:30:00Z)."""
    if ns is None:
        return None
    import numpy as np

    return str(np.datetime_as_string(np.datetime64(ns, "ns"), unit="s" if ns % 1_000_000_000 == 0 else "ns")) + "Z"


class Before:
    """A source's trades before `until_ns` (event time): each chunk cut there, and reading stopped
    at the first chunk wholly at or after it (a file's prints are in time order up to a little
    jitter across symbols, which a chunk of thousands of trades covers). No later trade changes a
    decision about an earlier one, so the anomalies before `until_ns` are a full run's."""

    def __init__(self, source: Any, until_ns: int) -> None:
        self.source = source
        self.until_ns = until_ns

    def chunks(self) -> Iterator[Any]:
        from domain.ports import SourceChunk

        for chunk in self.source.chunks():
            ts = chunk.trades["ts_event"]
            if len(ts) and int(ts.min()) >= self.until_ns:
                return
            if len(ts) and int(ts.max()) >= self.until_ns:
                before = ts < self.until_ns
                chunk = SourceChunk(chunk.trades[before], chunk.dead_letters,
                                    None if chunk.places is None else chunk.places[before], chunk.describe)
            yield chunk


class ReadToTheEnd:
    """A file source that remembers the files it could not read to the end (their `bad_file` dead
    letters), so a command can say so in one line and exit non-zero instead of reporting success
    on part of its input."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.unreadable: list[Any] = []

    def chunks(self) -> Iterator[Any]:
        from adapters.databento.dead_letters import BAD_FILE

        for chunk in self.source.chunks():
            self.unreadable += [d for d in chunk.dead_letters if d.reason == BAD_FILE]
            yield chunk

    def check(self, consequence: str) -> None:
        if self.unreadable:
            first = self.unreadable[0]
            more = f" (and {len(self.unreadable) - 1} more files)" if len(self.unreadable) > 1 else ""
            fail(f"{first.origin}: {first.detail}{more}; {consequence}")


def sample_source(chunk_size: int) -> Any:
    from adapters.memory import InMemoryTradeSource
    from adapters.synthetic import generate_market

    market = generate_market(symbols=SAMPLE["symbols"], trades=SAMPLE["trades"], seed=SAMPLE["seed"])
    return InMemoryTradeSource(market.trades, chunk_size=chunk_size)


UNSEEN_LISTED = 20  # symbols of --symbols that no trade had, named one by one; the rest are counted


def say_if_no_threshold_applied(option: str, path: str | None, traded: Any) -> None:
    """A thresholds file none of whose symbols traded (another market's) changes nothing, and nothing in
    a summary shows it: said, as a --symbols that matched nothing is."""
    if not path:
        return
    from adapters.files.thresholds import load_thresholds

    symbols = sorted(load_thresholds(path).symbols)
    if symbols and not any(s in traded or s.upper() in traded or s.lower() in traded for s in symbols):
        err.print(f"{option} {path}: none of its {counted(len(symbols), 'symbol')} ({named(symbols, 5)}) traded "
                  "here: every print was judged by the default rule", highlight=False)


def named(names: Sequence[str], limit: int) -> str:
    """The first `limit` names, comma-separated, and how many more there are ('A, B and 1,998 more')."""
    more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@main.command(short_help="Detect anomalies in Databento files, in-process.")
@click.argument("paths", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the readable summary.")
@click.option("--out", type=OutputPath(),
              help="Write every anomaly as JSON lines to this file, and every incident (with the trades after "
                   "each anomaly) beside it: anomalies.jsonl -> anomalies.incidents.jsonl. `show ID --file` reads both "
                   "[default: STOCKANOMALY_OUT, else none].")
@click.option("--report", type=OutputPath(), help="Write a self-contained HTML report.")
@click.option("--dead-letters", type=OutputPath(),
              help="Write rejected records as JSON lines [default: STOCKANOMALY_DEAD_LETTERS, else none].")
@click.option("--thresholds", type=click.Path(exists=True, dir_okay=False),
              help="Calibrated thresholds file (`stockanomaly calibrate`) [default: STOCKANOMALY_THRESHOLDS, else "
                   "none: the default rule].")
@click.option("--detectors", metavar="NAMES",
              help=f"Comma-separated detectors to run, of {', '.join(DETECTOR_NAMES)} "
                   "[default: STOCKANOMALY_DETECTORS, else all].")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="How many top anomalies, and top incidents, to show and to list in --json (0: none; the "
                   "report lists its own).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve Prometheus metrics on this port while replaying (0: any free one; address: "
                   "STOCKANOMALY_METRICS_ADDR).")
@click.option("--symbols", "only_symbols", metavar="SYMBOLS", multiple=True,
              help="Report only these symbols' anomalies (comma-separated or repeated, any case).")
@click.option("--since", metavar="TIME", help="Report only anomalies from this event time on: ISO 8601 (2025-05-05T13:00:00Z, "
                              "an offset like -04:00 (none: UTC, not New York; the summary says both), or a date) or "
                              "integer ns since the epoch.")
@click.option("--until", metavar="TIME", help="Stop before this event time (same forms as --since).")
@click.option("--suppressions", "suppressions_file", type=click.Path(exists=True, dir_okay=False),
              help="Suppressions file to honour [default: STOCKANOMALY_SUPPRESSIONS, else ./suppressions.json, "
                   "where `stockanomaly suppress` writes].")
@click.option("--no-suppressions", is_flag=True,
              help="Honour no suppression rule: report everything the detectors found.")
def replay(paths: tuple[str, ...], as_json: bool, out: str | None, report: str | None, dead_letters: str | None,
           thresholds: str | None, detectors: str | None, top: int, metrics_port: int | None,
           only_symbols: tuple[str, ...], since: str | None, until: str | None, suppressions_file: str | None,
           no_suppressions: bool) -> None:
    """Run the detection core in-process over Databento files (DBN or CSV, plain or .zst, globs,
    directories). With no PATH it runs on a built-in synthetic sample with injected anomalies.

    --symbols and --since judge every trade all the same (the state, models and ids are a full
    run's) and report only what they select; --until stops reading there."""
    from adapters.files.records import incidents_path
    from entrypoints.container import build_container

    window = event_window(since, until)
    if no_suppressions and suppressions_file:
        raise click.UsageError("--suppressions and --no-suppressions: choose one")
    rules_file = "" if no_suppressions else suppressions_path(suppressions_file)
    if not suppressions_file and rules_file not in ("", "suppressions.json") and not Path(rules_file).is_file():
        # Named on purpose (the flag's file must exist too): a mistyped path must not pass in silence.
        fail(f"STOCKANOMALY_SUPPRESSIONS names {rules_file}, which is not a file")
    # STOCKANOMALY_OUT / _DEAD_LETTERS / _THRESHOLDS stand in for their flags: checked as the flags are
    # (an output variable naming an input would empty the input), and named as what gave them.
    out_option = "--out" if out else "STOCKANOMALY_OUT"
    letters_option = "--dead-letters" if dead_letters else "STOCKANOMALY_DEAD_LETTERS"
    thresholds_option = "--thresholds" if thresholds else "STOCKANOMALY_THRESHOLDS"
    out = out or file_setting(None, "out", "", writes=True) or None
    dead_letters = dead_letters or file_setting(None, "dead_letters", "", writes=True) or None
    thresholds_read = thresholds or file_setting(None, "thresholds", "") or None
    check_outputs(paths, {thresholds_option: thresholds_read, "--suppressions": rules_file},
                  {out_option: out, f"{out_option}'s incidents file": out and str(incidents_path(out)),
                   "--report": report, letters_option: dead_letters})
    wanted = {s.strip().upper() for spec in only_symbols for s in spec.split(",") if s.strip()}
    if only_symbols and not wanted:
        raise click.BadParameter("names no symbol", param_hint="--symbols")
    if detectors is not None and not detectors.strip(" ,"):  # (a blank STOCKANOMALY_DETECTORS means all)
        raise click.BadParameter("names no detector", param_hint="--detectors")
    try:
        container = build_container({"detectors": "--detectors"}, out=out, dead_letters=dead_letters,
                                    thresholds=thresholds, detectors=detectors,
                                    suppressions=rules_file,
                                    **({"metrics": "prometheus", "metrics_port": metrics_port}
                                       if metrics_port is not None else {}))
        if metrics_port is not None:
            from entrypoints.topics import serve_metrics

            server = container.metrics_server()
            try:
                serve_metrics(server, "STOCKANOMALY_METRICS_ADDR / --metrics-port")
            except ConfigError as exc:
                fail(str(exc))
            err.print(f"metrics on http://{server.addr}:{server.port}/metrics", highlight=False)  # port 0: the one picked
        chunk_size = int(container.config.chunk_size())
        source = file_source(paths, chunk_size) if paths else sample_source(chunk_size)
        files = source if isinstance(source, ReadToTheEnd) else None
        selected: dict[str, Any] = {}
        if wanted or window != (None, None):
            def chosen(symbol: str, first: int, last: int) -> bool:
                return ((not wanted or symbol.upper() in wanted) and (window[0] is None or last >= window[0])
                        and (window[1] is None or first < window[1]))

            container.detect.add_kwargs(reports=lambda a: chosen(a.symbol, a.ts_event, a.ts_event))
            # An incident in the selection is reported whole, as a full run groups it.
            selected["reports_incident"] = lambda i: chosen(i.symbol, i.start_ns, i.end_ns)
        if window[1] is not None:
            source = Before(source, window[1])
        use_case = container.replay(top_n=top, **selected)
        say_when_compiling()
        container.engine().warm_up()  # kernels loaded before the clock starts, as a worker does at start-up
    except DomainError as exc:
        from adapters.files.suppressions import SuppressionsUnreadable

        # a broken ./suppressions.json would stop every replay in its folder: say the way out
        fail(f"{exc} (--no-suppressions replays without it)" if isinstance(exc, SuppressionsUnreadable) else str(exc))
    bars = None
    if report:
        from adapters.report import BarCollector

        bars = BarCollector()
    latest: int | None = None  # the newest event time read (--since's check)
    with progress_bar("replaying", None, enabled=not as_json and err.is_terminal) as bar:
        def on_chunk(trades: Any, anomalies: Any) -> None:
            nonlocal latest
            bar.advance(bar.task_ids[0], len(trades))
            if bars is not None:  # the charts show what the report is of: from --since on
                bars.add(trades if window[0] is None else trades[trades["ts_event"] >= window[0]])
            if len(trades):
                newest = int(trades["ts_event"].max())
                latest = newest if latest is None else max(latest, newest)

        try:
            summary = use_case(source, on_chunk=on_chunk)
        except DomainError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
    container.anomaly_sink().close()
    container.incident_sink().close()
    container.dead_letter_sink().close()
    if files is not None and not interrupted and summary.trades == 0:
        files.check("nothing was read")  # an empty summary above the error would only be noise
    if interrupted:
        written = [str(path) for path in (out, out and incidents_path(out), dead_letters) if path]
        listed = ", ".join(written[:-1]) + " and " + written[-1] if len(written) > 1 else "".join(written)
        click.echo("interrupted: no summary" + (f"; {listed} {'hold' if len(written) > 1 else 'holds'} what was found "
                                                "until then" if written else "")
                   + (f"; no report written to {report}" if report else ""), err=True)
        raise click.exceptions.Exit(130)
    result = summary.to_dict()
    result["source"] = list(paths) or [f"built-in sample ({SAMPLE['symbols']} symbols, seed {SAMPLE['seed']})"]
    if wanted or window != (None, None):  # the counts are the selection's: said with them, in --json and the report
        result["selection"] = {key: value for key, value in (("symbols", sorted(wanted)),
                                                              ("since", utc_text(window[0])),
                                                              ("until", utc_text(window[1]))) if value}
    off = detectors_not_run(container.engine())
    if off:  # a detector that found nothing reads the same as one that never ran (STOCKANOMALY_DETECTORS left set)
        result["detectors_not_run"] = off
    if thresholds_read:  # they move high_volume's line per symbol, maybe from a variable set long ago: said
        result["thresholds_file"] = thresholds_read
    if result["suppressed"]:
        result["suppressions_file"] = rules_file  # which rules held anomalies back: it may be ./suppressions.json
    if report and bars is not None:
        from adapters.report import write_html_report

        # Seconds after the replay's bar has gone (plotly encodes each chart: ~1.5 s for 100 named symbols).
        with progress_bar(f"writing the report to {report}", None, enabled=not as_json and err.is_terminal):
            write_html_report(report, bars, container.collected_anomalies().anomalies, result,
                              incidents=container.collected_incidents().incidents, only_symbols=wanted)
    log.info("replay_finished", trades=summary.trades, anomalies=summary.anomalies, seconds=round(summary.seconds, 3))
    if as_json:
        click.echo(json.dumps(result))
    else:
        from entrypoints.render import render_replay

        render_replay(result, out_path=out, report=report, dead_letters=dead_letters)
    say_if_no_threshold_applied(thresholds_option, thresholds_read, container.state_store())
    unseen = sorted(s for s in wanted if s not in container.state_store())
    if unseen:  # a typo reads like a quiet symbol otherwise
        # A market's watch list can miss thousands: the first few named, the rest counted.
        err.print(f"--symbols: no trade of {named(unseen, UNSEEN_LISTED)} was read", highlight=False)
    # A window outside the data reads like a quiet day otherwise, as a mistyped symbol would.
    if files is not None and summary.trades == 0 and window[1] is None and not interrupted:
        # Files read whole without a word: a book file (mbp-1) of a quiet window has no trade in it.
        from adapters.databento.paths import expand_paths, file_kind

        books = any(file_kind(path) == "dbn" for path in expand_paths(list(paths)))
        err.print("no trade in the input" + (": book files (mbp-1, mbp-10, tbbo) hold trades only as their "
                                             "records with action T" if books else ""), highlight=False)
    elif window[1] is not None and latest is None and not interrupted:
        err.print(f"--until {until}: no trade was read before it", highlight=False)
    elif window[0] is not None and latest is not None and latest < window[0]:
        import numpy as np

        last = np.datetime_as_string(np.datetime64(latest, "ns"), unit="s")
        err.print(f"--since {since}: no trade was read from then on (the last at {last}Z)", highlight=False)
    if files is not None:
        files.check("the results above cover only what was read before it")


def file_setting(given: str | None, setting: str, default: str, writes: bool = False) -> str:
    """--file, else the setting (its STOCKANOMALY_ variable), else `default` in this directory. A file
    the command `writes` is checked as OutputPath checks a flag's, and refused naming the variable
    (not later, when creating its directory fails with an error that names neither)."""
    from entrypoints.settings import PREFIX, load_settings

    if given:
        return given
    try:
        value = str(getattr(load_settings(), setting))
    except DomainError as exc:
        fail(str(exc))
    problem = unwritable(Path(value)) if value and writes else None
    if problem:
        fail(f"{PREFIX}{setting.upper()}: {problem}")
    return value or default


def suppressions_path(given: str | None, writes: bool = False) -> str:
    return file_setting(given, "suppressions", "suppressions.json", writes)


@main.command(short_help="Write a synthetic market with labelled anomalies.")
@click.argument("out", type=OutputPath())
@click.option("--symbols", default=20, show_default=True, type=click.IntRange(1, 20_000), metavar="N",
              help="How many symbols (up to 20,000: the whole US tape is about 11,000 listings).")
@click.option("--trades", default=1_000_000, show_default=True, type=click.IntRange(1002), metavar="N",
              help="Prints in all (at least 1,002: one symbol's 1,000 of history for an injected anomaly and its "
                   "two auction crosses; more symbols need more).")
@click.option("--seed", default=7, show_default=True, type=click.IntRange(0, 2**32 - 1), metavar="N",
              help="The same seed gives the same market, byte for byte.")
@click.option("--date", metavar="DATE", default="2025-03-03", show_default=True, callback=lambda _c, _p, v: trading_day(v),
              help="A full trading day (YYYY-MM-DD), or `last`: the last one before today (UTC).")
def generate(out: str, symbols: int, trades: int, seed: int, date: str) -> None:
    """Write a synthetic market with labelled, injected anomalies to OUT as DBN (.dbn or .dbn.zst), and
    its labels beside it (m.dbn.zst -> m.labels.json), for `replay` and `evaluate`."""
    from adapters.synthetic import generate as write_market
    from adapters.synthetic import labels_path_for

    if not out.lower().endswith((".dbn", ".dbn.zst")):  # in any case, as the readers take it
        fail(f"OUT must end with .dbn or .dbn.zst, got {out!r}")
    problem = unwritable(labels_path_for(out))  # written after the market: refused then, it left one unlabelled
    if problem:
        raise click.BadParameter(f"its labels are written beside it, but {problem}", param_hint="'OUT'")
    with progress_bar("generating", None, enabled=err.is_terminal):
        try:
            result = write_market(out, symbols=symbols, trades=trades, seed=seed, date=date)
        except ValueError as exc:  # an impossible combination, or a date that is not one
            fail(str(exc))
        except MemoryError:
            fail(f"not enough memory to generate {trades:,} trades at once; ask for fewer")
    click.echo(f"wrote {result.total_trades:,} trades for {symbols:,} symbol{'' if symbols == 1 else 's'} to {out}")
    click.echo(f"wrote {counted(len(result.events), 'labelled anomaly', 'labelled anomalies')} to {labels_path_for(out)}")


def trading_day(value: str) -> str:
    if value == "last":
        from datetime import datetime, timezone

        from adapters.synthetic.arrivals import Session

        return Session.last_full_day(datetime.now(timezone.utc).date()).isoformat()
    day = calendar_day(value)
    if not "1970-01-02" <= day <= "2262-04-10":  # event times are nanoseconds since 1970 in 64 bits
        raise click.BadParameter(f"{day} is outside the days a trade's timestamp can hold (1970-01-02 to 2262-04-10)")
    return day


def detectors_not_run(engine: Any) -> list[str]:
    """The detectors STOCKANOMALY_DETECTORS left out: evaluate has no --detectors, and a variable left set
    from a replay read as detectors that caught nothing (recall 0 for every type they are expected to catch)."""
    return [d.name for d in engine.detectors if d not in engine.enabled]


from entrypoints import cli_review, cli_streaming  # noqa: E402,F401  (their commands join `main`)


if __name__ == "__main__":
    sys.exit(main())
