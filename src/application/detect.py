"""Use case: detect anomalies in one batch of trades, with per-symbol state loaded and saved."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from domain.context import BatchTape
from domain.engine import DetectionEngine
from domain.model import Anomaly, DeadLetter
from domain.ports import AnomalySink, DeadLetterSink, Metrics, StateStore
from domain.suppressions import Suppressions


@dataclass(slots=True)
class BatchOutcome:
    accepted: int
    anomalies: list[Anomaly] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    clocks: dict[str, int] = field(default_factory=dict)  # symbol -> event time of its last accepted trade
    suppressed: dict[str, int] = field(default_factory=dict)  # suppression rule id -> anomalies it held back
    tape: BatchTape = field(default_factory=BatchTape)  # the batch's trades by symbol (the after-contexts')
    # Every anomaly not suppressed, reported or not: what incidents are grouped from, so that a
    # report narrowed to some symbols or times holds a full run's incidents (None: `anomalies`).
    unsuppressed: list[Anomaly] | None = None

    @property
    def grouped(self) -> list[Anomaly]:
        return self.anomalies if self.unsuppressed is None else self.unsuppressed


class DetectTrades:
    """Load the batch's symbols' state, run the pure engine, save state, publish the results.

    The embedded replay and the streaming worker both call this, so both decide identically. The
    worker gives no sinks: it hands the returned outcome to its asynchronous outputs (`PublishOutcome`).
    """

    def __init__(self, engine: DetectionEngine, states: StateStore, pool_states: StateStore, metrics: Metrics,
                 anomalies: AnomalySink | None = None, dead_letters: DeadLetterSink | None = None,
                 reports: Callable[[Anomaly], bool] | None = None,
                 suppressions: Callable[[], Suppressions] | None = None, tapes: StateStore | None = None) -> None:
        """`tapes`: each symbol's last trades (the engine's tape_schema), for anomalies' context (None:
        anomalies carry none); `reports`: which anomalies are published, counted and returned (default: all;
        the outcome keeps the others apart, for incidents);
        `suppressions`: the rules in force (read per batch), whose anomalies are held back and only
        counted. Every trade is judged whatever they say, so state, models and ids stay those of a
        full run."""
        self.engine = engine
        self.reports = reports
        self.suppressions = suppressions
        self.states = states
        self.pool_states = pool_states
        self.tapes = tapes
        self.anomalies = anomalies
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.last_symbols = 0  # symbols in the last batch: how a replay sizes the next one

    def __call__(self, trades: np.ndarray, rejected: list[DeadLetter] | None = None,
                 origin: Callable[[int], str] | None = None) -> BatchOutcome:
        """`rejected`: what the source refused, published with the engine's dead letters; `origin`:
        where a trade comes from by its row (SourceChunk.origin), for the engine's dead letters."""
        started = time.perf_counter()
        batch = self.engine.prepare(trades)
        self.last_symbols = len(batch.symbols)
        fits = self._fits()
        tapes = self.tapes.load(batch.symbols) if self.tapes is not None else None
        # Every store's load returns rows of its own making: the engine may update them in place.
        result = self.engine.detect(batch, self.states.load(batch.symbols), self.pool_states.load(batch.pool_keys),
                                    tapes, owned=True)
        self._count_refits(fits)
        self.states.save(batch.symbols, result.states)
        self.pool_states.save(batch.pool_keys, result.pool_states)
        if self.tapes is not None and result.tapes is not None:
            self.tapes.save(batch.symbols, result.tapes)
        outcome = self._outcome(result.anomalies)
        engine_letters = result.dead_letters
        if origin is not None:
            # Built whole, not by dataclasses.replace (5 us each): a day read twice is a letter per trade.
            engine_letters = [DeadLetter(d.reason, d.detail, origin(d.row), d.raw, d.key, d.row, d.records)
                              if d.row >= 0 and not d.origin else d for d in engine_letters]
        dead = list(rejected or []) + engine_letters
        if dead and self.dead_letters is not None:
            self.dead_letters.publish(dead)
        self._count(result.accepted, outcome.anomalies, dead, len(trades), time.perf_counter() - started)
        outcome.accepted, outcome.dead_letters, outcome.tape = result.accepted, dead, result.tape
        outcome.clocks = {s: int(t) for s, t in zip(batch.symbols, result.last_seen.tolist()) if t >= 0}
        return outcome

    def finish(self, symbols: Sequence[str]) -> BatchOutcome:
        """The input has ended (an embedded run; a stream never does): what detectors were still
        measuring for `symbols` (every symbol that traded) is reported with what is known, once."""
        states = self.states.load(symbols)
        tapes = self.tapes.load(symbols) if self.tapes is not None else None
        found = self.engine.unfinished(symbols, states, tapes)
        if found:
            self.states.save(symbols, states)
        outcome = self._outcome(found)
        for a in outcome.anomalies:
            self.metrics.anomalies_found(a.detector, a.symbol, 1)
        return outcome

    def _outcome(self, anomalies: list[Anomaly]) -> BatchOutcome:
        """Hold back what the suppressions say, keep apart what is not reported, publish the rest."""
        suppressed: dict[str, int] = {}  # of the anomalies reported
        if self.suppressions is not None and anomalies:
            rules, kept = self.suppressions(), []
            for a in anomalies:
                rule = rules.rule_for(a)
                if rule is None:
                    kept.append(a)
                elif self.reports is None or self.reports(a):
                    suppressed[rule.id] = suppressed.get(rule.id, 0) + 1
            anomalies = kept
        unsuppressed = None
        if self.reports is not None:
            unsuppressed, anomalies = anomalies, [a for a in anomalies if self.reports(a)]
        if anomalies and self.anomalies is not None:
            self.anomalies.publish(anomalies)
        return BatchOutcome(0, anomalies, suppressed=suppressed, unsuppressed=unsuppressed)

    def _fits(self) -> dict[str, int]:
        # Learning detectors count their (costly) model fits; the others have no `refits`.
        return {d.name: int(getattr(d, "refits", 0)) for d in self.engine.detectors}

    def _count_refits(self, before: dict[str, int]) -> None:
        for name, fits in self._fits().items():
            for _ in range(fits - before.get(name, 0)):
                self.metrics.model_refitted(name)

    def _count(self, accepted: int, anomalies: list[Anomaly], dead: list[DeadLetter],
               size: int, seconds: float) -> None:
        self.metrics.trades_processed(accepted)
        per: dict[tuple[str, str], int] = {}
        for a in anomalies:
            per[(a.detector, a.symbol)] = per.get((a.detector, a.symbol), 0) + 1
        for (detector, symbol), n in per.items():
            self.metrics.anomalies_found(detector, symbol, n)
        reasons: dict[str, int] = {}
        for d in dead:
            reasons[d.reason] = reasons.get(d.reason, 0) + 1
        for reason, n in reasons.items():
            self.metrics.dead_letters(reason, n)
        self.metrics.batch_processed(size, seconds)
