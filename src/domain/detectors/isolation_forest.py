"""Isolation Forest on per-trade features normalised by the symbol's own recent behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.ensemble import IsolationForest

from domain.batch import SymbolBatch, bar_segments
from domain.detectors.base import decay_factor, pct, qty
from domain.model import Anomaly

FEATURES = ("size_z", "move_z", "gap_z")


@dataclass(slots=True)
class ForestState:
    # Decayed moments of log size and log inter-arrival gap, and RMS tick move: the normalisers.
    moments: np.ndarray = field(default_factory=lambda: np.zeros(6))  # n, sum, sumsq for size then gap
    move_sum: float = 0.0  # decayed sum of squared tick moves: RMS, since most ticks are zero
    move_n: float = 0.0
    frozen: np.ndarray = field(default_factory=lambda: np.full(5, np.nan))  # mu_s, sd_s, mu_g, sd_g, move
    last_log_price: float = float("nan")
    last_ts: int = -1
    bar: int = -1
    window: np.ndarray = field(default_factory=lambda: np.empty((0, 3), np.float32))  # recent features
    training: np.ndarray = field(default_factory=lambda: np.empty((0, 3), np.float32))  # current model's data
    generation: int = 0  # how many fits so far; 0 means no model yet
    since_fit: int = 0


class IsolationForestDetector:
    """Scores trades whose feature vector lies outside the core of the symbol's recent behaviour.

    Features are z-scores against per-symbol decayed statistics frozen per bar, so symbols with
    different prices and sizes never mix. Each symbol's forest is fitted on a bounded window of
    its recent features, refitted at a bar boundary every `refit_every` trades (never per
    trade), and scored in one call per batch. Only trades with some |z| >= `gate` are scored:
    the core of the distribution cannot be isolated early, so scoring it is wasted work.
    """

    name = "isolation_forest"

    def __init__(self, n_estimators: int = 32, max_samples: int = 1024, window: int = 1024,
                 refit_every: int = 100_000, min_score: float = 0.80, gate: float = 3.0,
                 warmup_trades: int = 1024, half_life_bars: float = 60.0, seed: int = 7,
                 bar_ns: int = 60_000_000_000) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.window = window
        self.refit_every = refit_every
        self.min_score = min_score
        self.gate = gate
        self.warmup_trades = warmup_trades
        self.half_life_bars = half_life_bars
        self.seed = seed
        self.bar_ns = bar_ns
        self._models: dict[str, tuple[int, IsolationForest]] = {}
        self.refits = 0

    def initial_state(self) -> ForestState:
        return ForestState()

    def detect(self, batch: SymbolBatch, state: ForestState) -> tuple[ForestState, list[Anomaly]]:
        st = replace(state, moments=state.moments.copy(), frozen=state.frozen.copy())
        n = len(batch)
        if n == 0:
            return st, []
        regular = ~batch.auction
        move = batch.log_price - np.concatenate(([st.last_log_price], batch.log_price[:-1]))
        prev_ts = np.concatenate(([st.last_ts], batch.ts[:-1]))
        log_size = np.log(batch.size)
        log_gap = np.where(prev_ts < 0, np.nan, np.log((batch.ts - prev_ts).clip(0) + 1_000.0))  # +1 µs
        segments = bar_segments(batch.ts, self.bar_ns)
        starts = np.array([lo for _, lo, _ in segments])
        # Per-bar sums in one pass; the loop below then only does scalar work per bar.
        has_gap, has_move = regular & np.isfinite(log_gap), regular & np.isfinite(move)
        usable = has_gap & has_move

        def per_bar(x: np.ndarray | float, mask: np.ndarray) -> np.ndarray:
            return np.add.reduceat(np.where(mask, x, 0.0), starts)

        moments = np.column_stack([per_bar(1.0, regular), per_bar(log_size, regular), per_bar(log_size**2, regular),
                                   per_bar(1.0, has_gap), per_bar(log_gap, has_gap), per_bar(log_gap**2, has_gap)])
        move_sum, move_n = per_bar(move * move, has_move), per_bar(1.0, has_move)
        usable_n = per_bar(1.0, usable)
        frozen = np.empty((len(segments), 5))
        generation = np.empty(len(segments), np.int64)
        fits: list[tuple[int, int]] = []  # (generation, first trade it judges)
        window_len = len(st.window)
        for k, (bar, lo, _) in enumerate(segments):
            if bar != st.bar and self._roll(st, bar, window_len):
                fits.append((st.generation, lo))
            frozen[k], generation[k] = st.frozen, st.generation
            st.moments += moments[k]
            st.move_sum += move_sum[k]
            st.move_n += move_n[k]
            if np.isfinite(st.frozen).all():
                st.since_fit += int(usable_n[k])
                window_len = min(window_len + int(usable_n[k]), self.window)
        counts = np.diff(np.append(starts, n))
        fz = np.repeat(frozen, counts, axis=0)
        feats = np.column_stack([(log_size - fz[:, 0]) / fz[:, 1], move / fz[:, 4],
                                 (log_gap - fz[:, 2]) / fz[:, 3]]).astype(np.float32)
        fitted_at = np.repeat(generation, counts)
        remembered = usable & np.isfinite(feats).all(axis=1)
        history = np.concatenate((st.window, feats[remembered]))
        position = np.concatenate((np.full(len(st.window), -1), np.flatnonzero(remembered)))
        forests = {state.generation: self.model(batch.symbol, state)} if state.generation else {}
        for gen, first in fits:
            st.training = history[position < first][-self.window:]
            forests[gen] = self._fit(batch.symbol, gen, st.training)
        st.window = history[-self.window:]
        st.last_log_price, st.last_ts = float(batch.log_price[-1]), int(batch.ts[-1])
        return st, self._score(batch, feats, move, fitted_at, forests)

    def _roll(self, st: ForestState, bar: int, window_len: int) -> bool:
        """Start a new bar: decay, freeze the normalisers; True when a (re)fit is due now."""
        if st.bar >= 0:
            d = decay_factor(self.half_life_bars)
            st.moments *= d
            st.move_sum *= d
            st.move_n *= d
        st.bar = bar
        n_s, s_s, q_s, n_g, s_g, q_g = st.moments
        if n_s > 1 and n_g > 1 and st.move_n > 0:
            mu_s, mu_g = s_s / n_s, s_g / n_g
            sd_s = max(np.sqrt(max(q_s / n_s - mu_s**2, 0.0)), 1e-3)
            sd_g = max(np.sqrt(max(q_g / n_g - mu_g**2, 0.0)), 1e-3)
            st.frozen[:] = (mu_s, sd_s, mu_g, sd_g, max(np.sqrt(st.move_sum / st.move_n), 1e-6))
        first = st.generation == 0 and window_len >= self.warmup_trades
        if first or (st.generation > 0 and st.since_fit >= self.refit_every):
            st.generation += 1
            st.since_fit = 0
            return True
        return False

    def model(self, symbol: str, st: ForestState) -> IsolationForest:
        """The forest for this symbol's current generation, refitted from state after a restart."""
        cached = self._models.get(symbol)
        if cached is not None and cached[0] == st.generation:
            return cached[1]
        return self._fit(symbol, st.generation, st.training)

    def _fit(self, symbol: str, generation: int, training: np.ndarray) -> IsolationForest:
        forest = IsolationForest(n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(training)),
                                 random_state=self.seed).fit(training)
        self._models[symbol] = (generation, forest)
        self.refits += 1
        return forest

    def _score(self, batch: SymbolBatch, feats: np.ndarray, move: np.ndarray, fitted_at: np.ndarray,
               forests: dict[int, IsolationForest]) -> list[Anomaly]:
        candidates = (fitted_at > 0) & (np.abs(feats) >= self.gate).any(axis=1) & ~batch.auction
        candidates &= np.isfinite(feats).all(axis=1)
        found: list[Anomaly] = []
        for gen in np.unique(fitted_at[candidates]):
            idx = np.flatnonzero(candidates & (fitted_at == gen))
            scores = -forests[int(gen)].score_samples(feats[idx])
            hit = scores >= self.min_score
            for i, s in zip(idx[hit], scores[hit]):
                found.append(self._anomaly(batch, int(i), float(s), feats[i], float(move[i])))
        return found

    def _anomaly(self, batch: SymbolBatch, i: int, score: float, f: np.ndarray, move: float) -> Anomaly:
        reason = (f"isolation score {score:.2f} >= {self.min_score:.2f}: size {qty(batch.size[i])} "
                  f"(z {f[0]:+.1f}), move {pct(move)} (z {f[1]:+.1f}), "
                  f"gap z {f[2]:+.1f} are jointly unusual for {batch.symbol}")
        return Anomaly.of_trade(self.name, batch.trades[i], score / self.min_score, reason,
                                {"isolation_score": score, "size_z": float(f[0]), "move_z": float(f[1]),
                                 "gap_z": float(f[2])})
