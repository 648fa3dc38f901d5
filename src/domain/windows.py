"""Bounded sliding-window sums over event time, kept as a fixed number of time buckets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class BucketWindow:
    """The last `n_buckets` buckets of width `bucket_ns`: ids and sums, oldest first.

    Memory is bounded by the bucket count, not by the trade rate: a 60 s window in 1 s buckets
    keeps 60 numbers whether the symbol trades once a minute or ten thousand times a second.
    """

    bucket_ns: int
    n_buckets: int
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    sums: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))

    def copy(self) -> BucketWindow:
        return BucketWindow(self.bucket_ns, self.n_buckets, self.ids.copy(), self.sums.copy())

    def push(self, ts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Add trades (event-time ordered); return each trade's window sum including itself.

        The window of a trade in bucket b covers buckets b - n_buckets + 1 .. b, the current
        bucket only up to and including that trade.
        """
        if len(ts) == 0:
            return np.empty(0, np.float64)
        bucket = ts // self.bucket_ns
        new_ids, first = np.unique(bucket, return_index=True)
        new_sums = np.add.reduceat(weights, first)
        # Merge the buckets kept from earlier batches with this batch's; ids are sorted.
        keep = self.ids < new_ids[0]
        ids = np.concatenate((self.ids[keep], new_ids))
        sums = np.concatenate((self.sums[keep], new_sums))
        carried = self.sums[~keep].sum() if (~keep).any() else 0.0
        if (~keep).any():
            # The batch continues the last kept bucket: fold the carried sum into it.
            sums[len(self.ids[keep])] += carried
        cum = np.concatenate(([0.0], np.cumsum(sums)))
        pos = np.searchsorted(ids, bucket)
        lo = np.searchsorted(ids, bucket - self.n_buckets + 1)
        before = cum[pos] - cum[lo]
        # Within-bucket running sum for each trade, including the carried part of its bucket.
        run = np.cumsum(weights)
        start_run = np.repeat(np.concatenate(([0.0], run[first[1:] - 1])), np.diff(np.append(first, len(ts))))
        within = run - start_run
        if carried:
            within[bucket == new_ids[0]] += carried
        tail = ids >= ids[-1] - self.n_buckets + 1
        self.ids, self.sums = ids[tail], sums[tail]
        return before + within
