"""The leaderboard statistics against rliable (the reference implementation) and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from policies.benchmarks.statistics import (interval_estimates, iqm, mean, performance_profile,
                                            probability_of_improvement, stratified_bootstrap_ci)

rliable_metrics = pytest.importorskip("rliable.metrics")
rliable_library = pytest.importorskip("rliable.library")


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return {"a": rng.beta(5, 2, size=(5, 4)), "b": rng.beta(4, 3, size=(5, 4)), "c": rng.beta(4, 3, size=(7, 4))}


def test_iqm_by_hand_and_against_rliable(scores):
    values = np.arange(1.0, 9.0)[:, None]  # 8 runs of one task: the middle half is 3, 4, 5, 6
    assert iqm(values) == pytest.approx(4.5)
    for name, values in scores.items():
        assert iqm(values) == pytest.approx(float(rliable_metrics.aggregate_iqm(values)), abs=1e-12)
        assert mean(values) == pytest.approx(float(rliable_metrics.aggregate_mean(values)), abs=1e-12)


def test_probability_of_improvement_by_hand_and_against_rliable(scores):
    x, y = np.array([[1.0], [3.0]]), np.array([[2.0], [3.0]])  # pairs: 1<2, 1<3, 3>2, 3=3 -> (0+0+1+0.5)/4
    assert probability_of_improvement(x, y) == pytest.approx(0.375)
    for first, second in (("a", "b"), ("b", "c"), ("c", "a")):
        expected = float(rliable_metrics.probability_of_improvement(scores[first], scores[second]))
        assert probability_of_improvement(scores[first], scores[second]) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(scores["a"], scores["a"][:, :2])


def test_performance_profile_against_rliable(scores):
    taus = np.linspace(0, 1, 11)
    expected, _ = rliable_library.create_performance_profile(scores, taus, reps=10)
    for name, values in scores.items():
        np.testing.assert_allclose(performance_profile(values, taus), expected[name], atol=1e-12)


def test_stratified_bootstrap_interval_agrees_with_rliable(scores):
    """Different generators, so the intervals agree within the resampling noise of 5,000 repetitions."""
    ours = {k: stratified_bootstrap_ci(v, iqm, repetitions=5000, rng=np.random.default_rng(1)) for k, v in scores.items()}
    _, theirs = rliable_library.get_interval_estimates(
        scores, lambda x: np.array([rliable_metrics.aggregate_iqm(x)]), reps=5000,
        random_state=np.random.RandomState(1))
    for name in scores:
        np.testing.assert_allclose(ours[name], theirs[name][:, 0], atol=0.01)
    # stratified: a task whose runs all agree contributes no spread
    constant = np.tile(np.array([[0.2, 0.8]]), (6, 1))
    assert stratified_bootstrap_ci(constant, mean) == pytest.approx((0.5, 0.5))


def test_interval_estimates_are_reproducible_and_contain_the_point_estimate(scores):
    first, second = interval_estimates(scores, repetitions=500), interval_estimates(scores, repetitions=500)
    assert first == second
    for row in first.values():
        assert row["iqm_low"] <= row["iqm"] <= row["iqm_high"] and row["mean_low"] <= row["mean"] <= row["mean_high"]
    with pytest.raises(ValueError, match="non-empty"):
        iqm(np.zeros((0, 3)))
