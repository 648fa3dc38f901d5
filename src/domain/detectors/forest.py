"""A fitted scikit-learn IsolationForest's trees as flat arrays, scored by one compiled loop.

`IsolationForest.score_samples` walks its trees one Python call at a time (about 3 ms for 48
trees however few trades are scored), a fixed cost paid per model per batch: at thousands of
symbols over several pools, and at the small batches a streaming worker takes, that dominates.
The trees fitted by scikit-learn are kept as they are; only their evaluation is compiled, and the
tests hold it equal to `score_samples`.

Score of a point (Liu, Ting & Zhou 2008, as scikit-learn computes it): 2 ** -(mean over trees of
the path length to its leaf plus c(n) for the n training points left in that leaf) / c(max_samples),
with c(n) the average path length of an unsuccessful search in a binary search tree of n keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from domain.compiled import kernel

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

EULER_GAMMA = 0.5772156649015329


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): 0 for n <= 1, 1 for n == 2, 2 (ln(n - 1) + gamma) - 2 (n - 1) / n beyond."""
    n = np.asarray(n, np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return out


@kernel
def _depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Edges from the root to each node (scikit-learn numbers a child after its parent)."""
    depth = np.zeros(len(left))
    for node in range(len(left)):
        if left[node] >= 0:
            depth[left[node]] = depth[right[node]] = depth[node] + 1.0
    return depth


@kernel
def _scores(x: np.ndarray, roots: np.ndarray, left: np.ndarray, right: np.ndarray, feature: np.ndarray,
            threshold: np.ndarray, leaf_length: np.ndarray, denominator: float) -> np.ndarray:
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        # Trees compare float32 features (scikit-learn casts its input), against float64 thresholds.
        x0, x1 = np.float64(np.float32(x[i, 0])), np.float64(np.float32(x[i, 1]))
        depth = 0.0
        for root in roots:
            node = root
            while left[node] >= 0:
                value = x0 if feature[node] == 0 else x1
                node = left[node] if value <= threshold[node] else right[node]
            depth += leaf_length[node]
        # A forest of single-point trees has c(1) = 0: scikit-learn then takes the ratio as 1.
        out[i] = 2.0 ** (-(depth / denominator if denominator > 0 else 1.0))
    return out


@dataclass(frozen=True, slots=True)
class CompiledForest:
    """Every tree's nodes in one set of arrays (children as absolute node numbers, -1 at leaves).
    Scores two-feature points; the features must be finite (the tail features are capped)."""

    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_length: np.ndarray  # at a leaf: its depth in edges + c(training points in it)
    denominator: float  # trees x c(max_samples)

    @classmethod
    def of(cls, forest: IsolationForest) -> CompiledForest:
        if forest.n_features_in_ != 2:
            raise ValueError(f"a compiled forest scores 2 features, this one was fitted on {forest.n_features_in_}")
        roots, left, right, feature, threshold, length = [], [], [], [], [], []
        offset = 0
        for estimator in forest.estimators_:
            tree = estimator.tree_
            depth = _depths(tree.children_left, tree.children_right)
            leaf = tree.children_left < 0
            roots.append(offset)
            left.append(np.where(leaf, -1, tree.children_left + offset))
            right.append(np.where(leaf, -1, tree.children_right + offset))
            feature.append(tree.feature)
            threshold.append(tree.threshold)
            length.append(np.where(leaf, depth + average_path_length(tree.n_node_samples), 0.0))
            offset += tree.node_count
        denominator = float(len(forest.estimators_) * average_path_length(np.array([forest.max_samples_]))[0])
        return cls(np.array(roots, np.int64), np.concatenate(left).astype(np.int64),
                   np.concatenate(right).astype(np.int64), np.concatenate(feature).astype(np.int64),
                   np.concatenate(threshold).astype(np.float64), np.concatenate(length), denominator)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores in (0, 1], higher is more isolated: -IsolationForest.score_samples(x)."""
        return _scores(np.ascontiguousarray(x, np.float64), self.roots, self.left, self.right, self.feature,
                       self.threshold, self.leaf_length, self.denominator)
