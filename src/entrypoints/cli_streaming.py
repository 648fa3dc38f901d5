"""The `stockanomaly` commands over Kafka and Elasticsearch: ingest, decode, tail, reindex, notify, query."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import click

from domain.detectors import DETECTOR_NAMES
from domain.errors import DomainError
from entrypoints.cli import (FiniteRange, OutputPath, err, fail, file_source, log, main, progress_bar,
                             say_when_compiling, service_log_level)
from entrypoints.settings import Settings, check_http_url, check_topic, load_settings


# Each setting a command takes as an option, and that option (what a bad value's error names).
FLAG_OF = {"kafka_bootstrap_servers": "--bootstrap", "elasticsearch_url": "--es-url", "dlq_topic": "--dlq-topic",
           "partitions": "--partitions", "notify_min_severity": "--min-severity",
           "notify_per_symbol_seconds": "--per-symbol-seconds"}


def settings_or_fail(flags: Mapping[str, str] | None = None, /, **values: object) -> Settings:
    """The settings with the options given (None: not given) over the environment: the one source the
    worker and the indexer read too, so a command and a worker agree on topics, partitions and indices.
    `flags` names the options whose setting is not in FLAG_OF (or is another option here)."""
    try:
        return load_settings({**FLAG_OF, **(flags or {})}, **values)
    except DomainError as exc:
        fail(str(exc))


@main.command(short_help="Search the anomalies (or incidents) in Elasticsearch.")
@click.option("--symbol", "symbols", metavar="SYMBOL", multiple=True, help="Only this symbol (repeatable, any case).")
@click.option("--detector", "detectors", multiple=True, metavar="NAME",
              help=f"Only this detector (repeatable): {', '.join(DETECTOR_NAMES)}.")
@click.option("--since", metavar="TIME", help="From this event time: ISO 8601 (2025-05-05T13:00:00Z), integer ns, or an age (30m, 1h, 7d).")
@click.option("--until", metavar="TIME", help="Before this event time (same forms as --since).")
@click.option("--min-score", type=FiniteRange(min=0), metavar="SCORE", help="Only anomalies scoring at least this.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), metavar="N",
              help="Show at most N (the title then says how many match in all).")
@click.option("--order", default="time", show_default=True, type=click.Choice(["time", "score"]),
              help="Newest first, or highest score first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the anomalies (or incidents).")
@click.option("--es-url", metavar="URL",
              help="Elasticsearch URL [default: ELASTICSEARCH_URL, else http://127.0.0.1:9200]; credentials come "
                   "from ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD or ELASTICSEARCH_API_KEY.")
@click.option("--index", "index_prefix", metavar="PREFIX", help="Index prefix, indices being <prefix>-YYYY.MM.DD "
                                              "[default: STOCKANOMALY_ES_INDEX_PREFIX, else stockanomaly-anomalies; "
                                              "with --incidents STOCKANOMALY_ES_INCIDENTS_PREFIX, else "
                                              "stockanomaly-incidents].")
@click.option("--incidents", is_flag=True, help="Search incidents instead (--detector: any of theirs; times: their start).")
def query(symbols: tuple[str, ...], detectors: tuple[str, ...], since: str | None, until: str | None,
          min_score: float | None, limit: int, order: str, as_json: bool, es_url: str | None,
          index_prefix: str | None, incidents: bool) -> None:
    """Search the anomalies (or incidents) the workers stored in Elasticsearch."""
    from adapters.elasticsearch import ElasticsearchAdapterError, ElasticsearchAnomalyQuery, ElasticsearchSettings
    from adapters.elasticsearch import connect as connect_elasticsearch
    from application.query import QueryAnomalies
    from entrypoints.render import anomalies_table, console, incidents_table

    from adapters.elasticsearch.mapping import ANOMALIES, INCIDENTS

    config = settings_or_fail({"es_incidents_prefix": "--index", "es_index_prefix": "--index"},
                              elasticsearch_url=es_url,
                              **{"es_incidents_prefix" if incidents else "es_index_prefix": index_prefix})
    index_prefix = config.es_incidents_prefix if incidents else config.es_index_prefix
    settings = ElasticsearchSettings.from_env(url=config.elasticsearch_url or "http://127.0.0.1:9200",
                                              request_timeout=10.0)
    try:
        store = ElasticsearchAnomalyQuery(connect_elasticsearch(settings), index_prefix=index_prefix,
                                          where=settings.safe_url, kind=INCIDENTS if incidents else ANOMALIES)
    except ValueError as exc:
        fail(str(exc))
    try:
        matches = QueryAnomalies(store)(symbols=symbols, detectors=[d for spec in detectors for d in spec.split(",") if d],
                                        since=since, until=until, min_score=min_score, limit=limit, order=order)
    except (DomainError, ElasticsearchAdapterError) as exc:
        fail(str(exc))
    finally:
        store.close()
    found, kind = matches.found, "incidents" if incidents else "anomalies"
    title = (f"{len(found):,} of {matches.total:,} {kind} (the first {len(found):,} by --order {order}: raise "
             "--limit or narrow the search)" if matches.cut else f"{len(found):,} {kind}")
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in found]))
        if matches.cut:  # (said apart from the JSON, which a script reads whole)
            click.echo(title, err=True)
        return
    if not found:
        click.echo(f"no {kind} in {index_prefix}-* match")
        return
    shown = console()
    table = incidents_table if incidents else anomalies_table
    shown.print(table([x.to_dict() for x in found], title, shown.width))


@main.command(short_help="Publish Databento trades (files or live) to Kafka.")
@click.argument("paths", nargs=-1)
@click.option("--live", is_flag=True, help="Read the Databento live feed (API key from DATABENTO_API_KEY).")
@click.option("--dataset", metavar="DATASET", default="XNAS.ITCH", show_default=True, help="Live: dataset.")
@click.option("--schema", default="trades", show_default=True,
              type=click.Choice(["trades", "tbbo", "mbp-1", "mbp-10"]), help="Live: schema carrying the trades.")
@click.option("--symbols", metavar="SYMBOLS", default="ALL_SYMBOLS", show_default=True, help="Live: comma-separated symbols.")
@click.option("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers [default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092].")
@click.option("--topic", metavar="TOPIC", help="Trades topic [default: STOCKANOMALY_TRADES_TOPIC, else trades].")
@click.option("--dlq-topic", metavar="TOPIC", help="Where rejected source records go (raw bytes; reason/detail/origin headers) "
                                  "[default: STOCKANOMALY_DLQ_TOPIC, else trades.dlq].")
@click.option("--anomalies-topic", metavar="TOPIC", help="Created with the others when missing (the worker writes it) "
                                        "[default: STOCKANOMALY_ANOMALIES_TOPIC, else anomalies].")
@click.option("--incidents-topic", metavar="TOPIC", help="Created with the others when missing (the worker writes it) "
                                        "[default: STOCKANOMALY_INCIDENTS_TOPIC, else incidents].")
# 20,000 trades x 48 bytes stays under Kafka's default 1 MiB message limit.
@click.option("--batch-trades", default=2_000, show_default=True, type=click.IntRange(1, 20_000), metavar="N",
              help="Most trades per Kafka message.")
@click.option("--pace", metavar="PACE", default="max", show_default=True,
              help="Files: max, realtime (reproduce event-time gaps) or xN (N times faster than realtime).")
@click.option("--partitions", type=click.IntRange(1), metavar="N",
              help="Partitions of the topics when this creates them [default: STOCKANOMALY_PARTITIONS, else 4].")
@click.option("--replication-factor", type=click.IntRange(1, 32), metavar="N",
              help="Replication factor of the topics when this creates them "
                   "[default: STOCKANOMALY_REPLICATION_FACTOR, else 1].")
@click.option("--compression", default="none", show_default=True,
              type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]),
              help="Kafka compression (snappy, lz4 and zstd need the cramjam package).")
@click.option("--flush-ms", default=50, show_default=True, type=click.IntRange(1), metavar="MS",
              help="Live: the longest a trade waits for its message to fill.")
@click.option("--resume", is_flag=True,
              help="Files: pick up an interrupted ingest of the same files to the same topic. Each partition's "
                   "last message says which of the files' trades it holds; those are skipped (said on stderr), "
                   "the rest sent. Refused, before sending anything, when the topic ends with other data.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object, also when Kafka fails after something was sent (its "
                   "`failed` says why, as the error line does).")
def ingest(paths: tuple[str, ...], live: bool, dataset: str, schema: str, symbols: str, bootstrap: str | None,
           topic: str | None, dlq_topic: str | None, anomalies_topic: str | None, incidents_topic: str | None,
           batch_trades: int, pace: str,
           partitions: int | None, replication_factor: int | None, compression: str, flush_ms: int,
           resume: bool, as_json: bool) -> None:
    """Publish Databento trades (files, globs, directories, or --live) to Kafka as compact micro-batches:
    one STB2 message per partition, holding the runs of its symbols (docs/wire-format.md).

    An interrupted file ingest (Ctrl-C, a crash, Kafka gone) is resumed by running the same command
    with --resume: what the topic holds already is skipped, nothing is sent twice or lost.
    """
    import asyncio
    import contextlib
    import signal

    from aiokafka.errors import KafkaError

    from adapters.kafka.errors import AWAY_HINT, broker_away, said
    from adapters.kafka.producer import KafkaTradePublisher
    from application.ingest import IngestSummary, IngestTrades, parse_pace

    config = settings_or_fail({"trades_topic": "--topic", "anomalies_topic": "--anomalies-topic",
                               "incidents_topic": "--incidents-topic", "replication_factor": "--replication-factor"},
                              kafka_bootstrap_servers=bootstrap, trades_topic=topic, dlq_topic=dlq_topic,
                              anomalies_topic=anomalies_topic, incidents_topic=incidents_topic, partitions=partitions,
                              replication_factor=replication_factor)
    if live == bool(paths):
        fail("give PATHs (files, globs, directories) or --live, not both" if live else
             "give one or more PATHs (files, globs, directories) or --live")
    if live and resume:
        fail("--resume applies to files: the live feed has no place to resume from")
    files: Any = None  # the files read plainly, for resume's look-up
    source_id: str | None = None  # their fingerprint, on every message (adapters.kafka.marks)
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
            from adapters.databento.source import FILES_READ_AHEAD_TRADES, DatabentoFileSource

            # Reading is what bounds ingest: several files are decoded side by side.
            source = file_source(paths, 65_536, read_ahead=FILES_READ_AHEAD_TRADES)
            files = DatabentoFileSource(list(paths))  # the same trades, read plainly: resume's look-up
            source_id = files.fingerprint()
        publisher = KafkaTradePublisher(config.kafka_bootstrap_servers, config.trades_topic, config.dlq_topic,
                                        partitions=config.partitions, replication_factor=config.replication_factor,
                                        compression=compression, anomalies_topic=config.anomalies_topic,
                                        incidents_topic=config.incidents_topic,
                                        message_trades=batch_trades)
        ingest_trades = IngestTrades(publisher, batch_trades=batch_trades, pace=speed,
                                     source_id=source_id)
    except DomainError as exc:
        fail(str(exc))
    except OSError as exc:  # a file gone between naming it and its size being read
        fail(f"{exc.filename}: {exc.strerror}")

    stopped_by: list[int] = []  # the signal that ended the run, if one did

    async def run(on_progress: Any) -> IngestSummary:
        # SIGTERM (docker stop, systemd) ends it as Ctrl-C does: what was sent is flushed and summed up.
        main_task = asyncio.current_task()
        assert main_task is not None

        def terminate() -> None:
            stopped_by.append(signal.SIGTERM)
            main_task.cancel()

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
        except (RuntimeError, ValueError):
            pass  # not the main thread (ingest called from a test or a tool): signals are its host's
        async with publisher:
            if resume:
                from adapters.kafka.ingest_letters import KafkaIngestDeadLetters
                from adapters.kafka.tails import KafkaTradeLogTails
                from application.resume import plan_resume

                tails = KafkaTradeLogTails(config.kafka_bootstrap_servers, config.trades_topic, config.partitions)
                assert source_id is not None
                ingest_trades.resume = await plan_resume(
                    tails, files, source_id, config.trades_topic,
                    KafkaIngestDeadLetters(config.kafka_bootstrap_servers, config.dlq_topic))
                click.echo(ingest_trades.resume.describe(), err=True)
                log.info("ingest_resumed", skipped=ingest_trades.resume.skipped, source=source_id,
                         partitions_reached=sorted(ingest_trades.resume.reached))
            return await ingest_trades(source, on_progress)

    from adapters.kafka.codec import _symbol_tables  # the last of the kernels a first message compiles

    say_when_compiling(_symbol_tables, "the ingest's kernels", "about 10 s")
    interrupted = False
    failed: str | None = None  # Kafka's error, after something was sent: --json still says what was
    with progress_bar("ingesting", None, enabled=not as_json and err.is_terminal) as bar:
        def on_progress(summary: IngestSummary) -> None:
            bar.update(bar.task_ids[0], completed=summary.trades,
                       rate=f"{summary.trades_per_second:,.0f} trades/s")

        try:
            asyncio.run(run(on_progress))
        except DomainError as exc:
            fail(str(exc))
        except KafkaError as exc:
            sent = ingest_trades.summary.messages  # (a first connection's failure names its hosts already)
            failed = (f"Kafka at {config.kafka_bootstrap_servers}: {said(exc)}"
                      + (f"; {AWAY_HINT}" if sent and broker_away(exc) else "")
                      + (f" ({RESUME_HINT})" if not live and sent else ""))
            if not (as_json and sent):
                fail(failed)
        except KeyboardInterrupt:
            interrupted = True
        except asyncio.CancelledError:
            if not stopped_by:
                raise
            interrupted = True
    latest = ingest_trades.summary  # also when interrupted: what was sent, and delivered by the final flush
    with contextlib.suppress(ValueError):  # not the main thread: signals are its host's
        # Everything is delivered: a SIGTERM now would only cut the summary off (the loop that
        # handled it is closed, and the default action is to die).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result = latest.to_dict() | {"topic": config.trades_topic, "dlq_topic": config.dlq_topic, "resumed": resume,
                                 "interrupted": interrupted}
    if failed:  # what was handed to the client before it failed: delivered, or not, as the broker had it
        result["failed"] = failed
    log.info("ingest_finished", **result)
    if as_json:
        click.echo(json.dumps(result))
        if failed:  # the same one line and status as without --json
            fail(failed)
    else:
        click.echo(f"ingested {latest.trades:,} trades in {latest.messages:,} messages to {config.trades_topic} in "
                   f"{latest.seconds:.2f}s ({latest.trades_per_second:,.0f} trades/s); "
                   f"{latest.dead_letters:,} dead letters to {config.dlq_topic}"
                   + (f"; {latest.skipped:,} trades skipped, already there" if resume else "")
                   + (" (interrupted)" if interrupted else ""))
    if interrupted:  # the summary says what was sent; the status that it is not everything
        if not live:
            click.echo(f"interrupted: {RESUME_HINT}", err=True)
        raise click.exceptions.Exit(128 + (stopped_by[0] if stopped_by else signal.SIGINT))
    if not live:  # a file that could not be read to its end: said, and not a success
        source.check(f"what was read before it is on {config.trades_topic}, its dead letter on {config.dlq_topic}")


RESUME_HINT = "the same command with --resume sends the rest, skipping what the topic holds"


def _each_record(config: Settings, topic: str, handle: Callable[[Any], bool], **how: Any) -> None:
    """`handle` each record `reading.read_records` gives (how: its options) until it returns False,
    the records end, or Ctrl-C; Kafka problems are one line."""
    import asyncio

    from adapters.kafka.reading import read_records

    async def run() -> None:
        records = read_records(config.kafka_bootstrap_servers, topic, **how)
        try:
            async for record in records:
                if not handle(record):
                    break
        finally:
            await records.aclose()  # the consumer stops here, however the loop ended

    try:
        asyncio.run(run())
    except DomainError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


def topic_to_read(given: str | None, configured: str) -> str:
    """The topic a read-only command reads: --topic when given (any topic, checked as Kafka would
    check its name), else the configured one."""
    if given is None:
        return configured
    try:
        return check_topic(given)
    except ValueError as exc:
        fail(f"--topic: {exc}, got {given!r}")


@main.command(short_help="Show the trades (or dead letters) a topic holds.")
@click.option("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers [default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092].")
@click.option("--topic", metavar="TOPIC", help="The topic to read [default: STOCKANOMALY_TRADES_TOPIC, else trades].")
@click.option("--dead-letters", is_flag=True,
              help="The dead-letter topic instead (STOCKANOMALY_DLQ_TOPIC, else trades.dlq; --topic overrides): "
                   "each record's reason, detail and origin, and the trade or the raw input it holds.")
@click.option("--partition", "partitions", type=click.IntRange(0), multiple=True, metavar="N",
              help="Only this partition (repeatable).")
@click.option("--offset", type=click.IntRange(0), metavar="N",
              help="From this offset of each partition [default: the beginning].")
@click.option("--last", type=click.IntRange(1), metavar="N", help="Only the last N messages of each partition.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), metavar="N",
              help="Stop after this many messages.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per trade (and per undecodable message, and per dead letter).")
def decode(bootstrap: str | None, topic: str | None, dead_letters: bool, partitions: tuple[int, ...],
           offset: int | None, last: int | None, limit: int, as_json: bool) -> None:
    """Show messages of the trades topic as the trades they carry, one row each: the binary
    formats (STB2, which ingest writes, and the older STB1; docs/wire-format.md) that no Kafka tool
    can show. A dead letter (a record with a `reason` header) is shown with its reason first."""
    from adapters.kafka.codec import decode as decode_message
    from adapters.kafka.dead_letters import read_dead_letter, truncated_length
    from domain.sessions import SessionCalendar

    config = settings_or_fail(kafka_bootstrap_servers=bootstrap)
    name = topic_to_read(topic, config.dlq_topic if dead_letters else config.trades_topic)
    if offset is not None and last is not None:
        fail("give --offset or --last, not both")
    calendar = SessionCalendar()
    seen = 0

    def trade_rows(record: Any, trades: Any) -> None:
        where = f"{record.partition}@{record.offset}"
        for t in trades:
            ts = int(t["ts_event"])
            price = float(t["price"])  # a bad print can be NaN or infinite: null in JSON (which has neither)
            row = {"partition": record.partition, "offset": record.offset, "symbol": str(t["symbol"]),
                   "ts_event": ts, "ts_local": calendar.local_time(ts), "price": price if math.isfinite(price) else None,
                   "size": int(t["size"]), "side": t["side"].decode() or "N", "publisher_id": int(t["publisher_id"]),
                   "instrument_id": int(t["instrument_id"]), "sequence": int(t["sequence"])}
            if as_json:
                click.echo(json.dumps(row))
            else:
                local = row["ts_local"]
                click.echo(f"{where:>12}  {local[:10]} {local[11:29]}  {row['symbol']:<8} {price:>12,.4f} "
                           f"{row['size']:>10,} {row['side']}  seq {row['sequence']}")

    def show_dead_letter(record: Any, letter: Any) -> None:
        where = f"{record.partition}@{record.offset}"
        # The engine's refusals hold the trade re-encoded as a message; a source's, the input as read.
        trades, problems = decode_message(letter.key, letter.raw, where)
        held = trades if len(trades) and not problems else None
        cut = truncated_length(record.headers)
        if as_json:
            click.echo(json.dumps({"partition": record.partition, "offset": record.offset,
                                   "dead_letter": letter.reason, "detail": letter.detail, "origin": letter.origin,
                                   "raw": None if held is not None else letter.raw.decode("utf-8", errors="replace"),
                                   "raw_bytes": len(letter.raw), "truncated_from": cut,
                                   "trades": None if held is None else len(held)}))
        else:
            click.echo(f"{where:>12}  dead letter {letter.reason} from {letter.origin or '?'}: {letter.detail}")
            if held is None:
                text = letter.raw.decode("utf-8", errors="replace")
                shown = text if len(text) <= 200 else f"{text[:200]}..."
                click.echo(f"{'':>12}  raw ({len(letter.raw):,} bytes{f' of {cut:,}' if cut else ''}): {shown!r}")
        if held is not None:
            trade_rows(record, held)

    def show(record: Any) -> bool:
        nonlocal seen
        seen += 1
        letter = read_dead_letter(record.key, record.value, record.headers)
        if letter is not None:
            show_dead_letter(record, letter)
            return seen < limit
        where = f"{record.partition}@{record.offset}"
        trades, letters = decode_message(record.key, record.value, f"{record.topic}[{where}]")
        for bad in letters:
            if as_json:
                click.echo(json.dumps({"partition": record.partition, "offset": record.offset,
                                       "undecodable": bad.reason, "detail": bad.detail}))
            else:
                click.echo(f"{where:>12}  undecodable ({bad.reason}): {bad.detail}")
        trade_rows(record, trades)
        return seen < limit

    _each_record(config, name, show, last=last, offset=offset, partitions=list(partitions) or None,
                 isolation_level="read_uncommitted")
    if not seen:
        click.echo(f"no messages on {name}" + (f" from offset {offset}" if offset is not None else ""), err=True)


@main.command(short_help="Index again what Elasticsearch refused.")
@click.option("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers [default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092].")
@click.option("--topic", metavar="TOPIC", help="The dead-letter topic [default: STOCKANOMALY_DLQ_TOPIC, else trades.dlq].")
@click.option("--es-url", metavar="URL",
              help="Elasticsearch URL [default: ELASTICSEARCH_URL, else http://127.0.0.1:9200]; "
                   "credentials as for `query`.")
@click.option("--retry-seconds", default=60.0, show_default=True, type=FiniteRange(min=0), metavar="SECONDS",
              help="How long to retry while Elasticsearch is unavailable before giving up.")
def reindex(bootstrap: str | None, topic: str | None, es_url: str | None, retry_seconds: float) -> None:
    """Index again the documents Elasticsearch refused (dead letters `index_rejected`), once the cause
    is fixed (a mapping, a template): each is written under its id into the indices the indexer
    writes (STOCKANOMALY_ES_INDEX_PREFIX / _INCIDENTS_PREFIX), so one already there is replaced, not
    duplicated, and running it twice is harmless. Reads the topic to its end as it is at the start;
    nothing goes back through Kafka (the notifier sees nothing again). Exits 1 when any document is
    refused again, or cannot be read, saying which and why."""
    import asyncio
    from dataclasses import replace

    from adapters.elasticsearch import ElasticsearchAdapterError, ElasticsearchUnavailable
    from adapters.kafka.dead_letters import read_dead_letter, truncated_length
    from adapters.kafka.records import INDEX_REJECTED, decode_anomaly, decode_incident
    from application.reindex import reindex as index_again
    from domain.model import DeadLetter
    from entrypoints.container import elasticsearch_sink

    config = settings_or_fail(kafka_bootstrap_servers=bootstrap, elasticsearch_url=es_url)
    name = topic_to_read(topic, config.dlq_topic)
    streaming = config.streaming()
    if not streaming.elasticsearch_url:
        streaming = replace(streaming, elasticsearch_url="http://127.0.0.1:9200")
    # kind -> id -> its latest record (a document refused twice is indexed once)
    documents: dict[str, dict[str, Any]] = {"anomalies": {}, "incidents": {}}
    decoders = {"anomalies": decode_anomaly, "incidents": decode_incident}
    unreadable: list[str] = []
    letters = 0

    def collect(record: Any) -> bool:
        nonlocal letters
        letter = read_dead_letter(record.key, record.value, record.headers)
        if letter is None or letter.reason != INDEX_REJECTED:
            return True
        letters += 1
        # The origin is `<topic>:<id>`; the incidents topic's hold incidents (the other kind is tried
        # too, in case the topics were renamed since).
        first = "incidents" if letter.origin.rpartition(":")[0] == config.incidents_topic else "anomalies"
        failures = []
        for kind in (first, *(k for k in decoders if k != first)):
            document = decoders[kind](letter.raw, letter.origin)
            if not isinstance(document, DeadLetter):
                documents[kind][document.id] = document
                return True
            failures.append(document.detail)
        cut = truncated_length(record.headers)
        unreadable.append(f"{record.partition}@{record.offset} ({letter.origin or '?'}): " + (
            f"its record was cut to {len(letter.raw):,} of {cut:,} bytes" if cut else failures[0]))
        return True

    _each_record(config, name, collect)
    if not letters:
        click.echo(f"no {INDEX_REJECTED} dead letters on {name}")
        return
    sinks = {"anomalies": elasticsearch_sink(streaming, retry_seconds=retry_seconds),
             "incidents": elasticsearch_sink(streaming, incidents=True, retry_seconds=retry_seconds)}
    try:
        outcome = asyncio.run(index_again({k: list(v.values()) for k, v in documents.items()},
                                          sinks))  # type: ignore[arg-type]  # the container builds `object`s
    except ElasticsearchUnavailable as exc:
        fail(f"Elasticsearch unavailable for {retry_seconds:g}s: {exc.pending:,} document{'s' * (exc.pending != 1)} "
             f"not written; their dead letters stay on {name}: run reindex again once it answers")
    except ElasticsearchAdapterError as exc:
        fail(f"nothing more indexed: {exc}")
    one = {"anomalies": "anomaly", "incidents": "incident"}
    done = ", ".join(f"{n:,} {kind if n != 1 else one[kind]}" for kind, n in outcome.indexed.items() if n)
    click.echo(f"indexed again: {done or 'nothing'} (from {letters:,} {INDEX_REJECTED} dead letters on {name})")
    for doc_id, why in outcome.refused:
        click.echo(f"refused again: {doc_id}: {why}", err=True)
    for line in unreadable:
        click.echo(f"unreadable: {line}", err=True)
    if outcome.refused or unreadable:
        raise SystemExit(1)


@main.command(short_help="Show the anomalies (or incidents) the workers committed.")
@click.option("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers [default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092].")
@click.option("--topic", metavar="TOPIC", help="The topic to read [default: STOCKANOMALY_ANOMALIES_TOPIC, else anomalies].")
@click.option("-n", "--last", default=10, show_default=True, type=click.IntRange(1), metavar="N",
              help="Start with the last N anomalies or incidents (of all partitions, in the order the workers "
                   "committed them).")
@click.option("-f", "--follow", is_flag=True, help="Then keep printing new ones (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record, as the topic holds them.")
@click.option("--incidents", is_flag=True,
              help="The incidents topic instead (STOCKANOMALY_INCIDENTS_TOPIC, else incidents; --topic overrides).")
def tail(bootstrap: str | None, topic: str | None, last: int, follow: bool, as_json: bool, incidents: bool) -> None:
    """Show the anomalies (or incidents) the workers committed, in New York time."""
    from adapters.kafka.records import decode_anomaly, decode_incident
    from domain.model import DeadLetter
    from entrypoints.render import exchange_time, incident_start

    config = settings_or_fail(kafka_bootstrap_servers=bootstrap)
    name = topic_to_read(topic, config.incidents_topic if incidents else config.anomalies_topic)
    shown = 0

    def show(record: Any) -> bool:
        nonlocal shown
        shown += 1
        # The indexer's decoding: whatever the record holds (Infinity for an integer, nesting too
        # deep), a line saying so, never a traceback.
        decode = decode_incident if incidents else decode_anomaly
        item: Any = decode(record.value, f"{record.partition}@{record.offset}")
        if isinstance(item, DeadLetter):
            err.print(f"{item.origin}: {item.detail}", highlight=False)
            return True
        if as_json:
            click.echo(json.dumps(item.to_dict()))
        elif incidents:
            click.echo(f"{incident_start(item.to_dict())}  {item.symbol:<8} {item.size:>3} anomalies  {item.score:>6.2f}  "
                       f"{item.headline}  id {item.id}")
        else:  # the id last, for `show` and `label` (awk '{print $NF}')
            click.echo(f"{exchange_time(item.to_dict())}  {item.symbol:<8} {item.detector:<16} "
                       f"{item.score:>6.2f}  {item.reason}  id {item.id}")
        return True

    def event_time(record: Any) -> int:
        """Ties of Kafka's millisecond timestamps across partitions in the order a worker writes a
        take: by event time (an incident's start)."""
        try:
            value = json.loads(record.value).get("start_ns" if incidents else "ts_event")
        except (ValueError, TypeError, AttributeError, RecursionError):
            return 0
        return value if isinstance(value, int) else 0

    _each_record(config, name, show, last=last, follow=follow, overall=True, tie=event_time)
    if not shown and not follow:
        err.print(f"no {'incidents' if incidents else 'anomalies'} on {name} yet", highlight=False)


def webhooks(given: str) -> list[tuple[str, str]]:
    """`json:URL,slack:URL,URL` as (style, url) pairs; a bare URL is JSON. ConfigError on anything else."""
    from domain.errors import ConfigError

    hooks = []
    for item in (x.strip() for x in given.split(",") if x.strip()):
        style, _, url = item.partition(":") if item.split(":", 1)[0] in ("json", "slack") else ("json", "", item)
        try:
            check_http_url(url)  # a port that is not a number is refused here, not retried for ever
        except ValueError:
            raise ConfigError(f"webhook {item!r} is not [json:|slack:]http(s)://host[:port]/... (--webhook, --slack, "
                              "STOCKANOMALY_NOTIFY_WEBHOOKS)") from None
        hooks.append((style, url))
    return hooks


@main.command(short_help="Post the anomalies that matter to webhooks.")
@click.option("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers [default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092].")
@click.option("--incidents", is_flag=True, help="Notify incidents (the incidents topic) instead of anomalies.")
@click.option("--webhook", "json_hooks", multiple=True, metavar="URL",
              help="POST each notification as JSON here (repeatable; adds to STOCKANOMALY_NOTIFY_WEBHOOKS).")
@click.option("--slack", "slack_hooks", multiple=True, metavar="URL",
              help="POST each as a Slack message (an incoming-webhook URL; repeatable; adds to "
                   "STOCKANOMALY_NOTIFY_WEBHOOKS, which takes slack:URL too).")
@click.option("--min-severity", type=click.Choice(["low", "medium", "high"]),
              help="Send only these and above [default: STOCKANOMALY_NOTIFY_MIN_SEVERITY, else medium].")
@click.option("--per-symbol-seconds", type=FiniteRange(min=0), metavar="SECONDS",
              help="At most one per symbol in this much event time; the rest are counted into the next "
                   "[default: STOCKANOMALY_NOTIFY_PER_SYMBOL_SECONDS, else 300].")
@click.option("--group", metavar="GROUP", help="Kafka consumer group: notifiers in one group share the records between them (several "
                             "instances of one notifier); a notifier posting to other webhooks needs a group of its own, or "
                             "each gets part of the records (a new group starts at the topic's beginning) "
                             "[default: STOCKANOMALY_NOTIFY_GROUP, else <app id>-notifier-<topic>].")
@click.option("--heartbeat", type=OutputPath(),
              help="Touch this file at every poll while Kafka answers (for a health check: stale = stuck, "
                   "retrying a webhook, or cut off from Kafka for 30 s).")
def notify(bootstrap: str | None, incidents: bool, json_hooks: tuple[str, ...], slack_hooks: tuple[str, ...],
           min_severity: str | None, per_symbol_seconds: float | None, group: str | None,
           heartbeat: str | None) -> None:
    """Post the anomalies (or incidents) that matter to webhooks, as the workers commit them: retried
    while a receiver is down, offsets committed only once delivered (at least once). Runs until
    Ctrl-C or SIGTERM."""
    import asyncio
    import signal
    import time
    from pathlib import Path

    from adapters.kafka.notifier import notify_from_topic
    from adapters.metrics.beat import beat_while_running
    from adapters.webhook import WebhookChannel
    from application.notify import Notify
    from domain.errors import ConfigError
    from domain.notifications import NotificationPolicy

    if group is not None and not group.strip():  # it would be the default group: another notifier's records
        raise click.BadParameter("names no consumer group", param_hint="--group")
    config = settings_or_fail(kafka_bootstrap_servers=bootstrap, notify_min_severity=min_severity,
                              notify_per_symbol_seconds=per_symbol_seconds)
    service_log_level(config.log_level)
    try:
        hooks = webhooks(",".join([config.notify_webhooks, *(f"json:{u}" for u in json_hooks),
                                   *(f"slack:{u}" for u in slack_hooks)]))
    except ConfigError as exc:
        fail(str(exc))
    if not hooks:
        fail("no webhook to notify: give --webhook URL, --slack URL or STOCKANOMALY_NOTIFY_WEBHOOKS")
    from entrypoints.container import build_container
    from entrypoints.topics import serve_metrics

    container = build_container(metrics="prometheus")
    container.config.metrics_port.from_value(config.notifier_metrics_port)  # beside a worker's 9100
    container.config.metrics_exports.from_value("notifier")
    metrics = container.metrics()

    def count_retry() -> None:  # each webhook retry as it happens, so the metric moves during an outage
        metrics.notifications("sent", 0, retries=1)

    channels = [WebhookChannel(url, style, on_retry=count_retry) for style, url in hooks]  # type: ignore[arg-type]
    use_case = Notify(lambda: NotificationPolicy(config.notify_min_severity,
                                                 int(config.notify_per_symbol_seconds * 1e9)), channels)
    topic = config.incidents_topic if incidents else config.anomalies_topic
    group = group or config.notify_group or f"{config.app_id}-notifier-{topic}"

    async def handle(records: Any, partition: int) -> str:
        started = time.perf_counter()
        outcome = await use_case(records, partition)
        for result, count in (("sent", len(outcome.sent)), ("held_back", outcome.held_back),
                              ("below_severity", outcome.below_severity), ("refused", len(outcome.refused))):
            metrics.notifications(result, count)
        for channel, record_id, why in outcome.refused:
            log.error("notification_refused", webhook=channel, id=record_id, error=why[:300])
        if outcome.sent or outcome.skipped:
            # seconds: the batch's posts, each waiting for its webhook's answer (what a lag growing comes from)
            log.info("notified", partition=partition, sent=len(outcome.sent), skipped=outcome.skipped,
                     refused=len(outcome.refused), seconds=round(time.perf_counter() - started, 3))
        memory, left_out = use_case.policy(partition).memory()
        if left_out:
            log.warning("notifier_memory_full", partition=partition, symbols_left_out=left_out,
                        detail="after a restart these symbols' next records are sent without the wait")
        return memory

    def assigned(partition: int, memory: str) -> None:
        try:
            use_case.recall(partition, memory)
        except ValueError as exc:
            log.warning("notifier_memory_unread", partition=partition, error=str(exc)[:300])

    def touch() -> None:
        Path(heartbeat).touch()  # type: ignore[arg-type]

    async def run() -> None:
        # Named as the worker and the indexer name theirs: an address that cannot be bound was blamed on the port.
        serve_metrics(container.metrics_server(), "STOCKANOMALY_METRICS_ADDR / STOCKANOMALY_NOTIFIER_METRICS_PORT")
        # A signal cancels whatever is in hand, a webhook retry included: that batch is not committed,
        # and is sent again on restart.
        main_task = asyncio.current_task()
        assert main_task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, main_task.cancel)
        # From this loop, as the worker's and the indexer's: a post or a call that blocks it shows as
        # stockanomaly_event_loop_blocked_seconds growing (its other gauges stand still meanwhile).
        beating = asyncio.ensure_future(beat_while_running(metrics.event_loop_beat))
        try:
            await notify_from_topic(config.kafka_bootstrap_servers, topic, group, handle, incidents=incidents,
                                    heartbeat=touch if heartbeat else None, assigned=assigned,
                                    revoked=use_case.forget, started=banner,
                                    lag=lambda lags, stalled: metrics.notifier_lag(topic, lags, stalled))
        except asyncio.CancelledError:
            log.info("notifier_stopped")
        finally:
            beating.cancel()
            for channel in channels:
                await channel.close()

    def banner() -> None:  # once started: a start that fails says so in one line, with nothing before it
        limit = (f"at most one per symbol per {config.notify_per_symbol_seconds:g}s of event time"
                 if config.notify_per_symbol_seconds else "no per-symbol limit")
        err.print(f"notifying {topic} (consumer group {group}) to {len(channels)} webhook(s): severity "
                  f"{config.notify_min_severity} and above, {limit}", highlight=False)

    try:
        asyncio.run(run())
    except DomainError as exc:
        fail(str(exc))
