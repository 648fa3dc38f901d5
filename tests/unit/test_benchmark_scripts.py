"""The benchmark scripts docs/benchmarks.md gives still start, and worker_e2e sends as ingest does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters.kafka.codec import decode
from adapters.kafka.keys import partition_of
from adapters.synthetic import generate_market
from application.ingest import symbol_batches

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if "__main__" in p.read_text())


def test_the_benchmarks_with_a_command_line_are_found() -> None:
    assert {"core_scaling.py", "ingest_throughput.py", "kafka_floor.py", "worker_e2e.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_answers_help(script: str) -> None:
    """`--help` imports everything the script imports: a name the code no longer has fails here
    (worker_e2e.py and kafka_floor.py stopped at `from adapters.kafka.producer import pack`)."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout[:200]


def test_worker_e2e_sends_every_trade_once_on_its_symbols_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from worker_e2e import to_messages

    trades = generate_market(symbols=30, trades=20_000, seed=3).trades[:5_000]
    messages = to_messages(symbol_batches(trades, 300), partitions=4, message_trades=300, per_symbol=False)

    sent = []
    for key, value, partition, rows in messages:
        assert key is None
        carried, letters = decode(key, value, "test")
        assert not letters and len(carried) <= 300
        assert {partition_of(symbol, 4) for symbol in carried["symbol"].tolist()} == {partition}
        assert len(rows) == 1 and np.array_equal(rows[0]["sequence"], carried["sequence"])
        sent.append(carried["sequence"])
    assert sorted(np.concatenate(sent).tolist()) == sorted(trades["sequence"].tolist())
