"""The compiled evaluation of a fitted IsolationForest gives scikit-learn's own scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from domain.detectors.forest import CompiledForest, average_path_length


@pytest.mark.parametrize("n_train", [1, 2, 3, 300, 512])
def test_compiled_scores_equal_score_samples(n_train: int) -> None:
    rng = np.random.default_rng(n_train)
    train = rng.exponential(size=(n_train, 2)).astype(np.float32).astype(np.float64)
    forest = IsolationForest(n_estimators=48, max_samples=min(256, n_train), random_state=7).fit(train)
    # Far points, near points, the training points themselves and points exactly on split thresholds.
    on_splits = forest.estimators_[0].tree_.threshold[forest.estimators_[0].tree_.children_left >= 0]
    points = np.vstack([rng.exponential(size=(500, 2)) * 4, train,
                        np.column_stack([on_splits, on_splits])])
    np.testing.assert_allclose(CompiledForest.of(forest).scores(points), -forest.score_samples(points),
                               rtol=0, atol=1e-12)


def test_average_path_length_is_the_bst_unsuccessful_search_length() -> None:
    c = average_path_length(np.array([0, 1, 2, 3, 256]))
    assert c[:3].tolist() == [0.0, 0.0, 1.0]
    assert c[3] == pytest.approx(2 * (np.log(2) + 0.5772156649015329) - 4 / 3)
    assert 9.0 < c[4] < 10.5  # about 2 ln(n) - 1.42 for large n


def test_a_forest_of_other_than_two_features_is_refused() -> None:
    forest = IsolationForest(n_estimators=2, random_state=0).fit(np.zeros((8, 3)))
    with pytest.raises(ValueError, match="2 features"):
        CompiledForest.of(forest)
