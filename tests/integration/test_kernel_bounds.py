"""The compiled kernels never index outside their arrays.

numba does not check bounds unless asked: an index out of range reads whatever memory lies there,
so a kernel with such a bug gives answers that differ from machine to machine (an overnight-gap
test passed here and failed in CI that way). This runs the domain's unit tests again with every
kernel compiled with bounds checks, where such an index is an IndexError. Not a unit test only
because recompiling every kernel takes a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOMAIN_TESTS = ["test_detectors.py", "test_engine.py", "test_market.py", "test_forest.py", "test_histogram.py",
                "test_day_parts.py", "test_state.py", "test_use_cases.py", "test_evaluate.py", "test_incidents.py"]


@pytest.mark.slow
def test_the_domain_tests_pass_with_every_kernel_bounds_checked(tmp_path: Path) -> None:
    env = os.environ | {"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *[str(REPO / "tests" / "unit" / name) for name in DOMAIN_TESTS]],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1] and "failed" not in run.stdout.splitlines()[-1]
