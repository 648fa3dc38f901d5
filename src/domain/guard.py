"""Duplicate and ordering guard per symbol, with memory bounded by a time horizon."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Key = tuple[int, int, int, int]  # publisher_id, instrument_id, ts_event, sequence


@dataclass(slots=True)
class GuardState:
    last_ts: int = -1
    recent: frozenset[Key] = field(default_factory=frozenset)


class SequenceGuard:
    """Tells duplicates and out-of-order prints apart from new trades.

    A trade is identified by (publisher, instrument, ts_event, sequence): ITCH sequence numbers
    restart every day, so the event time is part of the key. Only keys within `horizon_ns` of
    the newest trade are remembered (at most `max_keys`), so memory does not grow with history;
    an older replayed trade is still refused, as out of order.
    """

    def __init__(self, horizon_ns: int = 5_000_000_000, max_keys: int = 4096, tolerance_ns: int = 0) -> None:
        self.horizon_ns = horizon_ns
        self.max_keys = max_keys
        self.tolerance_ns = tolerance_ns

    def check(self, trades: np.ndarray, state: GuardState) -> tuple[GuardState, np.ndarray]:
        """Return the new state and, per row, '' for new trades or 'duplicate'/'out_of_order'."""
        n = len(trades)
        verdict = np.full(n, "", dtype="U12")
        if n == 0:
            return state, verdict
        ts = trades["ts_event"]
        pub, inst, seq = trades["publisher_id"], trades["instrument_id"], trades["sequence"]
        # Repeats inside the batch: every occurrence after the first. In time-ordered input a
        # repeat shares its timestamp with a neighbour, so only those rows need sorting.
        if n > 1 and bool((ts[1:] >= ts[:-1]).all()):
            same = ts[1:] == ts[:-1]
            suspects = np.flatnonzero(np.concatenate(([False], same)) | np.concatenate((same, [False])))
        else:
            suspects = np.arange(n)
        repeat = np.zeros(n, bool)
        if len(suspects) > 1:
            order = suspects[np.lexsort((suspects, inst[suspects], pub[suspects], seq[suspects], ts[suspects]))]
            equal = ((ts[order[1:]] == ts[order[:-1]]) & (seq[order[1:]] == seq[order[:-1]])
                     & (pub[order[1:]] == pub[order[:-1]]) & (inst[order[1:]] == inst[order[:-1]]))
            repeat[order[1:][equal]] = True
        # Repeats of keys seen in earlier batches can only be at or before the last time seen.
        for i in np.flatnonzero(ts <= state.last_ts):
            if (int(pub[i]), int(inst[i]), int(ts[i]), int(seq[i])) in state.recent:
                repeat[i] = True
        verdict[repeat] = "duplicate"
        running = np.maximum.accumulate(np.concatenate(([state.last_ts], np.where(repeat, -1, ts))))[:-1]
        verdict[~repeat & (ts < running - self.tolerance_ns)] = "out_of_order"
        accepted = verdict == ""
        last_ts = max(state.last_ts, int(ts[accepted].max())) if accepted.any() else state.last_ts
        keep = accepted & (ts >= last_ts - self.horizon_ns)
        idx = np.flatnonzero(keep)[-self.max_keys:]
        recent_new = list(zip(pub[idx].tolist(), inst[idx].tolist(), ts[idx].tolist(), seq[idx].tolist()))
        kept_old = [k for k in state.recent if k[2] >= last_ts - self.horizon_ns]
        merged = kept_old + recent_new
        return GuardState(last_ts, frozenset(merged[-self.max_keys:])), verdict

