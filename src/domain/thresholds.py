"""Per-symbol thresholds learned from history: the calibration result and its file format."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from domain.errors import ConfigError

FORMAT = 1


@dataclass(frozen=True, slots=True)
class SymbolThresholds:
    size_threshold: float
    size_quantile_value: float
    trades: int


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Size thresholds per symbol: `multiple` x the symbol's `quantile` of trade size."""

    quantile: float
    multiple: float
    symbols: dict[str, SymbolThresholds] = field(default_factory=dict)

    def size_thresholds(self) -> dict[str, float]:
        return {s: t.size_threshold for s, t in self.symbols.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "quantile": self.quantile,
            "multiple": self.multiple,
            "symbols": {s: {"size_threshold": t.size_threshold, "size_quantile_value": t.size_quantile_value,
                            "trades": t.trades} for s, t in sorted(self.symbols.items())},
        }

    @classmethod
    def from_dict(cls, data: Any) -> Thresholds:
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("symbols"), dict):
            raise ConfigError(f'not a thresholds file of format {FORMAT} (expected {{"format": {FORMAT}, "symbols": '
                              "{...}}, quantile and multiple optional: what `stockanomaly calibrate` writes)")
        symbols = {}
        for name, entry in data["symbols"].items():
            entry = entry if isinstance(entry, dict) else {}
            threshold = _number(name, entry, "size_threshold", None)
            if not threshold > 0:
                raise ConfigError(f"symbol {name!r}: size_threshold must be positive, got {threshold}")
            symbols[str(name)] = SymbolThresholds(threshold, _number(name, entry, "size_quantile_value", 0.0),
                                                  int(_number(name, entry, "trades", 0)))
        return cls(float(data.get("quantile", 0.999)), float(data.get("multiple", 8.0)), symbols)


def _number(symbol: str, entry: dict[str, Any], key: str, default: float | None) -> float:
    """A finite JSON number (`default` when absent and allowed): `true` is no size, and Infinity or
    1e400 (read as infinite) none a threshold can be."""
    value = entry.get(key, default)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"symbol {symbol!r}: {key} missing or not a finite number, got {value!r}")
    return float(value)
