"""The host's floor for the worker's latency target: a relay that does nothing but Kafka.

No Faust, no detection, no Elasticsearch: the least any Kafka consume -> produce pipeline on this
host pays, at the message rate of `benchmarks/worker_e2e.py`'s latency phase (one message per
partition every 5 ms, ~3.7 KB each: 50,000 trades/s in STB2 messages of ~58 trades). Needs the
local broker (`bash scripts/services.sh up kafka`); prints one JSON line.

  producer (this process)  sends the messages, each stamped with time.time() just before `send`
  relay (own process)      a read_committed consumer; for every --every-th message (about the
                           rate of anomalies in worker_e2e) one small record to the output topic;
                           then, per fetch:
                             --mode eos: one transaction per source partition (offsets in it), on
                               one transactional producer per partition, committed side by side:
                               the shape of the worker's exactly-once (Faust's; aiokafka has no
                               KIP-447, so one transactional id per partition)
                             --mode alo: await the records' acknowledgements, commit the offsets
  observer (own process)   a read_committed consumer of the output topic (fetch_max_wait 10 ms,
                           as worker_e2e's) stamps time.time() on arrival

latency = arrival - the stamp of the message the record came from, first tenth left out (start-up).
Under `--mode eos` the relay retries a transaction request refused with CONCURRENT_TRANSACTIONS
after 5 ms, as the worker does (`adapters.faust.recovery.retry_concurrent_transactions_soon`);
`--aiokafka-backoff` keeps aiokafka's own 100 ms instead.

Usage:
  .venv/bin/python benchmarks/kafka_floor.py --mode eos
  .venv/bin/python benchmarks/kafka_floor.py --mode alo
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import struct
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from worker_e2e import CpuWindow, stats_ms  # this directory: how worker_e2e times and counts, reused

STAMP = struct.Struct("<dq")  # send time, message number
OUT = struct.Struct("<dqd")  # send time, message number, time the relay fetched it


async def relay(args: argparse.Namespace, source: str, out: str, group: str, ready: Any, report: Any) -> None:
    if args.mode == "eos" and not args.aiokafka_backoff:
        from adapters.faust.recovery import retry_concurrent_transactions_soon
        retry_concurrent_transactions_soon()
    consumer = AIOKafkaConsumer(source, bootstrap_servers=args.bootstrap, group_id=group, enable_auto_commit=False,
                                fetch_max_wait_ms=5, auto_offset_reset="earliest", isolation_level="read_committed")
    producers = [AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=0, acks="all", enable_idempotence=True,
                                  transactional_id=f"{group}-{p}" if args.mode == "eos" else None)
                 for p in range(args.partitions if args.mode == "eos" else 1)]
    await consumer.start()
    for producer in producers:
        await producer.start()
    ready.set()
    cycles: list[float] = []  # seconds

    async def transaction(tp: Any, messages: list[Any], fetched: float) -> None:
        producer = producers[tp.partition]
        await producer.begin_transaction()
        await asyncio.gather(*[await producer.send(out, OUT.pack(*STAMP.unpack_from(m.value), fetched),
                                                   partition=tp.partition)
                               for m in messages if STAMP.unpack_from(m.value)[1] % args.every == 0])
        await producer.send_offsets_to_transaction({tp: messages[-1].offset + 1}, group)
        await producer.commit_transaction()

    while not report.poll():  # the parent asks for the cycle times when the observer is done
        fetched_batches = await consumer.getmany(timeout_ms=50)
        if not fetched_batches:
            continue
        started, fetched = time.perf_counter(), time.time()
        if args.mode == "eos":
            await asyncio.gather(*(transaction(tp, ms, fetched) for tp, ms in fetched_batches.items()))
        else:
            await asyncio.gather(*[await producers[0].send(out, OUT.pack(*STAMP.unpack_from(m.value), fetched))
                                   for ms in fetched_batches.values() for m in ms
                                   if STAMP.unpack_from(m.value)[1] % args.every == 0])
            await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in fetched_batches.items()})
        cycles.append(time.perf_counter() - started)
    report.recv()
    report.send(cycles[len(cycles) // 10:])
    for producer in producers:
        await producer.stop()
    await consumer.stop()


async def observe(args: argparse.Namespace, out: str, expected: int, ready: Any, results: Any) -> None:
    consumer = AIOKafkaConsumer(out, bootstrap_servers=args.bootstrap, isolation_level="read_committed",
                                fetch_max_wait_ms=10, auto_offset_reset="earliest")
    await consumer.start()
    ready.set()
    seen: list[tuple[float, float, float]] = []
    deadline = time.monotonic() + args.seconds + 60
    while len(seen) < expected and time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=100)).values():
            now = time.time()
            for r in records:
                sent, _, fetched = OUT.unpack(r.value)
                seen.append((now - sent, fetched - sent, now - fetched))
    results.put(seen)
    await consumer.stop()


def relay_main(*args: Any) -> None:
    asyncio.run(relay(*args))


def observe_main(*args: Any) -> None:
    asyncio.run(observe(*args))


async def produce(args: argparse.Namespace, topic: str) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=0, acks="all")
    await producer.start()
    pad, loop, sent, acks = b"x" * (args.message_bytes - STAMP.size), asyncio.get_running_loop(), 0, []
    start = loop.time()
    for tick in range(int(args.seconds / args.tick)):
        for partition in range(args.partitions):
            sent += 1
            acks.append(await producer.send(topic, STAMP.pack(time.time(), sent) + pad, partition=partition))
        await asyncio.sleep(max(0.0, start + (tick + 1) * args.tick - loop.time()))
    await asyncio.gather(*acks)
    await producer.stop()
    return sent


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--mode", choices=("eos", "alo"), default="eos")
    parser.add_argument("--aiokafka-backoff", action="store_true",
                        help="keep aiokafka's 100 ms retry after CONCURRENT_TRANSACTIONS")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--tick", type=float, default=0.005, help="seconds between sends (one message per partition)")
    parser.add_argument("--message-bytes", type=int, default=3700)
    parser.add_argument("--every", type=int, default=50, help="one output record per this many messages")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()

    from adapters.faust.recovery import CONCURRENT_TRANSACTIONS_BACKOFF

    run = uuid.uuid4().hex[:8]
    source, out, group = f"floor-in-{run}", f"floor-out-{run}", f"floor-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    ctx = mp.get_context("spawn")
    children: list[Any] = []
    try:
        await admin.create_topics([NewTopic(t, args.partitions, 1) for t in (source, out)])
        relay_ready, observer_ready, results = ctx.Event(), ctx.Event(), ctx.Queue()
        report, relay_end = ctx.Pipe()
        expected = int(args.seconds / args.tick) * args.partitions // args.every
        children = [ctx.Process(target=relay_main, args=(args, source, out, group, relay_ready, relay_end)),
                    ctx.Process(target=observe_main, args=(args, out, expected, observer_ready, results))]
        for child in children:
            child.start()
        for ready in (relay_ready, observer_ready):
            if not await asyncio.to_thread(ready.wait, 60):
                raise TimeoutError("relay or observer did not start within 60 s")
        cpu = CpuWindow({})
        sent = await produce(args, source)
        busy = (cpu.cores() or {}).get("host_busy_cores")
        seen = await asyncio.to_thread(results.get, True, args.seconds + 90)
        report.send("done")
        cycles = await asyncio.to_thread(lambda: report.recv() if report.poll(30) else [])
        kept = seen[len(seen) // 10:]
        print(json.dumps({
            "benchmark": "kafka_floor", "mode": args.mode,
            "concurrent_transactions_retry_ms": (100 if args.aiokafka_backoff else CONCURRENT_TRANSACTIONS_BACKOFF * 1e3)
            if args.mode == "eos" else None,
            "partitions": args.partitions, "messages": sent, "outputs": len(seen), "expected_outputs": expected,
            "host_busy_cores_while_sending": busy,
            "produce_to_output_ms": stats_ms([k[0] for k in kept]),
            "produce_to_relay_fetch_ms": stats_ms([k[1] for k in kept]),
            "relay_fetch_to_output_ms": stats_ms([k[2] for k in kept]),
            "relay_cycle_ms": stats_ms(cycles)}))
        return 0 if len(seen) == expected else 1
    finally:
        for child in children:
            child.kill()
            child.join()
        await admin.delete_topics([source, out])
        await admin.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
