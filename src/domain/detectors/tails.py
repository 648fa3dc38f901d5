"""Per-symbol tail features for the Isolation Forest, and the pooled samples its models learn from.

A trade is described by two surprises in nats, each against the symbol's own decayed histogram:
-ln P(size >= x) and -ln P(|tick move| >= m). Under the symbol's normal behaviour both are about
Exp(1) whatever the symbol's price, size scale or activity, so one model can serve many symbols.

Samples for that model are taken per pool (a group of symbols that always travel together: a Kafka
partition) and per epoch of event time, in two strata of `stratum_size` trades each: any trade, and
trades unusual in at least one feature (a surprise of `tail_nats` or more). A forest fitted on the
first alone has no points where anomalies live and scores everything beyond its data the same; the
second shows it what ordinary large prints and ordinary large moves look like, so it can rank the
trades that are both. Each stratum keeps the trades with the smallest key digests: the same set
whatever order the pool's trades arrive in. An epoch is sealed `lateness_ns` after it ends (and
needs a full first stratum and `min_tail` unusual trades to count); a sealed sample becomes the
pool's model when it is the first, or at least `refit_epochs` newer than the model in force, and
it judges trades from its seal time on. So embedded, streamed and resumed runs fit the same models
on the same samples and apply them to the same trades, provided no trade reaches its pool more
than `lateness_ns` behind a later one.
"""

from __future__ import annotations

import numpy as np

from domain.compiled import kernel, trade_key
from domain.detectors.histogram import fit_tail, grow_weight, log_bin, surprise, top_quantile

SIZE_BPO, SIZE_BINS = 3.0, 3 * 28 + 1          # sizes up to 2**28 shares
MOVE_LOWEST, MOVE_BPO, MOVE_BINS = 1e-7, 3.0, 71  # |log moves| from 1e-7 up to ~1; bin 0: no move
MAX_SURPRISE = 20.0
CORE, TAIL = 0, 1  # sample strata

SYMBOL_STATE = np.dtype([
    ("size_hist", "f4", (SIZE_BINS,)),
    ("move_hist", "f4", (MOVE_BINS,)),
    ("totals", "f8", (2,)),      # masses of the two histograms
    ("weight", "f8"),            # weight of the next observation (lazy decay)
    ("bar", "i4"),               # current bar (minutes since the epoch; -1: none yet)
    ("seen", "i4"),
    ("last_log_price", "f8"),    # previous regular print (NaN: none)
    # Size and move at the tail and at the gate quantiles (NaN: warming up): cheap per-trade tests
    # that decide whether the exact surprises are worth computing. Re-read, with the fitted tails,
    # at the first bar boundary after every `refresh_trades` prints.
    ("cut", "f8", (2, 2)),
    ("tail", "f8", (2, 3)),      # per feature: fitted tail (anchor bin, its nats, mean excess)
    ("refreshed", "i4"),         # `seen` when cut and tail were last computed
])


def pool_state(stratum_size: int) -> np.dtype:
    return np.dtype([
        ("open_epoch", "i8", (2,)),  # epochs being sampled (slot = epoch % 2; -1: free)
        ("sealed_through", "i8"),    # newest epoch sealed: a later trade of it is too late to be sampled
        ("open_n", "i4", (2, 2)),    # [slot, stratum]
        ("open_key", "u8", (2, 2, stratum_size)),  # max-heaps of key digests: the smallest are kept
        ("open_features", "f4", (2, 2, stratum_size, 2)),
        ("model_epoch", "i8", (2,)),  # [0] the newest model's sample epoch, [1] the one before (-1: none)
        ("model_from", "i8", (2,)),   # event time from which each model judges trades
        ("model_n", "i4", (2,)),
        ("model_features", "f4", (2, 2 * stratum_size, 2)),  # both strata, each in key order
    ])


@kernel
def _swap(keys: np.ndarray, feats: np.ndarray, a: int, b: int) -> None:
    keys[a], keys[b] = keys[b], keys[a]
    f0, f1 = feats[a, 0], feats[a, 1]
    feats[a, 0], feats[a, 1] = feats[b, 0], feats[b, 1]
    feats[b, 0], feats[b, 1] = f0, f1


@kernel
def _offer(keys: np.ndarray, feats: np.ndarray, n: int, key: np.uint64, f0: float, f1: float) -> int:
    """Keep the trade if its key is among the smallest (a max-heap of size keys.shape[0]); returns the new n."""
    if n < len(keys):
        j = n
        keys[j], feats[j, 0], feats[j, 1] = key, f0, f1
        while j > 0 and keys[(j - 1) // 2] < keys[j]:
            _swap(keys, feats, j, (j - 1) // 2)
            j = (j - 1) // 2
        return n + 1
    if key >= keys[0]:
        return n
    keys[0], feats[0, 0], feats[0, 1] = key, f0, f1
    j = 0
    while True:
        left, right, top = 2 * j + 1, 2 * j + 2, j
        if left < n and keys[left] > keys[top]:
            top = left
        if right < n and keys[right] > keys[top]:
            top = right
        if top == j:
            return n
        _swap(keys, feats, j, top)
        j = top


@kernel
def _seal_due(p: int, t: int, position: int, allow_seal_at: int, epoch_ns: int, lateness_ns: int, min_tail: int,
              refit_epochs: int, open_epoch: np.ndarray, sealed_through: np.ndarray, open_n: np.ndarray,
              open_key: np.ndarray, open_features: np.ndarray, model_epoch: np.ndarray, model_from: np.ndarray,
              model_n: np.ndarray, model_features: np.ndarray) -> bool:
    """Seal pool p's epochs that ended `lateness_ns` before t, oldest first. Returns False (and seals
    nothing more) when a seal would replace a model and `position` (the walk's) is not where that is
    allowed yet."""
    size = open_key.shape[3]
    for _ in range(2):
        j = -1
        for c in range(2):
            e = open_epoch[p, c]
            if e >= 0 and (e + 1) * epoch_ns + lateness_ns <= t and (j < 0 or e < open_epoch[p, j]):
                j = c
        if j < 0:
            return True
        e = open_epoch[p, j]
        full = open_n[p, j, CORE] == size and open_n[p, j, TAIL] >= min_tail
        if full and (model_epoch[p, 0] < 0 or e >= model_epoch[p, 0] + refit_epochs):
            if position != allow_seal_at:
                return False
            model_epoch[p, 1], model_from[p, 1], model_n[p, 1] = model_epoch[p, 0], model_from[p, 0], model_n[p, 0]
            model_features[p, 1] = model_features[p, 0]
            r = 0
            for stratum in range(2):
                n = open_n[p, j, stratum]
                order = np.argsort(open_key[p, j, stratum, :n])
                for q in range(n):
                    model_features[p, 0, r, 0] = open_features[p, j, stratum, order[q], 0]
                    model_features[p, 0, r, 1] = open_features[p, j, stratum, order[q], 1]
                    r += 1
            model_epoch[p, 0], model_from[p, 0], model_n[p, 0] = e, (e + 1) * epoch_ns + lateness_ns, r
        open_epoch[p, j] = -1
        open_n[p, j, CORE], open_n[p, j, TAIL] = 0, 0
        sealed_through[p] = max(sealed_through[p], e)
    return True


@kernel
def _refresh(s: int, size_hist: np.ndarray, move_hist: np.ndarray, totals: np.ndarray, weight: np.ndarray,
             cut: np.ndarray, tail: np.ndarray, tail_nats: float, gate_nats: float, fit_obs: float) -> None:
    """Re-read symbol s's fitted tails and cheap per-trade cuts off its histograms."""
    tail[s, 0] = fit_tail(size_hist[s], totals[s, 0], fit_obs * weight[s], SIZE_BPO)
    tail[s, 1] = fit_tail(move_hist[s], totals[s, 1], fit_obs * weight[s], MOVE_BPO)
    for level, nats in enumerate((tail_nats, gate_nats)):
        # Two bins under the quantile's upper edge: the cheap test never drops a trade the exact one keeps.
        share = np.exp(-nats)
        cut[s, level, 0] = top_quantile(size_hist[s], totals[s, 0], share, 1.0, SIZE_BPO) / 2 ** (2 / SIZE_BPO)
        cut[s, level, 1] = (top_quantile(move_hist[s], totals[s, 1], share, MOVE_LOWEST, MOVE_BPO)
                            / 2 ** (2 / MOVE_BPO))


@kernel
def scan(start: int, allow_seal_at: int, slot: np.ndarray, pool: np.ndarray, ts: np.ndarray,
         log_price: np.ndarray, size: np.ndarray, auction: np.ndarray, publisher: np.ndarray, instrument: np.ndarray,
         sequence: np.ndarray,
         size_hist: np.ndarray, move_hist: np.ndarray, totals: np.ndarray, weight: np.ndarray, bar: np.ndarray,
         seen: np.ndarray, last_lp: np.ndarray, cut: np.ndarray, tail_fit: np.ndarray, refreshed: np.ndarray,
         open_epoch: np.ndarray, sealed_through: np.ndarray, open_n: np.ndarray, open_key: np.ndarray,
         open_features: np.ndarray, model_epoch: np.ndarray, model_from: np.ndarray, model_n: np.ndarray,
         model_features: np.ndarray, bar_ns: int, growth: np.ndarray, max_gap_bars: int, warmup: int,
         refresh: int, tail_nats: float, gate_nats: float, fit_obs: float, epoch_ns: int, lateness_ns: int,
         min_tail: int, refit_epochs: int, hit: np.ndarray, detail: np.ndarray, k: int) -> tuple[int, int]:
    """Walk the trades (columns in arrival order) from `start`; returns (where it stopped, candidates
    so far). It stops early, before trade i, when a pool is about to change models, so candidates are
    scored with the models they were recorded against; call again with start = allow_seal_at = i."""
    sample_size = open_key.shape[3]
    for i in range(start, len(ts)):
        s, p, t = slot[i], pool[i], ts[i]
        b = max(t // bar_ns, bar[s])  # an older print (refused upstream) counts in the current bar
        if b != bar[s]:
            if bar[s] >= 0:
                weight[s], scale = grow_weight(weight[s], growth[min(b - bar[s], max_gap_bars)])
                if scale != 1.0:
                    size_hist[s] *= scale
                    move_hist[s] *= scale
                    totals[s] *= scale
            bar[s] = b
            # Re-read at a bar boundary once `refresh` new prints have arrived (see high_volume).
            if seen[s] >= warmup and (cut[s, 0, 0] != cut[s, 0, 0] or seen[s] - refreshed[s] >= refresh):
                refreshed[s] = seen[s]
                _refresh(s, size_hist, move_hist, totals, weight, cut, tail_fit, tail_nats, gate_nats, fit_obs)
        if auction[i]:
            continue
        lp = log_price[i]
        has_move = last_lp[s] == last_lp[s]
        move = abs(lp - last_lp[s]) if has_move else 0.0
        sb = log_bin(size[i], 1.0, SIZE_BPO, SIZE_BINS)
        mb = log_bin(move, MOVE_LOWEST, MOVE_BPO, MOVE_BINS)
        if has_move and seen[s] >= warmup:
            # Checked here first: a call that passes the pool arrays costs more than the whole test.
            due = False
            for c in range(2):
                if open_epoch[p, c] >= 0 and (open_epoch[p, c] + 1) * epoch_ns + lateness_ns <= t:
                    due = True
            if due and not _seal_due(p, t, i, allow_seal_at, epoch_ns, lateness_ns, min_tail, refit_epochs,
                                     open_epoch, sealed_through, open_n, open_key, open_features, model_epoch,
                                     model_from, model_n, model_features):
                return i, k
            e = t // epoch_ns
            c = e % 2
            if open_epoch[p, c] < 0 and e > sealed_through[p]:
                open_epoch[p, c] = e
            sampling = open_epoch[p, c] == e
            key = trade_key(publisher[i], instrument[i], t, sequence[i])
            core = sampling and (open_n[p, c, CORE] < sample_size or key < open_key[p, c, CORE, 0])
            tail = (sampling and (size[i] >= cut[s, 0, 0] or move >= cut[s, 0, 1])
                    and (open_n[p, c, TAIL] < sample_size or key < open_key[p, c, TAIL, 0]))
            gated = size[i] >= cut[s, 1, 0] and move >= cut[s, 1, 1]
            if core or tail or gated:
                f0 = surprise(size_hist[s], totals[s, 0], sb, weight[s], tail_fit[s, 0], SIZE_BPO, MAX_SURPRISE)
                f1 = surprise(move_hist[s], totals[s, 1], mb, weight[s], tail_fit[s, 1], MOVE_BPO, MAX_SURPRISE)
                if core:
                    open_n[p, c, CORE] = _offer(open_key[p, c, CORE], open_features[p, c, CORE],
                                                open_n[p, c, CORE], key, f0, f1)
                if tail and max(f0, f1) >= tail_nats:
                    open_n[p, c, TAIL] = _offer(open_key[p, c, TAIL], open_features[p, c, TAIL],
                                                open_n[p, c, TAIL], key, f0, f1)
                m = 0 if model_epoch[p, 0] >= 0 and model_from[p, 0] <= t else 1
                if gated and f0 >= gate_nats and f1 >= gate_nats and model_epoch[p, m] >= 0 and model_from[p, m] <= t:
                    hit[k] = i
                    detail[k, 0], detail[k, 1], detail[k, 2], detail[k, 3] = f0, f1, model_epoch[p, m], lp - last_lp[s]
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
