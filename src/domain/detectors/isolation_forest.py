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
    # Decayed moments of log size and log inter-arrival gap, and mean |tick move|: the normalisers.
    moments: np.ndarray = field(default_factory=lambda: np.zeros(6))  # n, sum, sumsq for size then gap
    move_sum: float = 0.0
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

    def __init__(self, n_estimators: int = 32, max_samples: int = 256, window: int = 1024,
                 refit_every: int = 100_000, min_score: float = 0.74, gate: float = 3.0,
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
        prev_lp = np.concatenate(([st.last_log_price], batch.log_price[:-1]))
        prev_ts = np.concatenate(([st.last_ts], batch.ts[:-1]))
        move = batch.log_price - prev_lp  # NaN for a symbol's first trade ever
        log_size = np.log(batch.size)
        log_gap = np.log((batch.ts - prev_ts).clip(0) + 1_000.0)  # +1 µs: simultaneous prints
        log_gap[prev_ts < 0] = np.nan
        feats = np.empty((n, 3), np.float32)
        fitted_at = np.zeros(n, np.int64)  # generation whose model judges each trade
        forests = {st.generation: self.model(batch.symbol, st)} if st.generation else {}
        for bar, lo, hi in bar_segments(batch.ts, self.bar_ns):
            if bar != st.bar:
                self._roll(st, bar)
                if st.generation and st.generation not in forests:
                    forests[st.generation] = self.model(batch.symbol, st)
            mu_s, sd_s, mu_g, sd_g, typical = st.frozen
            feats[lo:hi, 0] = (log_size[lo:hi] - mu_s) / sd_s
            feats[lo:hi, 1] = move[lo:hi] / typical
            feats[lo:hi, 2] = (log_gap[lo:hi] - mu_g) / sd_g
            fitted_at[lo:hi] = st.generation
            self._accumulate(st, log_size[lo:hi], log_gap[lo:hi], move[lo:hi], ~batch.auction[lo:hi])
            ok = np.isfinite(feats[lo:hi]).all(axis=1) & ~batch.auction[lo:hi]
            self._remember(st, feats[lo:hi][ok])
        st.last_log_price, st.last_ts = float(batch.log_price[-1]), int(batch.ts[-1])
        return st, self._score(batch, feats, move, fitted_at, forests)

    def _roll(self, st: ForestState, bar: int) -> None:
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
            typical = max(st.move_sum / st.move_n, 1e-6)
            st.frozen[:] = (mu_s, sd_s, mu_g, sd_g, typical)
        due = st.generation == 0 and len(st.window) >= self.warmup_trades
        if due or (st.generation > 0 and st.since_fit >= self.refit_every):
            st.training = st.window.copy()
            st.generation += 1
            st.since_fit = 0

    def _accumulate(self, st: ForestState, log_size: np.ndarray, log_gap: np.ndarray,
                    move: np.ndarray, regular: np.ndarray) -> None:
        s = log_size[regular]
        g = log_gap[regular & np.isfinite(log_gap)]
        m = np.abs(move[regular & np.isfinite(move)])
        st.moments += (len(s), s.sum(), (s * s).sum(), len(g), g.sum(), (g * g).sum())
        st.move_sum += float(m.sum())
        st.move_n += len(m)

    def _remember(self, st: ForestState, rows: np.ndarray) -> None:
        st.window = np.concatenate((st.window, rows))[-self.window:]
        st.since_fit += len(rows)

    def model(self, symbol: str, st: ForestState) -> IsolationForest:
        """The forest for this symbol's current generation, refitted from state after a restart."""
        cached = self._models.get(symbol)
        if cached is None or cached[0] != st.generation:
            forest = IsolationForest(n_estimators=self.n_estimators,
                                     max_samples=min(self.max_samples, len(st.training)),
                                     random_state=self.seed)
            cached = (st.generation, forest.fit(st.training))
            self._models[symbol] = cached
            self.refits += 1
        return cached[1]

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
