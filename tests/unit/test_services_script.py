"""scripts/services.sh as a shell user meets it, without starting anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_status_read_by_a_pipe_that_closes_early_ends_without_a_traceback(tmp_path: Path) -> None:
    """`scripts/services.sh status | head -1`: the reader leaves before the last line."""
    env = dict(os.environ, STOCKANOMALY_RUN_DIR=str(tmp_path))  # nothing started there: every service stopped
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        done = subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), "status"], stdout=write,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 1  # not everything asked for was shown


def test_a_kafka_cluster_id_never_starts_with_a_dash() -> None:
    # A leading '-' made the storage tool read the id as an option: Kafka did not start (CI, 1 in 64).
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from devservices.kafka import new_cluster_id
    finally:
        sys.path.remove(str(REPO / "scripts"))
    draws = iter([b"\xf8" + bytes(15), b"\x04" + bytes(15)])  # the first encodes as "-AAA...", the second "BAAA..."

    cluster_id = new_cluster_id(lambda: next(draws))

    assert cluster_id == "BAAAAAAAAAAAAAAAAAAAAA"
    assert len(new_cluster_id()) == 22
