"""The detectors, each a pure per-symbol step; `default_detectors` is what a replay runs."""

from __future__ import annotations

from collections.abc import Mapping

from domain.detectors.base import AnyDetector, Detector
from domain.detectors.high_volume import HighVolumeDetector
from domain.detectors.isolation_forest import IsolationForestDetector
from domain.detectors.price_change import PriceChangeDetector
from domain.detectors.rate import TradeBurstDetector, VolumeSurgeDetector
from domain.detectors.vwap import VwapDeviationDetector

__all__ = ["Detector", "HighVolumeDetector", "IsolationForestDetector", "PriceChangeDetector",
           "TradeBurstDetector", "VolumeSurgeDetector", "VwapDeviationDetector", "default_detectors",
           "DETECTOR_NAMES"]

DETECTOR_NAMES = ("high_volume", "price_change", "isolation_forest", "trade_burst", "volume_surge",
                  "vwap_deviation")


def default_detectors(size_thresholds: Mapping[str, float] | None = None, seed: int = 7) -> list[AnyDetector]:
    """All detectors with their default hyperparameters; calibrated size thresholds optional."""
    every: list[AnyDetector] = [
        HighVolumeDetector(calibrated=size_thresholds),
        PriceChangeDetector(),
        IsolationForestDetector(seed=seed),
        TradeBurstDetector(),
        VolumeSurgeDetector(),
        VwapDeviationDetector(),
    ]
    return every
