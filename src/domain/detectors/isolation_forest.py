"""Isolation Forest on per-symbol tail features: trades whose size and move are jointly unusual."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from domain.compiled import new_hits
from domain.detectors import tails
from domain.detectors.forest import CompiledForest
from domain.detectors.histogram import growth_table
from domain.detectors.base import PooledInPlace, change, odds, qty, record
from domain.market import MarketBatch
from domain.model import Anomaly

MODEL_CACHE = 16  # fitted forests kept in memory (two per pool are in use at a time)
HOT_FIELDS = ("totals", "weight", "bar", "seen", "last_log_price", "cut", "refreshed")  # read by every trade


class IsolationForestDetector(PooledInPlace):
    """Scores trades that are unusual in size and in price move at the same time.

    Features are the two per-symbol surprises of `domain.detectors.tails`, so one scikit-learn
    IsolationForest per pool serves every symbol of it. A trade is a candidate when both surprises
    reach `gate_nats` (each rarer than about 1 in e**gate_nats); candidates are scored once per batch,
    and flagged when the forest's anomaly score (0..1, -score_samples) reaches `min_score`.
    Forests are fitted off the per-trade path from the pooled samples in the pool state, and cached.
    """

    name = "isolation_forest"

    def __init__(self, n_estimators: int = 48, max_samples: int = 256, stratum_size: int = 256,
                 min_score: float = 0.775, gate_nats: float = 4.5, tail_nats: float = 3.0, fit_obs: float = 20.0,
                 warmup_trades: int = 200, refresh_trades: int = 64,
                 half_life_bars: float = 390.0, max_gap_bars: int = 60, epoch_ns: int = 1_800_000_000_000,
                 lateness_ns: int = 60_000_000_000, refit_epochs: int = 8, min_tail: int = 64, seed: int = 7,
                 bar_ns: int = 60_000_000_000) -> None:
        if not 0 < lateness_ns < epoch_ns:
            raise ValueError("lateness_ns must be positive and shorter than epoch_ns")
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.stratum_size = stratum_size
        self.min_score = min_score
        self.gate_nats = gate_nats
        self.tail_nats = tail_nats
        self.fit_obs = fit_obs
        self.warmup_trades = warmup_trades
        self.refresh_trades = refresh_trades
        self.half_life_bars = half_life_bars
        self.max_gap_bars = max_gap_bars
        self.epoch_ns = epoch_ns
        self.lateness_ns = lateness_ns
        self.refit_epochs = refit_epochs
        self.min_tail = min(min_tail, stratum_size)
        self.seed = seed
        self.bar_ns = bar_ns
        self._growth = growth_table(half_life_bars, max_gap_bars)
        self._models: OrderedDict[bytes, CompiledForest] = OrderedDict()
        self.refits = 0

    def initial_state(self) -> np.ndarray:
        return record(tails.SYMBOL_STATE, weight=1.0, bar=-1, last_log_price=np.nan, cut=np.nan, tail=np.nan)

    def initial_pool_state(self) -> np.ndarray:
        return record(tails.pool_state(self.stratum_size), open_epoch=-1, sealed_through=-1, model_epoch=-1,
                      model_from=-1)

    def update_pooled(self, batch: MarketBatch, st: np.ndarray, ps: np.ndarray) -> list[Anomaly]:
        hit, _, detail = new_hits(len(batch))
        found: list[Anomaly] = []
        # The scalars every trade reads, as compact columns: this detector walks trades in arrival
        # order, and strided fields of a wide record would each cost a cache miss per trade.
        hot = {name: np.ascontiguousarray(st[name]) for name in HOT_FIELDS}
        a, tape = batch.arrival, batch.arrived  # the walk reads the trades as they arrived
        start, allow, k = 0, -1, 0
        while start < len(batch):
            stop, k = tails.scan(
                start, allow, tape.slot, tape.pool, tape.ts, tape.log_price, tape.size, tape.auction,
                tape.publisher, tape.instrument, tape.sequence,
                st["size_hist"], st["move_hist"], hot["totals"], hot["weight"], hot["bar"], hot["seen"],
                hot["last_log_price"], hot["cut"], st["tail"], hot["refreshed"],
                ps["open_epoch"], ps["sealed_through"], ps["open_n"], ps["open_key"], ps["open_features"],
                ps["model_epoch"], ps["model_from"], ps["model_n"], ps["model_features"],
                self.bar_ns, self._growth, self.max_gap_bars, self.warmup_trades, self.refresh_trades,
                self.tail_nats, self.gate_nats, self.fit_obs, self.epoch_ns, self.lateness_ns, self.min_tail,
                self.refit_epochs, hit, detail, k)
            # Score what was gathered while the models it was recorded against are still in place.
            found += self._score(batch, ps, a[hit[:k]], detail[:k])
            start, allow, k = stop, stop, 0
        for name, column in hot.items():
            st[name] = column
        return found

    def _score(self, batch: MarketBatch, ps: np.ndarray, hit: np.ndarray, detail: np.ndarray) -> list[Anomaly]:
        found = []
        pools, epochs = batch.pool[hit], detail[:, 2].astype(np.int64)
        for p, epoch in sorted(set(zip(pools.tolist(), epochs.tolist()))):
            mine = np.flatnonzero((pools == p) & (epochs == epoch))
            m = int(np.flatnonzero(ps["model_epoch"][p] == epoch)[0])
            sample = ps["model_features"][p, m, :ps["model_n"][p, m]]
            scores = self._model(batch.pools[p], epoch, sample).scores(detail[mine, :2])
            for j, score in zip(mine.tolist(), scores.tolist()):
                if score >= self.min_score:
                    found.append(self._anomaly(batch, int(hit[j]), score, detail[j], batch.pools[p], epoch))
        return found

    def _model(self, pool: int, epoch: int, sample: np.ndarray) -> CompiledForest:
        """The forest of a pooled sample: fitted once (deterministically: fixed seed, sample in key
        order), its trees kept compiled (`domain.detectors.forest`) in a small cache, so a restart
        refits exactly the model it lost."""
        key = hashlib.blake2b(np.ascontiguousarray(sample).tobytes(), digest_size=16,
                              person=f"{pool}:{epoch}".encode()[:16]).digest()
        forest = self._models.get(key)
        if forest is None:
            # Imported at the first fit, not with the detectors: scikit-learn takes ~1 s to import,
            # which every command that builds settings (--help, ingest, query, tail) would pay.
            from sklearn.ensemble import IsolationForest

            forest = CompiledForest.of(IsolationForest(
                n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(sample)),
                random_state=self.seed).fit(sample.astype(np.float64)))
            self.refits += 1
            self._models[key] = forest
            while len(self._models) > MODEL_CACHE:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(key)
        return forest

    def _anomaly(self, batch: MarketBatch, i: int, score: float, detail: np.ndarray, pool: int,
                 epoch: int) -> Anomaly:
        size_nats, move_nats, _, move = (float(x) for x in detail)
        symbol = batch.symbols[batch.slot[i]]
        reason = (f"size {qty(batch.size[i])} ({odds(np.exp(-size_nats))} of {symbol}'s prints) with a "
                  f"{change(move)} move ({odds(np.exp(-move_nats))} of its tick moves) "
                  f"are jointly unusual: isolation score {score:.3f} >= {self.min_score:.3f}")
        return batch.anomaly(self.name, i, score / self.min_score, reason,
                             {"isolation_score": score, "size_surprise": size_nats, "move_surprise": move_nats,
                              "move": move, "model_pool": float(pool), "model_epoch": float(epoch)})
