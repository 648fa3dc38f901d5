"""Per-symbol tail features for the Isolation Forest, and the pooled samples its models learn from.

A trade is described by two surprises in nats, each against the symbol's own decayed histogram:
-ln P(size >= x) and -ln P(|tick move| >= m). Under the symbol's normal behaviour both are about
Exp(1) whatever the symbol's price, size scale or activity, so one model can serve many symbols.

Samples for that model are taken per pool (a group of symbols that always travel together: a Kafka
partition) and per epoch of event time, as the `sample_size` trades with the smallest key digests:
the same set whatever order the pool's trades arrive in. An epoch is sealed `lateness_ns` after it
ends; a sealed sample becomes the pool's model when it is the first, or `refit_epochs` newer than
the model in force, and it judges trades from its seal time on. So embedded, streamed and resumed
runs fit the same models on the same samples and apply them to the same trades, provided no trade
reaches its pool more than `lateness_ns` behind a later one.
"""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel, trade_key
from domain.detectors.histogram import grow_weight, log_bin, tail_mass, top_quantile

SIZE_BPO, SIZE_BINS = 3.0, 3 * 28 + 1          # sizes up to 2**28 shares
MOVE_LOWEST, MOVE_BPO, MOVE_BINS = 1e-7, 3.0, 71  # |log moves| from 1e-7 up to ~1; bin 0: no move
MAX_SURPRISE = 20.0

SYMBOL_STATE = np.dtype([
    ("size_hist", "f4", (SIZE_BINS,)),
    ("move_hist", "f4", (MOVE_BINS,)),
    ("totals", "f8", (2,)),      # masses of the two histograms
    ("weight", "f8"),            # weight of the next observation (lazy decay)
    ("bar", "i8"),
    ("seen", "i4"),
    ("last_log_price", "f8"),    # previous regular print (NaN: none)
    ("gate", "f8", (2,)),        # size and move at the gate quantile, frozen per bar (NaN: warming up)
])


def pool_state(sample_size: int) -> np.dtype:
    return np.dtype([
        ("open_epoch", "i8", (2,)),  # epochs being sampled (slot = epoch % 2; -1: free)
        ("sealed_through", "i8"),    # newest epoch sealed: a later trade of it is too late to be sampled
        ("open_n", "i4", (2,)),
        ("open_key", "u8", (2, sample_size)),   # max-heap of key digests: the smallest ones are kept
        ("open_features", "f4", (2, sample_size, 2)),
        ("model_epoch", "i8", (2,)),  # [0] the newest model's sample epoch, [1] the one before (-1: none)
        ("model_from", "i8", (2,)),   # event time from which each model judges trades
        ("model_n", "i4", (2,)),
        ("model_features", "f4", (2, sample_size, 2)),  # samples sorted by key digest
    ])


@kernel
def _surprise(hist: np.ndarray, total: float, b: int, weight: float) -> float:
    """-ln P(value in bin b or above), with one pseudo-observation so an unseen value is finite."""
    return min(-np.log((tail_mass(hist, b) + weight) / (total + weight)), MAX_SURPRISE)


@kernel
def _heap_push(keys: np.ndarray, feats: np.ndarray, n: int, key: np.uint64, f0: float, f1: float) -> None:
    j = n
    keys[j], feats[j, 0], feats[j, 1] = key, f0, f1
    while j > 0:
        parent = (j - 1) // 2
        if keys[parent] >= keys[j]:
            break
        keys[parent], keys[j] = keys[j], keys[parent]
        a0, a1 = feats[parent, 0], feats[parent, 1]
        feats[parent, 0], feats[parent, 1] = feats[j, 0], feats[j, 1]
        feats[j, 0], feats[j, 1] = a0, a1
        j = parent


@kernel
def _heap_replace_top(keys: np.ndarray, feats: np.ndarray, n: int, key: np.uint64, f0: float, f1: float) -> None:
    keys[0], feats[0, 0], feats[0, 1] = key, f0, f1
    j = 0
    while True:
        left, right, top = 2 * j + 1, 2 * j + 2, j
        if left < n and keys[left] > keys[top]:
            top = left
        if right < n and keys[right] > keys[top]:
            top = right
        if top == j:
            return
        keys[top], keys[j] = keys[j], keys[top]
        a0, a1 = feats[top, 0], feats[top, 1]
        feats[top, 0], feats[top, 1] = feats[j, 0], feats[j, 1]
        feats[j, 0], feats[j, 1] = a0, a1
        j = top


@kernel
def _seal_due(p: int, t: int, i: int, allow_seal_at: int, epoch_ns: int, lateness_ns: int, min_sample: int,
              refit_epochs: int, open_epoch: np.ndarray, sealed_through: np.ndarray, open_n: np.ndarray, open_key: np.ndarray,
              open_features: np.ndarray, model_epoch: np.ndarray, model_from: np.ndarray, model_n: np.ndarray,
              model_features: np.ndarray) -> bool:
    """Seal pool p's epochs that ended `lateness_ns` before t, oldest first. Returns False (and seals
    nothing more) when a seal would replace a model and trade i is not where that is allowed yet."""
    for _ in range(2):
        j = -1
        for c in range(2):
            e = open_epoch[p, c]
            if e >= 0 and (e + 1) * epoch_ns + lateness_ns <= t and (j < 0 or e < open_epoch[p, j]):
                j = c
        if j < 0:
            return True
        e, n = open_epoch[p, j], open_n[p, j]
        if n >= min_sample and (model_epoch[p, 0] < 0 or e >= model_epoch[p, 0] + refit_epochs):
            if i != allow_seal_at:
                return False
            model_epoch[p, 1], model_from[p, 1], model_n[p, 1] = model_epoch[p, 0], model_from[p, 0], model_n[p, 0]
            model_features[p, 1] = model_features[p, 0]
            order = np.argsort(open_key[p, j, :n])
            for r in range(n):
                model_features[p, 0, r, 0] = open_features[p, j, order[r], 0]
                model_features[p, 0, r, 1] = open_features[p, j, order[r], 1]
            model_epoch[p, 0], model_from[p, 0], model_n[p, 0] = e, (e + 1) * epoch_ns + lateness_ns, n
        open_epoch[p, j], open_n[p, j] = -1, 0
        sealed_through[p] = max(sealed_through[p], e)
    return True


@kernel
def scan(start: int, allow_seal_at: int, slot: np.ndarray, pool: np.ndarray, ts: np.ndarray, log_price: np.ndarray,
         size: np.ndarray, auction: np.ndarray, publisher: np.ndarray, instrument: np.ndarray, sequence: np.ndarray,
         size_hist: np.ndarray, move_hist: np.ndarray, totals: np.ndarray, weight: np.ndarray, bar: np.ndarray,
         seen: np.ndarray, last_lp: np.ndarray, gate: np.ndarray,
         open_epoch: np.ndarray, sealed_through: np.ndarray, open_n: np.ndarray, open_key: np.ndarray,
         open_features: np.ndarray, model_epoch: np.ndarray, model_from: np.ndarray, model_n: np.ndarray, model_features: np.ndarray,
         bar_ns: int, half_life_bars: float, max_gap_bars: int, warmup: int, gate_nats: float, epoch_ns: int,
         lateness_ns: int, min_sample: int, refit_epochs: int,
         hit: np.ndarray, detail: np.ndarray, k: int) -> tuple[int, int]:
    """Walk trades from `start`; returns (where it stopped, candidates so far). It stops early, before
    trade i, when a pool is about to change models, so candidates are scored with the models they
    were recorded against; call again with start = allow_seal_at = i to go on."""
    sample_size = open_key.shape[2]
    gate_share = np.exp(-gate_nats)
    for i in range(start, len(ts)):
        s, p, t = slot[i], pool[i], ts[i]
        b = t // bar_ns
        if b != bar[s]:
            if bar[s] >= 0:
                weight[s], scale = grow_weight(weight[s], min(b - bar[s], max_gap_bars), half_life_bars)
                if scale != 1.0:
                    size_hist[s] *= scale
                    move_hist[s] *= scale
                    totals[s] *= scale
            bar[s] = b
            if seen[s] >= warmup:
                # Lower bin edges, so the cheap per-trade gate never drops a trade the exact test keeps.
                gate[s, 0] = top_quantile(size_hist[s], totals[s, 0], gate_share, 1.0, SIZE_BPO) / 2 ** (2 / SIZE_BPO)
                gate[s, 1] = (top_quantile(move_hist[s], totals[s, 1], gate_share, MOVE_LOWEST, MOVE_BPO)
                              / 2 ** (2 / MOVE_BPO))
        if auction[i]:
            continue
        lp = log_price[i]
        has_move = last_lp[s] == last_lp[s]
        move = abs(lp - last_lp[s]) if has_move else 0.0
        sb = log_bin(size[i], 1.0, SIZE_BPO, SIZE_BINS)
        mb = log_bin(move, MOVE_LOWEST, MOVE_BPO, MOVE_BINS)
        if has_move and seen[s] >= warmup:
            if not _seal_due(p, t, i, allow_seal_at, epoch_ns, lateness_ns, min_sample, refit_epochs, open_epoch,
                             sealed_through, open_n, open_key, open_features, model_epoch, model_from, model_n, model_features):
                return i, k
            f0, f1 = -1.0, -1.0
            e = t // epoch_ns
            c = e % 2
            if open_epoch[p, c] < 0 and e > sealed_through[p]:
                open_epoch[p, c], open_n[p, c] = e, 0
            if open_epoch[p, c] == e:
                key = trade_key(publisher[i], instrument[i], t, sequence[i])
                n = open_n[p, c]
                if n < sample_size or key < open_key[p, c, 0]:
                    f0 = _surprise(size_hist[s], totals[s, 0], sb, weight[s])
                    f1 = _surprise(move_hist[s], totals[s, 1], mb, weight[s])
                    if n < sample_size:
                        _heap_push(open_key[p, c], open_features[p, c], n, key, f0, f1)
                        open_n[p, c] = n + 1
                    else:
                        _heap_replace_top(open_key[p, c], open_features[p, c], n, key, f0, f1)
            if size[i] >= gate[s, 0] and move >= gate[s, 1]:
                if f0 < 0:
                    f0 = _surprise(size_hist[s], totals[s, 0], sb, weight[s])
                    f1 = _surprise(move_hist[s], totals[s, 1], mb, weight[s])
                m = 0 if model_epoch[p, 0] >= 0 and model_from[p, 0] <= t else 1
                if f0 >= gate_nats and f1 >= gate_nats and model_epoch[p, m] >= 0 and model_from[p, m] <= t:
                    hit[k] = i
                    detail[k, 0], detail[k, 1], detail[k, 2] = f0, f1, model_epoch[p, m]
                    detail[k, 3] = lp - last_lp[s]
                    k += 1
        w = weight[s]
        size_hist[s, sb] += w
        totals[s, 0] += w
        if has_move:
            move_hist[s, mb] += w
            totals[s, 1] += w
        seen[s] += 1
        last_lp[s] = lp
    return len(ts), k
