"""File-to-Kafka ingest throughput: both real NVDA days (or a generated market) into a fresh topic
on the local broker.

With --symbols N, a generated market of N symbols and --trades trades (seed 3, as core_scaling.py
makes them), written to a temporary .dbn.zst first, instead of the real days: at market scale most
of a message's per-symbol runs hold a trade or two, which is what costs there.

Prints one JSON line. A run is timed from the first read of the files to the producer's last
acknowledgement (topic creation and producer start-up excluded); the best of --repeat runs is
reported, each into its own fresh topic. For context it also times publishing the already-decoded
trades (the Kafka side alone) and decoding the messages back (the consumer side of the codec).
Several files are decoded on threads of their own (DatabentoFileSource's read-ahead); --read-ahead 0
reads them one after the other, as before 2026-12-04.
Usage: python benchmarks/ingest_throughput.py [PATH ...] [--repeat R] [--batch-trades N] [--read-ahead T]
       python benchmarks/ingest_throughput.py --symbols 2000 [--trades 2000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from aiokafka.admin import AIOKafkaAdminClient

from adapters.databento import DatabentoFileSource
from adapters.databento.source import FILES_READ_AHEAD_TRADES
from adapters.kafka.codec import decode, encode_runs
from adapters.kafka.keys import partition_of
from adapters.kafka.producer import KafkaTradePublisher
from application.ingest import IngestSummary, IngestTrades, symbol_batches
from domain.ports import SourceChunk

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data/nasdaq"


async def run_once(args: argparse.Namespace, source: object) -> IngestSummary:
    topic = f"bench-ingest-{uuid.uuid4().hex[:10]}"
    try:
        async with KafkaTradePublisher(args.bootstrap, topic, f"{topic}.dlq", partitions=args.partitions,
                                       compression=args.compression, anomalies_topic=f"{topic}.anomalies",
                                       incidents_topic=f"{topic}.incidents") as publisher:
            # Marked as the CLI marks a file ingest (adapters.kafka.marks), so it can be resumed.
            return await IngestTrades(publisher, batch_trades=args.batch_trades,
                                      source_id="0123456789abcdef")(source)  # type: ignore[arg-type]
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            await admin.delete_topics([t for t in (topic, f"{topic}.dlq", f"{topic}.anomalies", f"{topic}.incidents")
                                       if t in existing])
        finally:
            await admin.close()


async def benchmark(args: argparse.Namespace) -> dict[str, object]:
    runs = [await run_once(args, DatabentoFileSource(args.paths, read_ahead=args.read_ahead))
            for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r.seconds)

    chunks = list(DatabentoFileSource(args.paths).chunks())

    async def in_memory() -> AsyncIterator[SourceChunk]:
        for chunk in chunks:
            yield chunk

    publish_only = min([await run_once(args, in_memory()) for _ in range(args.repeat)], key=lambda r: r.seconds)

    # The messages ingest sends (STB2, each partition's runs together), decoded as a worker decodes them.
    trades = np.concatenate([c.trades for c in chunks])
    cut = symbol_batches(trades, args.batch_trades)
    home = np.array([partition_of(name, args.partitions) for name in cut.names], np.int64)[cut.codes]
    messages = [(None, value) for _, value, _ in encode_runs(cut, home, args.batch_trades)]
    started = time.perf_counter()
    decoded = sum(len(decode(key, value, "bench")[0]) for key, value in messages)
    decode_seconds = time.perf_counter() - started
    return {
        "benchmark": "ingest_throughput",
        "files": [Path(p).name for p in DatabentoFileSource(args.paths).files],
        **({"symbols": args.symbols} if args.symbols else {}),
        "trades": best.trades,
        "messages": best.messages,
        "bytes": best.bytes,
        "seconds": round(best.seconds, 4),
        "trades_per_second": round(best.trades_per_second),
        "runs_seconds": [round(r.seconds, 4) for r in runs],
        "batch_trades": args.batch_trades,
        "partitions": args.partitions,
        "compression": args.compression,
        "read_ahead": args.read_ahead,
        "publish_only_trades_per_second": round(publish_only.trades_per_second),
        "codec_decode_trades_per_second": round(decoded / decode_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=[str(DEFAULT)])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--batch-trades", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--read-ahead", type=int, default=FILES_READ_AHEAD_TRADES,
                        help="trades the files may hold decoded ahead, all together (0: read in turn)")
    parser.add_argument("--symbols", type=int, help="a generated market of this many symbols instead of PATHs")
    parser.add_argument("--trades", type=int, default=2_000_000, help="with --symbols: its trades")
    args = parser.parse_args()
    if not args.symbols:
        print(json.dumps(asyncio.run(benchmark(args))))
        return
    from adapters.synthetic import generate

    with tempfile.TemporaryDirectory() as scratch:
        args.paths = [str(generate(Path(scratch) / "market.dbn.zst", symbols=args.symbols, trades=args.trades,
                                   seed=3, events_per_type=min(20, args.symbols)).path)]
        print(json.dumps(asyncio.run(benchmark(args))))


if __name__ == "__main__":
    main()
