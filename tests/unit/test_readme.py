"""The README's detector table states the thresholds the code uses (it drifted once: 30x and 10x
documented while the detectors used 20x and 12x)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from domain.detectors import default_detectors

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_rule(detector: str) -> str:
    rows = [line for line in README.read_text().splitlines() if line.startswith(f"| `{detector}` |")]
    assert len(rows) == 1, f"the README's detector table has no single row for {detector}"
    return re.split(r"(?<!\\)\|", rows[0])[2]  # cells split on pipes that are not escaped


DETECTORS = {d.name: d for d in default_detectors()}


def g(x: float) -> str:
    return f"{x:g}"


@pytest.mark.parametrize(("detector", "phrases"), [
    ("high_volume", lambda d: [f"size >= {g(d.multiple)}x the symbol's p{g(d.quantile * 100)} size"]),
    ("price_change", lambda d: [f"max({g(d.k)}x the symbol's typical tick move, {g(d.min_move * 100)}%)"]),
    ("isolation_forest", lambda d: [f"under the symbol's own distributions, >= {g(d.min_score)}",
                                    f"both surprises are >= {g(d.gate_nats)} nats"]),
    ("trade_burst", lambda d: ["trades in the last " + ("second" if d.window_ns == 1e9 else f"{g(d.window_ns / 1e9)} s"),
                               f"max({g(d.multiple)}x the symbol's norm, {g(d.minimum)})"]),
    ("volume_surge", lambda d: [f"shares in the last {g(d.window_ns / 1e9)} s",
                                f"max({g(d.multiple)}x the norm, {g(d.floor_caps)} caps)",
                                f"a cap of {g(d.cap_multiple)}x the symbol's p99.5 size"]),
    ("vwap_deviation", lambda d: [f"max({g(d.k)}x how far bars usually stray, {g(d.min_dev * 100)}%)"]),
])
def test_the_readme_states_the_thresholds_the_detectors_use(detector: str, phrases) -> None:  # type: ignore[no-untyped-def]
    rule = re.sub(r"\s+", " ", documented_rule(detector))
    for phrase in phrases(DETECTORS[detector]):
        assert phrase in rule, f"README says {rule.strip()!r}; the code's default is {phrase!r}"


def test_the_readme_states_the_rate_norms_the_detectors_keep() -> None:
    text = re.sub(r"\s+", " ", README.read_text())
    burst, surge = DETECTORS["trade_burst"], DETECTORS["volume_surge"]
    assert burst.memory_bars == surge.memory_bars and burst.warmup_bars == surge.warmup_bars
    assert burst.recent_bars == surge.recent_bars
    for phrase in (f"of its part's last {burst.memory_bars} bars", f"at most {g(surge.norm_clip)}x the norm",
                   f"A part is warm after {burst.warmup_bars} bars of its own",
                   f"the same mean over its last {g(burst.recent_bars)} bars", f"The multiple is {g(burst.multiple)}x"):
        assert phrase in text, f"the README's rate norms paragraph lacks {phrase!r}"
