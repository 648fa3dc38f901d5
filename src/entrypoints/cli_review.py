"""The analyst's commands: `show` one anomaly or incident, `label` it, `evaluate` the detectors
against labels or verdicts, `suppress` known patterns, `calibrate` per-symbol thresholds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from domain.detectors import DETECTOR_NAMES
from domain.errors import ConfigError, DomainError
from domain.suppressions import Suppressions
from entrypoints.cli import (FiniteRange, OutputPath, check_outputs, detectors_not_run, err, fail, file_setting,
                             file_source, main, named, progress_bar, say_if_no_threshold_applied, say_when_compiling,
                             suppressions_path)
from entrypoints.cli_streaming import settings_or_fail
from entrypoints.render import counted

if TYPE_CHECKING:
    from domain.ports import RecordLookup

T = TypeVar("T")


@main.command(short_help="Stop publishing anomalies that match a known pattern.")
@click.option("--symbol", metavar="SYMBOL", help="Only this symbol's anomalies.")
@click.option("--detector", metavar="NAME", help=f"Only this detector's anomalies: one of {', '.join(DETECTOR_NAMES)}.")
@click.option("--between", metavar="HH:MM-HH:MM", help="Only within this New York time-of-day window, HH:MM-HH:MM or HH:MM:SS-HH:MM:SS "
                               "(end excluded).")
@click.option("--until", "until_day", metavar="DATE", help="Last exchange date the rule applies (YYYY-MM-DD) [default: no end].")
@click.option("--note", default="", help="Why (shown by `stockanomaly suppressions`).")
@click.option("--file", "path", type=OutputPath(),
              help="Suppressions file [default: STOCKANOMALY_SUPPRESSIONS, else ./suppressions.json].")
def suppress(symbol: str | None, detector: str | None, between: str | None, until_day: str | None, note: str,
             path: str | None) -> None:
    """Stop publishing anomalies that match a known pattern: every part given must match. Replay
    honours the file, and a running worker when STOCKANOMALY_SUPPRESSIONS names it (re-read when it
    changes); trades are judged as always, so state and the other anomalies' ids are unchanged.
    Incidents are grouped from the anomalies published: one whose earliest anomaly a rule holds back
    gets another id (labelled from such a replay, `evaluate --verdicts` still knows it)."""
    from adapters.files.suppressions import load_suppressions, save_suppressions
    from domain.suppressions import Suppression

    target = suppressions_path(path, writes=True)
    try:
        rule = Suppression.of(symbol, detector, between, until_day, note)
        rules = load_suppressions(target)
    except DomainError as exc:
        fail(str(exc))
    if any(r.id == rule.id for r in rules):
        fail(f"{target} already holds this rule (id {rule.id})")
    save_suppressions(target, rules + [rule])
    click.echo(f"suppression {rule.id} added to {target}")


@main.command(short_help="List the suppression rules in force (or remove one).")
@click.option("--remove", "remove_id", metavar="ID", help="Remove the rule with this id.")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
@click.option("--file", "path", type=click.Path(dir_okay=False),
              help="Suppressions file [default: STOCKANOMALY_SUPPRESSIONS, else ./suppressions.json].")
def suppressions(remove_id: str | None, as_json: bool, path: str | None) -> None:
    """List the suppression rules in force (or remove one)."""
    from adapters.files.suppressions import load_suppressions, save_suppressions

    target = suppressions_path(path)
    try:
        rules = load_suppressions(target)
    except DomainError as exc:
        fail(str(exc))
    if remove_id is not None:
        if not Path(target).exists():
            fail(f"{target} does not exist: there are no rules to remove (--file names another file)")
        # Hex, as `label` takes an id: in any case, spaces around it trimmed.
        removed = [r for r in rules if r.id.lower() == remove_id.strip().lower()]
        if not removed:
            fail(f"{target} holds no rule with id {remove_id!r}")
        save_suppressions(target, [r for r in rules if r not in removed])
        click.echo(f"suppression {removed[0].id} removed from {target}")
        return
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rules]))
        return
    if not rules:  # a mistyped --file reads as an empty one otherwise
        click.echo(f"no suppressions in {target}" if Path(target).exists() else
                   f"no suppressions: {target} does not exist (`stockanomaly suppress` creates it)")
        return
    from datetime import datetime
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("America/New_York")).date()  # a rule's last day is an exchange date
    for r in rules:
        d = r.to_dict()
        parts = [f"{k} {d[k]}" for k in ("symbol", "detector", "between", "until") if d[k]]
        # Past its last day a rule holds nothing live back, only replays of days up to it: said, not hidden.
        ended = " (ended)" if r.until is not None and r.until < today else ""
        click.echo(f"{r.id}  {', '.join(parts)}{ended}" + (f"  ({r.note})" if r.note else ""))


def verdicts_path(given: str | None, writes: bool = False) -> str:
    return file_setting(given, "verdicts", "verdicts.jsonl", writes)


@main.command(short_help="Record an analyst's verdict on an anomaly or incident.",
              options_metavar="--confirmed|--false-positive [OPTIONS]")
@click.argument("anomaly_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--confirmed", is_flag=True, help="It was worth an alert.")
@click.option("--false-positive", is_flag=True, help="It was not.")
@click.option("--note", default="", help="Why (kept with the verdict).")
@click.option("--file", "path", type=OutputPath(),
              help="Verdicts file [default: STOCKANOMALY_VERDICTS, else ./verdicts.jsonl].")
@click.option("--records", "records", type=click.Path(dir_okay=False),
              help="Where IDs are looked up (a whole one too): a replay's --out file, or the incidents file beside "
                   "it [default: STOCKANOMALY_OUT, else Elasticsearch, for short IDs].")
@click.option("--es-url", metavar="URL",
              help="Elasticsearch URL, for short IDs (given: whole ones too) [default: ELASTICSEARCH_URL, else "
                   "http://127.0.0.1:9200]; credentials as for `query`.")
def label(anomaly_ids: tuple[str, ...], confirmed: bool, false_positive: bool, note: str, path: str | None,
          records: str | None, es_url: str | None) -> None:
    """Record an analyst's verdict on anomalies or incidents: give one ID or several (the same verdict
    and note on each; a mistyped one writes none) and one of --confirmed and --false-positive. IDs are
    in the tables of `replay` and `query`, at the end of `tail`'s lines, in their --json, in a replay's
    --out file, and shown by `show`.

    An ID is the whole id or its first 8 or more hex digits (any case), when no other id starts with them
    (as git takes a commit's): those are looked up (--records), and the whole id is what is recorded. A
    whole id is looked up too in a --records file, STOCKANOMALY_OUT's file, or Elasticsearch named by
    --es-url (one none holds is refused); with none of those, it is recorded as given.

    The last verdict for an id counts (an incident's, for each of its anomalies with none of its
    own); `evaluate --verdicts` scores detectors against them."""
    from adapters.files.verdicts import append_verdicts
    from application.record_ids import resolve_record_id, typed_record_id
    from domain.model import is_record_id

    if confirmed == false_positive:
        fail("give --confirmed or --false-positive" if not confirmed else
             "give --confirmed or --false-positive, not both")
    verdict = "confirmed" if confirmed else "false_positive"
    then = "; nothing written" if len(anomaly_ids) > 1 else ""
    typed, bad = [], []
    for text in anomaly_ids:
        try:
            typed.append(typed_record_id(text))
        except ConfigError as exc:
            bad.append(str(exc))
    if bad:
        fail(bad[0] + (f" (and {len(bad) - 1} more ids)" if len(bad) > 1 else "") + then)
    target = verdicts_path(path, writes=True)
    # A whole id is looked up too where that costs no service the analyst did not name: a file of records
    # (a typo inside an id copied from it is refused, not recorded), or Elasticsearch by --es-url. Else it is
    # recorded as given, from wherever it was copied (Kibana: labelling needs no Elasticsearch reachable).
    whole_too = bool(records or es_url) or Path(file_setting(None, "out", "") or "").is_file()
    if whole_too or not all(map(is_record_id, typed)):
        typed = with_records(records, es_url, "--records",
                             lambda lookup: [resolve_record_id(t, lookup, whole_too) for t in typed], then,
                             looked_up="ids are looked up there; " if whole_too else "short ids are looked up there; ")
    ids = list(dict.fromkeys(typed))  # a short id and its whole one: one verdict
    try:
        append_verdicts(target, ids, verdict, note)
    except DomainError as exc:
        fail(str(exc))
    said = verdict.replace("_", " ")
    if len(ids) > LABEL_LISTED:  # a triage's hundreds (`jq ... | xargs stockanomaly label`): counted, not a line each
        click.echo(f"{len(ids):,} ids marked {said} in {target}: {named(ids, 2)}")
        return
    for anomaly_id in ids:
        click.echo(f"{anomaly_id} marked {said} in {target}")


LABEL_LISTED = 10  # ids `label` confirms a line each; more are counted


@main.command(short_help="Score detections against labels or analysts' verdicts.")
@click.argument("data", nargs=-1, metavar="DATA...")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False),
              help="Labels file [default: each DATA file's, beside it: m.dbn.zst -> m.labels.json].")
# A flag or an option: `label` writes to a default file, and `--verdicts` alone reads that one.
@click.option("--verdicts", is_flag=False, flag_value="", metavar="[FILE]",
              help="Score against analysts' verdicts (stockanomaly label) instead of generated labels. Without "
                   "FILE, those `label` wrote: STOCKANOMALY_VERDICTS, else ./verdicts.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the tables.")
@click.option("--thresholds", type=click.Path(exists=True, dir_okay=False),
              help="Calibrated thresholds file, as for replay [default: STOCKANOMALY_THRESHOLDS, else none].")
@click.option("--suppressions", "suppressions_file", type=click.Path(exists=True, dir_okay=False),
              help="With --verdicts: the suppression rules the labelled replay honoured, so that the incidents "
                   "they regrouped are known by their ids [default: STOCKANOMALY_SUPPRESSIONS, else "
                   "./suppressions.json].")
def evaluate(data: tuple[str, ...], labels: str | None, verdicts: str | None, as_json: bool,
             thresholds: str | None, suppressions_file: str | None) -> None:
    """Replay generated DATA and score detections against its labels: precision, recall, F1. With
    --verdicts, any DATA (real days too): per detector, how many detections analysts confirmed or
    called false positives, and the precision over those reviewed.

    The detectors scored are those STOCKANOMALY_DETECTORS names (unset: all); no suppression rule is
    honoured (an incident labelled from a replay under the rules, or under --suppressions FILE, is still
    known by its id)."""
    from adapters.databento.paths import SUPPORTED_SUFFIXES, expand_paths
    from adapters.synthetic import labels_path_for
    from application.evaluate import evaluate as score
    from application.evaluate import load_labels, merge_labels, render_text
    from entrypoints.container import build_container

    if verdicts and (verdicts.lower().endswith(SUPPORTED_SUFFIXES) or Path(verdicts).is_dir()):
        # `evaluate --verdicts day.csv`, the options first as the usage line has them: the flag alone, and
        # DATA taken for its FILE (verdicts are JSON lines, never a file of trades)
        data, verdicts = (verdicts, *data), ""
    if not data:
        raise click.UsageError("Missing argument 'DATA...'.")
    if verdicts is not None:
        if labels:  # it would be ignored: the scores are the analysts', not the labels'
            raise click.UsageError("give --labels (a generated market's) or --verdicts (analysts'), not both")
        evaluate_verdicts(data, verdicts_path(verdicts), as_json, thresholds, suppressions_file)
        return
    if suppressions_file:  # it would be ignored: labels score the detectors, which no rule holds back
        raise click.UsageError("--suppressions goes with --verdicts (it names the rules an analyst's replay "
                               "grouped incidents under); generated labels score the detectors without rules")
    if labels:
        labels_paths = [Path(labels)]
    else:  # each generated file's own labels, beside it
        try:
            labels_paths = [labels_path_for(path) for path in expand_paths(data)]
        except DomainError as exc:
            fail(str(exc))
    parts = []
    names = [labels_path.name.removesuffix(".labels.json") for labels_path in labels_paths]
    if len(set(names)) < len(names):  # d1/m.dbn.zst and d2/m.dbn.zst: each event's id is kept apart by its path
        names = [str(labels_path).removesuffix(".labels.json") for labels_path in labels_paths]
    for name, labels_path in zip(names, labels_paths):
        if not labels_path.exists():
            fail(f"no labels at {labels_path}; pass --labels (a generated market's), or --verdicts to score "
                 "the detections against analysts' verdicts instead (any data, real days too; alone, it reads "
                 f"those `label` wrote, to {verdicts_path(None)})")
        try:
            parts.append((name, load_labels(labels_path)))
        except ValueError as exc:  # not JSON, or not a labels file
            fail(f"{labels_path} is not a labels file written by `stockanomaly generate`: {exc}")
    truth = merge_labels(parts)
    try:  # a bad setting or thresholds file: one line, as for replay
        # The detectors are scored, not the analyst's rules: no suppression holds a detection back. And
        # replay's outputs are replay's: STOCKANOMALY_OUT / _DEAD_LETTERS had evaluate write them, unsaid.
        container = build_container(thresholds=thresholds, suppressions="", out="", dead_letters="")
        say_when_compiling()
        container.engine().warm_up()
    except DomainError as exc:
        fail(str(exc))
    source = file_source(data, int(container.config.chunk_size()))
    with progress_bar("evaluating", None, enabled=not as_json and err.is_terminal) as bar:
        try:
            summary = container.replay()(source, on_chunk=lambda t, a: bar.advance(bar.task_ids[0], len(t)))
        except DomainError as exc:
            fail(str(exc))
    source.check("scores against its labels would be meaningless")
    if "total_trades" in truth and int(truth["total_trades"]) != summary.trades:
        fail(f"the labels describe {int(truth['total_trades']):,} trades but DATA holds {summary.trades:,}: "
             f"they are not its labels ({', '.join(str(p) for p in labels_paths)})")
    # Another market with as many trades (another seed) has other symbols: its events would all read as missed.
    traded = container.state_store()
    strangers = sorted({str(event["symbol"]) for event in truth["events"] if event["symbol"] not in traded})
    if strangers:
        fail(f"the labels' events are on symbols DATA does not trade ({named(strangers, 5)}): they are not its labels "
             f"({', '.join(str(p) for p in labels_paths)})")
    say_if_no_threshold_applied("--thresholds", thresholds, traded)
    report = score(truth, container.collected_anomalies().anomalies, total_trades=summary.accepted)
    off = detectors_not_run(container.engine())
    if as_json:
        click.echo(json.dumps({**report.to_dict(), **({"detectors_not_run": off} if off else {})}))
    else:
        if off:  # above the tables whose zeros it explains
            click.echo(f"not run (STOCKANOMALY_DETECTORS): {', '.join(off)}; the events they are expected to "
                       "catch count as missed\n")
        click.echo(render_text(report))
        click.echo(f"\n{summary.trades:,} trades in {summary.seconds:.2f}s ({summary.trades_per_second:,.0f}/s)")


def evaluate_verdicts(data: tuple[str, ...], path: str, as_json: bool, thresholds: str | None,
                      named_rules: str | None) -> None:
    from adapters.files.verdicts import load_verdicts
    from application.evaluate import incidents_under, score_verdicts, with_incident_verdicts
    from entrypoints.container import build_container

    changed: dict[str, int] = {}  # ids whose verdicts disagree -> the line of the one that counts
    try:
        verdicts = load_verdicts(path, changed)
        if not verdicts:  # a replay of the whole DATA to print a table scored against nothing
            fail(f"{path} holds no verdicts (`stockanomaly label` writes them); nothing to score")
        rules_file = suppressions_path(named_rules)
        rules = rules_in_force(rules_file, named=named_rules is not None)  # a bad named file: said before the replay
        container = build_container(thresholds=thresholds, suppressions="", out="", dead_letters="")  # as above
        say_when_compiling()
        container.engine().warm_up()
        source = file_source(data, int(container.config.chunk_size()))
        container.replay()(source)
    except DomainError as exc:
        fail(str(exc))
    source.check("scores against the verdicts would be meaningless")
    say_if_no_threshold_applied("--thresholds", thresholds, container.state_store())
    found = container.collected_anomalies().anomalies
    if not found and not as_json:  # a table of zeros would not say why there is nothing to score
        click.echo(f"no detections in {', '.join(data)}: nothing to score against {counted(len(verdicts), 'verdict')} "
                   f"in {path}")
        return
    # The detectors are scored without rules, but an incident was labelled as a replay under them
    # grouped it: a rule holding back its earliest member gave it an id of its own. Both count.
    grouped = container.collected_incidents().incidents + incidents_under(rules, found)
    incidents = list({i.id: i for i in grouped}.values())
    per_anomaly, inherited = with_incident_verdicts(verdicts, incidents)
    table = score_verdicts(found, per_anomaly)
    on_incidents = len(set(verdicts) & {i.id for i in incidents})
    unknown = len(set(verdicts) - {a.id for a in found}) - on_incidents
    off = detectors_not_run(container.engine())
    # Incidents are regrouped under one file's rules: those of a replay under `replay --suppressions FILE`
    # are known once `--suppressions FILE` names it here too, which only this can tell the analyst.
    other_rules = f"incidents grouped under other suppression rules than {rules_file}'s (--suppressions names theirs)"
    if verdicts and unknown == len(verdicts):  # a table of unreviewed detections "scored against" verdicts that count for nothing
        not_run = f", by detectors not run (STOCKANOMALY_DETECTORS: {', '.join(off)})" if off else ""
        which = f"the verdict in {path} is not" if len(verdicts) == 1 else \
            f"none of the {len(verdicts):,} verdicts in {path} is"
        fail(f"{which} on an anomaly or incident this run found ({counted(len(found), 'anomaly', 'anomalies')}): "
             f"given on another file, under other thresholds{not_run}, or on {other_rules}; nothing to score")
    if as_json:
        click.echo(json.dumps({"by_detector": table, "verdicts_file": path, "verdicts": len(verdicts),
                               "verdicts_not_found": unknown,
                               "verdicts_on_incidents": on_incidents, "anomalies_judged_by_incident": inherited,
                               "verdicts_changed": len(changed), **({"detectors_not_run": off} if off else {})}))
        return
    scored = f"{len(verdicts) - unknown:,} of {len(verdicts):,} verdicts" if unknown else counted(len(verdicts), "verdict")
    click.echo(f"scored against {scored} in {path}")  # (chosen by `--verdicts` alone, too)
    click.echo(f"{'detector':<18}{'detections':>11}{'confirmed':>11}{'false pos.':>11}{'unreviewed':>11}{'precision':>11}")
    for name, row in table.items():
        precision = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        click.echo(f"{name:<18}{row['detections']:>11,}{row['confirmed']:>11,}{row['false_positive']:>11,}"
                   f"{row['unreviewed']:>11,}{precision:>11}")
    if on_incidents:
        click.echo(f"{_verdicts(on_incidents)} on incidents, counted for {counted(inherited, 'anomaly', 'anomalies')} "
                   "of theirs with no verdict of their own")
    if unknown:
        click.echo(f"{_verdicts(unknown)} on anomalies this run did not find: another file, other thresholds"
                   f"{', detectors not run' if off else ''}, or {other_rules}")
    if off:
        click.echo(f"not run (STOCKANOMALY_DETECTORS): {', '.join(off)}")
    if changed:  # relabelled (or two analysts disagree): the last line counts, as `label` says
        first_id, line = next(iter(changed.items()))
        click.echo(f"{'1 anomaly has' if len(changed) == 1 else f'{len(changed):,} anomalies have'} verdicts that "
                   f"disagree, the last counting ({first_id}: {path}, line {line}"
                   f"{'' if len(changed) == 1 else ', and more'})")


def rules_in_force(path: str, named: bool) -> Suppressions:
    """The suppression rules of `path`, as a replay under them honoured them. The default file (the
    variable's, or ./suppressions.json) unreadable: none, as no replay ran under it; a file `named` with
    --suppressions unreadable: a ConfigError, said in one line as replay says it."""
    from adapters.files.suppressions import SuppressionsUnreadable, load_suppressions

    try:
        return Suppressions(load_suppressions(path))
    except SuppressionsUnreadable:
        if named:
            raise
        return Suppressions([])


def _verdicts(n: int) -> str:
    return "1 verdict is" if n == 1 else f"{n:,} verdicts are"


CALIBRATE_LISTED = 20  # symbols calibrate lists, one line each; the rest are counted


@main.command(short_help="Learn per-symbol size thresholds from history.")
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", required=True, type=OutputPath(), help="Where to write thresholds.json.")
@click.option("--quantile", default=0.999, show_default=True, type=FiniteRange(0.5, 1.0, max_open=True), metavar="Q",
              help="The size quantile each symbol's threshold is a multiple of.")
@click.option("--multiple", default=8.0, show_default=True, type=FiniteRange(1.0), metavar="M",
              help="Threshold = this x the symbol's quantile size.")
@click.option("--min-trades", default=1000, show_default=True, type=click.IntRange(1), metavar="N",
              help="Symbols with fewer trades (auction crosses aside) get no threshold (the default rule judges them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the lines: every symbol's "
                                                      "threshold, busiest first, and those left to the default rule.")
def calibrate(paths: tuple[str, ...], out: str, quantile: float, multiple: float, min_trades: int,
              as_json: bool) -> None:
    """Learn per-symbol size thresholds from history, for `replay --thresholds` and the worker. The
    busiest symbols are listed, most trades first; the file written holds every symbol's, by name."""
    from adapters.files.thresholds import save_thresholds
    from application.calibrate import calibrate as learn

    check_outputs(paths, {}, {"--out": out})
    source = file_source(paths, 262_144)
    rejected: Counter[str] = Counter()
    too_few: dict[str, int] = {}
    with progress_bar("calibrating", None, enabled=not as_json and err.is_terminal):
        try:
            thresholds = learn(source, quantile=quantile, multiple=multiple, min_trades=min_trades,
                               rejected=rejected, too_few=too_few)
        except DomainError as exc:
            fail(str(exc))
    source.check(f"no thresholds written to {out} (they would come from part of the history)")
    if not thresholds.symbols:  # a file of none would judge everything by the default rule, silently
        fail(f"no symbol has --min-trades {min_trades:,} trades (auction crosses aside) in "
             f"{', '.join(paths)}: no thresholds written to {out}")
    save_thresholds(thresholds, out)
    # A line per symbol reads for a few; for a market (thousands) it buried the summary: the file has them all,
    # by name. Listed busiest first: the names an analyst watches, whose thresholds judge the most prints
    # and rest on the most history (alphabetically, a market's first 20 were whichever began with A).
    listed = sorted(thresholds.symbols.items(), key=lambda st: (-st[1].trades, st[0]))
    if as_json:  # every symbol (the lines list the busiest few), keyed as the file keys them
        click.echo(json.dumps({
            "source": list(paths), "out": out, "quantile": quantile, "multiple": multiple, "min_trades": min_trades,
            "symbols": [{"symbol": symbol, "size_quantile_value": t.size_quantile_value,
                         "size_threshold": t.size_threshold, "trades": t.trades} for symbol, t in listed],
            "too_few": dict(sorted(too_few.items(), key=lambda st: (-st[1], st[0]))),
            "dead_letters": dict(sorted(rejected.items()))}))  # as replay --json names what it rejected
        return
    for symbol, t in listed[:CALIBRATE_LISTED]:
        click.echo(f"{symbol:<10} p{quantile * 100:g} {t.size_quantile_value:>12,.0f}  "
                   f"threshold {t.size_threshold:>12,.0f}  ({t.trades:,} trades, auction crosses aside)")
    if len(listed) > CALIBRATE_LISTED:
        click.echo(f"... and {len(listed) - CALIBRATE_LISTED:,} more, none busier (every symbol's is in {out})")
    count = len(thresholds.symbols)
    click.echo(f"wrote thresholds for {count:,} symbol{'' if count == 1 else 's'} to {out}")
    if too_few:  # left to the default rule: say so, or a market's thin symbols go missing in silence
        click.echo(f"no threshold for {len(too_few):,} symbol{'' if len(too_few) == 1 else 's'} with fewer than "
                   f"--min-trades {min_trades:,} trades (auction crosses aside): the default rule judges them")
    if rejected:  # as replay's summary says them (replay --dead-letters shows each with its reason)
        # Duplicates are what reading one day twice (a copy, a CSV and a DBN of it) gives: say so.
        why = " (duplicate: a trade read more than once, as from one day in two files, counts once)" \
            if rejected["duplicate"] else ""
        click.echo("rejected, not counted: " + ", ".join(f"{k} {v:,}" for k, v in sorted(rejected.items())) + why)


# Registers the streaming commands on `main`; imported last because it imports from here.


def open_records(out_file: str | None, es_url: str | None, option: str) -> tuple[RecordLookup, str]:
    """Where `show` and `label` look ids up, and the words for it: a replay's --out file (`option`
    names it; default STOCKANOMALY_OUT), else Elasticsearch."""
    from pathlib import Path

    # The file replay wrote by default is the one to look in: `replay` then `show ID` went to Elasticsearch.
    if not out_file:
        out_file = file_setting(None, "out", "") or None
        if out_file and not Path(out_file).exists():
            fail(f"STOCKANOMALY_OUT names {out_file}, which does not exist yet (replay writes it; {option} names another)")
    if out_file:
        from adapters.files.records import ReplayRecords

        return ReplayRecords(out_file), out_file
    from adapters.elasticsearch import ElasticsearchSettings
    from adapters.elasticsearch import connect as connect_elasticsearch
    from adapters.elasticsearch.query import ElasticsearchRecords

    config = settings_or_fail(elasticsearch_url=es_url)
    settings = ElasticsearchSettings.from_env(url=config.elasticsearch_url or "http://127.0.0.1:9200",
                                              request_timeout=10.0)
    lookup = ElasticsearchRecords(connect_elasticsearch(settings), anomalies_prefix=config.es_index_prefix,
                                  incidents_prefix=config.es_incidents_prefix, where=settings.safe_url)
    return lookup, f"Elasticsearch at {settings.safe_url} ({config.es_index_prefix}-*, {config.es_incidents_prefix}-*)"


def with_records(out_file: str | None, es_url: str | None, option: str, use: Callable[[RecordLookup], T],
                 then: str = "", looked_up: str = "") -> T:
    """`use(lookup)` over the records `open_records` opens, each way it can fail said in one line (with
    `then` after it: what the failure left undone; `looked_up`: why Elasticsearch was asked at all)."""
    from adapters.elasticsearch import ElasticsearchAdapterError, ElasticsearchUnavailable
    from application.record_ids import IdNotResolved

    where = out_file or ""
    try:
        lookup, where = open_records(out_file, es_url, option)
        return use(lookup)
    except IdNotResolved as exc:
        fail(exc.said(where) + then)
    except ElasticsearchUnavailable as exc:  # an embedded run's ids are in its --out file, not there
        fail(f"{exc} ({looked_up}a replay's anomalies and incidents: {option}, its --out file){then}")
    except (DomainError, ElasticsearchAdapterError, ValueError) as exc:
        fail(str(exc) + then)


@main.command(short_help="One anomaly or incident, with the tape around it.")
@click.argument("record_id", metavar="ID")
@click.option("--file", "out_file", type=click.Path(dir_okay=False),
              help="A replay's --out file, or the incidents file written beside it (both are read) [default: "
                   "STOCKANOMALY_OUT, where replay writes without --out, else Elasticsearch].")
@click.option("--es-url", metavar="URL",
              help="Elasticsearch URL [default: ELASTICSEARCH_URL, else http://127.0.0.1:9200]; "
                   "credentials as for `query`.")
@click.option("--json", "as_json", is_flag=True, help="Print the anomaly, its incident and its tape as JSON.")
def show(record_id: str, out_file: str | None, es_url: str | None, as_json: bool) -> None:
    """One anomaly or incident by its id, with the tape around it: the trades before and after the
    print it was found at (an incident: around its peak member), from a replay's --out file or from
    the indices the indexer writes. ID: the whole id or its first 8 or more hex digits (any case), when
    no other id there starts with them (as git takes a commit's)."""
    from application.show import ShowRecord
    from entrypoints.render import render_shown

    shown = with_records(out_file, es_url, "--file", lambda lookup: ShowRecord(lookup)(record_id))
    if as_json:
        click.echo(json.dumps({"kind": shown.kind, "anomaly": shown.anomaly.to_dict() if shown.anomaly else None,
                               "incident": shown.incident.to_dict() if shown.incident else None,
                               "members": [m.to_dict() for m in shown.members],
                               "absent_members": list(shown.absent),
                               "before": [p.to_dict() for p in shown.before],
                               "after": None if shown.after is None else [p.to_dict() for p in shown.after]}))
        return
    render_shown(shown)
