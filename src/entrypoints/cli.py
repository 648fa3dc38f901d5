"""The `stockanomaly` command: replay, generate, evaluate and calibrate."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from domain.errors import DomainError
from entrypoints.logging_setup import configure_logging

log = structlog.get_logger()
err = Console(stderr=True)

SAMPLE = {"symbols": 8, "trades": 400_000, "seed": 7}


@contextmanager
def progress_bar(label: str, total: int | None, enabled: bool) -> Iterator[Progress]:
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=not enabled, transient=True) as bar:
        bar.add_task(label, total=total, rate="")
        yield bar


def fail(message: str) -> None:
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(log_level: str) -> None:
    """Real-time, explainable stock trade anomaly detection over Databento data."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(?!domain|application|adapters|entrypoints)")
    configure_logging(log_level)


def file_source(paths: tuple[str, ...], chunk_size: int) -> Any:
    from adapters.databento import DatabentoFileSource

    try:
        return DatabentoFileSource(list(paths), chunk_size=chunk_size)
    except DomainError as exc:
        fail(str(exc))


def sample_source(chunk_size: int) -> Any:
    from adapters.memory import InMemoryTradeSource
    from adapters.synthetic import generate_market

    market = generate_market(symbols=SAMPLE["symbols"], trades=SAMPLE["trades"], seed=SAMPLE["seed"])
    return InMemoryTradeSource(market.trades, chunk_size=chunk_size)


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the readable summary.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write every anomaly as JSON lines to this file.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a self-contained HTML report.")
@click.option("--dead-letters", type=click.Path(dir_okay=False), help="Write rejected records as JSON lines.")
@click.option("--thresholds", type=click.Path(exists=True, dir_okay=False), help="Calibrated thresholds file.")
@click.option("--detectors", help="Comma-separated detectors to run (default: all).")
@click.option("--top", default=10, show_default=True, help="How many top anomalies to show.")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve Prometheus metrics on this port while replaying (address: STOCKANOMALY_METRICS_ADDR).")
def replay(paths: tuple[str, ...], as_json: bool, out: str | None, report: str | None, dead_letters: str | None,
           thresholds: str | None, detectors: str | None, top: int, metrics_port: int | None) -> None:
    """Run the detection core in-process over Databento files (DBN or CSV, plain or .zst, globs,
    directories). With no PATH it runs on a built-in synthetic sample with injected anomalies."""
    from entrypoints.container import build_container

    try:
        container = build_container(out=out, dead_letters=dead_letters, thresholds=thresholds, detectors=detectors,
                                    **({"metrics": "prometheus", "metrics_port": metrics_port}
                                       if metrics_port is not None else {}))
        if metrics_port is not None:
            try:
                container.metrics_server().start()
            except OSError as exc:
                fail(f"cannot serve metrics on port {metrics_port}: {exc}")
        chunk_size = int(container.config.chunk_size())
        source = file_source(paths, chunk_size) if paths else sample_source(chunk_size)
        use_case = container.replay(top_n=top)
    except DomainError as exc:
        fail(str(exc))
    bars = None
    if report:
        from adapters.report import BarCollector

        bars = BarCollector()
    with progress_bar("replaying", None, enabled=not as_json and err.is_terminal) as bar:
        def on_chunk(trades: Any, anomalies: Any) -> None:
            bar.advance(bar.task_ids[0], len(trades))
            if bars is not None:
                bars.add(trades)

        try:
            summary = use_case(source, on_chunk=on_chunk)
        except DomainError as exc:
            fail(str(exc))
    container.anomaly_sink().close()
    container.dead_letter_sink().close()
    result = summary.to_dict()
    result["source"] = list(paths) or [f"built-in sample ({SAMPLE['symbols']} symbols, seed {SAMPLE['seed']})"]
    if report and bars is not None:
        from adapters.report import write_html_report

        write_html_report(report, bars, container.collected_anomalies().anomalies, result)
    log.info("replay_finished", trades=summary.trades, anomalies=summary.anomalies, seconds=round(summary.seconds, 3))
    if as_json:
        click.echo(json.dumps(result))
    else:
        from entrypoints.render import render_replay

        render_replay(result, out_path=out, report=report, dead_letters=dead_letters)


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--symbols", default=20, show_default=True, type=click.IntRange(1, 5000))
@click.option("--trades", default=1_000_000, show_default=True, type=click.IntRange(1000))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--date", default="2025-03-03", show_default=True, help="Trading day (YYYY-MM-DD).")
def generate(out: str, symbols: int, trades: int, seed: int, date: str) -> None:
    """Write a synthetic market with labelled, injected anomalies as DBN (labels beside it)."""
    from adapters.synthetic import generate as write_market
    from adapters.synthetic import labels_path_for

    if not (out.endswith(".dbn") or out.endswith(".dbn.zst")):
        fail(f"OUT must end with .dbn or .dbn.zst, got {out!r}")
    with progress_bar("generating", None, enabled=err.is_terminal):
        result = write_market(out, symbols=symbols, trades=trades, seed=seed, date=date)
    click.echo(f"wrote {result.total_trades:,} trades for {symbols} symbols to {out}")
    click.echo(f"wrote {len(result.events)} labelled anomalies to {labels_path_for(out)}")


@main.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), help="Labels file (default: beside DATA).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--thresholds", type=click.Path(exists=True, dir_okay=False))
def evaluate(data: tuple[str, ...], labels: str | None, as_json: bool, thresholds: str | None) -> None:
    """Replay generated DATA and score detections against its labels: precision, recall, F1."""
    from adapters.synthetic import labels_path_for
    from application.evaluate import evaluate as score
    from application.evaluate import load_labels, render_text
    from entrypoints.container import build_container

    labels_path = Path(labels) if labels else labels_path_for(data[0])
    if not labels_path.exists():
        fail(f"no labels at {labels_path}; pass --labels")
    truth = load_labels(labels_path)
    container = build_container(thresholds=thresholds)
    source = file_source(data, int(container.config.chunk_size()))
    with progress_bar("evaluating", None, enabled=not as_json and err.is_terminal) as bar:
        summary = container.replay()(source, on_chunk=lambda t, a: bar.advance(bar.task_ids[0], len(t)))
    report = score(truth, container.collected_anomalies().anomalies, total_trades=summary.accepted)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(render_text(report))
        click.echo(f"\n{summary.trades:,} trades in {summary.seconds:.2f}s ({summary.trades_per_second:,.0f}/s)")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write thresholds.json.")
@click.option("--quantile", default=0.999, show_default=True, type=click.FloatRange(0.5, 1.0, max_open=True))
@click.option("--multiple", default=8.0, show_default=True, type=click.FloatRange(1.0))
@click.option("--min-trades", default=1000, show_default=True, type=click.IntRange(1))
def calibrate(paths: tuple[str, ...], out: str, quantile: float, multiple: float, min_trades: int) -> None:
    """Learn per-symbol size thresholds from history, for `replay --thresholds` and the worker."""
    from adapters.files.thresholds import save_thresholds
    from application.calibrate import calibrate as learn

    source = file_source(paths, 262_144)
    with progress_bar("calibrating", None, enabled=err.is_terminal):
        thresholds = learn(source, quantile=quantile, multiple=multiple, min_trades=min_trades)
    save_thresholds(thresholds, out)
    for symbol, t in sorted(thresholds.symbols.items()):
        click.echo(f"{symbol:<10} p{quantile * 100:g} {t.size_quantile_value:>12,.0f}  "
                   f"threshold {t.size_threshold:>12,.0f}  ({t.trades:,} trades)")
    click.echo(f"wrote thresholds for {len(thresholds.symbols)} symbols to {out}")


@main.command()
@click.option("--symbol", "symbols", multiple=True, help="Only this symbol (repeatable, any case).")
@click.option("--detector", "detectors", multiple=True, help="Only this detector (repeatable).")
@click.option("--since", help="From this event time: ISO 8601 (2025-05-05T13:00:00Z), integer ns, or an age (30m, 1h, 7d).")
@click.option("--until", help="Before this event time (same forms as --since).")
@click.option("--min-score", type=float, help="Only anomalies scoring at least this.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--order", default="time", show_default=True, type=click.Choice(["time", "score"]),
              help="Newest first, or highest score first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of anomalies.")
@click.option("--es-url", envvar="ELASTICSEARCH_URL", default="http://127.0.0.1:9200", show_default=True,
              show_envvar=True, help="Elasticsearch URL; credentials come from ELASTICSEARCH_USERNAME/"
                                     "ELASTICSEARCH_PASSWORD or ELASTICSEARCH_API_KEY.")
@click.option("--index", "index_prefix", default="stockanomaly-anomalies", show_default=True,
              help="Index prefix (indices are <prefix>-YYYY.MM.DD).")
def query(symbols: tuple[str, ...], detectors: tuple[str, ...], since: str | None, until: str | None,
          min_score: float | None, limit: int, order: str, as_json: bool, es_url: str, index_prefix: str) -> None:
    """Search the anomalies the workers stored in Elasticsearch."""
    from rich.table import Table

    from adapters.elasticsearch import ElasticsearchAdapterError, ElasticsearchAnomalyQuery, ElasticsearchSettings
    from adapters.elasticsearch import connect as connect_elasticsearch
    from application.query import QueryAnomalies
    from entrypoints.render import ts_text

    settings = ElasticsearchSettings.from_env(url=es_url, request_timeout=10.0)
    try:
        store = ElasticsearchAnomalyQuery(connect_elasticsearch(settings), index_prefix=index_prefix,
                                          where=settings.safe_url)
    except ValueError as exc:
        fail(str(exc))
    try:
        found = QueryAnomalies(store)(symbols=symbols, detectors=[d for spec in detectors for d in spec.split(",") if d],
                                      since=since, until=until, min_score=min_score, limit=limit, order=order)
    except (DomainError, ElasticsearchAdapterError) as exc:
        fail(str(exc))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in found]))
        return
    if not found:
        click.echo(f"no anomalies in {index_prefix}-* match")
        return
    table = Table(title=f"{len(found)} anomalies", title_justify="left")
    for col in ("time (UTC)", "symbol", "detector", "score"):
        table.add_column(col, no_wrap=True, justify="right" if col == "score" else "left")
    table.add_column("reason", overflow="fold", ratio=1)
    for a in found:
        table.add_row(ts_text(a.ts_event), a.symbol, a.detector, f"{a.score:.2f}", a.reason)
    Console().print(table)


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--live", is_flag=True, help="Read the Databento live feed (API key from DATABENTO_API_KEY).")
@click.option("--dataset", default="XNAS.ITCH", show_default=True, help="Live: dataset.")
@click.option("--schema", default="trades", show_default=True,
              type=click.Choice(["trades", "tbbo", "mbp-1", "mbp-10"]), help="Live: schema carrying the trades.")
@click.option("--symbols", default="ALL_SYMBOLS", show_default=True, help="Live: comma-separated symbols.")
@click.option("--bootstrap", envvar="KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092", show_default=True,
              show_envvar=True, help="Kafka bootstrap servers.")
@click.option("--topic", envvar="STOCKANOMALY_TRADES_TOPIC", default="trades", show_default=True, show_envvar=True)
@click.option("--dlq-topic", envvar="STOCKANOMALY_DLQ_TOPIC", default="trades.dlq", show_default=True,
              show_envvar=True, help="Where rejected source records go (raw bytes; reason/detail/origin headers).")
# 20,000 trades x 48 bytes stays under Kafka's default 1 MiB message limit.
@click.option("--batch-trades", default=2_000, show_default=True, type=click.IntRange(1, 20_000),
              help="Most trades per Kafka message.")
@click.option("--pace", default="max", show_default=True,
              help="Files: max, realtime (reproduce event-time gaps) or xN (N times faster than realtime).")
@click.option("--partitions", envvar="STOCKANOMALY_PARTITIONS", default=4, show_default=True,
              type=click.IntRange(1), help="Partitions of the topics when this creates them.")
@click.option("--replication-factor", default=1, show_default=True, type=click.IntRange(1),
              help="Replication factor of the topics when this creates them.")
@click.option("--compression", default="none", show_default=True,
              type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]),
              help="Kafka compression (snappy, lz4 and zstd need the cramjam package).")
@click.option("--flush-ms", default=50, show_default=True, type=click.IntRange(1),
              help="Live: the longest a trade waits for its message to fill.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def ingest(paths: tuple[str, ...], live: bool, dataset: str, schema: str, symbols: str, bootstrap: str, topic: str,
           dlq_topic: str, batch_trades: int, pace: str, partitions: int, replication_factor: int, compression: str,
           flush_ms: int, as_json: bool) -> None:
    """Publish Databento trades (files, globs, directories, or --live) to Kafka, keyed by symbol, as
    compact per-symbol micro-batches (docs/wire-format.md)."""
    import asyncio

    from aiokafka.errors import KafkaError

    from adapters.kafka.producer import KafkaTradePublisher
    from application.ingest import IngestSummary, IngestTrades, parse_pace

    if live == bool(paths):
        fail("give PATHs (files, globs, directories) or --live, not both" if live else
             "give one or more PATHs (files, globs, directories) or --live")
    try:
        speed = parse_pace(pace)
        if live:
            from adapters.kafka.databento_live import DatabentoLiveConnector, DatabentoLiveSource

            if speed is not None:
                fail("--pace applies to files: the live feed arrives in real time")
            names = [s.strip() for s in symbols.split(",") if s.strip()]
            source: Any = DatabentoLiveSource(DatabentoLiveConnector.from_env(), dataset, schema,
                                              names if names != ["ALL_SYMBOLS"] else "ALL_SYMBOLS",
                                              flush_trades=batch_trades, flush_seconds=flush_ms / 1000)
        else:
            source = file_source(paths, 65_536)
        publisher = KafkaTradePublisher(bootstrap, topic, dlq_topic, partitions=partitions,
                                        replication_factor=replication_factor, compression=compression)
    except DomainError as exc:
        fail(str(exc))
    latest = IngestSummary()

    async def run(on_progress: Any) -> IngestSummary:
        async with publisher:
            return await IngestTrades(publisher, batch_trades=batch_trades, pace=speed)(source, on_progress)

    interrupted = False
    with progress_bar("ingesting", None, enabled=not as_json and err.is_terminal) as bar:
        def on_progress(summary: IngestSummary) -> None:
            nonlocal latest
            latest = summary
            bar.update(bar.task_ids[0], completed=summary.trades,
                       rate=f"{summary.trades_per_second:,.0f} trades/s")

        try:
            latest = asyncio.run(run(on_progress))
        except DomainError as exc:
            fail(str(exc))
        except KafkaError as exc:
            fail(f"Kafka at {bootstrap}: {exc}")
        except KeyboardInterrupt:
            interrupted = True
    result = latest.to_dict() | {"topic": topic, "dlq_topic": dlq_topic, "interrupted": interrupted}
    log.info("ingest_finished", **result)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"ingested {latest.trades:,} trades in {latest.messages:,} messages to {topic} in "
                   f"{latest.seconds:.2f}s ({latest.trades_per_second:,.0f} trades/s); "
                   f"{latest.dead_letters:,} dead letters to {dlq_topic}" + (" (interrupted)" if interrupted else ""))


if __name__ == "__main__":
    sys.exit(main())
