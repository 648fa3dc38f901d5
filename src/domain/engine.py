"""The detection step: validate, guard, split by symbol and run every detector on its state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domain.batch import SymbolBatch
from domain.detectors.base import Detector
from domain.guard import GuardState, SequenceGuard
from domain.model import Anomaly, DeadLetter
from domain.sessions import SessionCalendar
from domain.validation import dead_letter_for, invalid_reasons


@dataclass(slots=True)
class SymbolState:
    """Everything remembered about one symbol: small, bounded and picklable."""

    guard: GuardState
    detectors: dict[str, Any]
    trades: int = 0


@dataclass(slots=True)
class DetectionResult:
    states: dict[str, SymbolState]
    anomalies: list[Anomaly] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    accepted: int = 0


def split_by_symbol(trades: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(symbol, trades of that symbol in their original order), symbols sorted."""
    if len(trades) == 0:
        return []
    symbols = trades["symbol"]
    if (symbols == symbols[0]).all():
        return [(str(symbols[0]), trades)]
    names, codes = np.unique(symbols, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    ordered = trades[order]
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    return [(str(names[k]), ordered[bounds[k]:bounds[k + 1]]) for k in range(len(names))]


class DetectionEngine:
    """Pure: the same batch and states always give the same states, anomalies and dead letters."""

    def __init__(self, detectors: Sequence[Detector], guard: SequenceGuard | None = None,
                 calendar: SessionCalendar | None = None) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        self.detectors = list(detectors)
        self.guard = guard or SequenceGuard()
        self.calendar = calendar or SessionCalendar()

    def new_state(self) -> SymbolState:
        return SymbolState(GuardState(), {d.name: d.initial_state() for d in self.detectors})

    def detect(self, trades: np.ndarray, states: Mapping[str, SymbolState]) -> DetectionResult:
        result = DetectionResult(states={})
        reasons = invalid_reasons(trades)
        bad = np.flatnonzero(reasons != "")
        result.dead_letters.extend(dead_letter_for(trades[i], str(reasons[i])) for i in bad)
        valid = trades[reasons == ""] if len(bad) else trades
        for symbol, rows in split_by_symbol(valid):
            state = states.get(symbol) or self.new_state()
            guard, verdict = self.guard.check(rows, state.guard)
            refused = np.flatnonzero(verdict != "")
            result.dead_letters.extend(dead_letter_for(rows[i], str(verdict[i])) for i in refused)
            if len(refused):
                rows = rows[verdict == ""]
            batch = SymbolBatch.of(symbol, rows, self.calendar.auction_mask(rows["ts_event"], rows["side"]))
            detector_states = dict(state.detectors)
            for det in self.detectors:
                st = detector_states.get(det.name)
                detector_states[det.name], found = det.detect(batch, st if st is not None else det.initial_state())
                result.anomalies.extend(found)
            result.states[symbol] = SymbolState(guard, detector_states, state.trades + len(rows))
            result.accepted += len(rows)
        result.anomalies.sort(key=lambda a: (a.ts_event, a.symbol, a.detector))
        return result
