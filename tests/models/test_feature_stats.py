"""Deployment feature statistics: running estimates, their window, bands, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ModelError
from models.feature_stats import (
    BANDS,
    AdaptationSettings,
    DeploymentStats,
    RunningStats,
    band_of,
)


def test_running_stats_move_from_the_prior_to_the_data() -> None:
    rng = np.random.default_rng(0)
    stats = RunningStats(np.zeros(3), np.ones(3), count=10, window=1e9)
    data = rng.normal(loc=[5.0, -2.0, 0.0], scale=[2.0, 0.5, 1.0], size=(5000, 3))
    stats.update(data)
    # 10 prior utterances against 5000 observed: the data's mean and spread.
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(stats.std, data.std(axis=0), rtol=0.05)
    assert stats.observed == 5000


def test_the_prior_weighs_as_many_utterances_as_it_is_given() -> None:
    stats = RunningStats(np.zeros(1), np.ones(1), count=100, window=1e9)
    stats.update(np.full((100, 1), 2.0))
    assert stats.mean[0] == pytest.approx(1.0)  # 100 prior at 0, 100 observed at 2


def test_a_full_window_keeps_following_the_stream() -> None:
    stats = RunningStats(np.zeros(1), np.ones(1), count=10, window=50)
    stats.update(np.full((500, 1), 4.0))
    stats.update(np.full((500, 1), -4.0))
    # An unbounded average would sit at 0; the window has forgotten the first half.
    assert stats.mean[0] == pytest.approx(-4.0, abs=0.01)


def test_bands_are_kept_apart_and_standardise_with_their_own_statistics() -> None:
    prior_mean = np.array([[0.0, 0.0], [10.0, 10.0]])
    prior_var = np.ones((2, 2))
    stats = DeploymentStats(prior_mean, prior_var, AdaptationSettings(prior_weight=1,
                                                                      window=100))
    assert BANDS == ("wideband", "telephone")
    z = stats.standardise(np.array([[10.0, 10.0], [10.0, 10.0]]), ["wideband", "telephone"])
    np.testing.assert_allclose(z, [[10.0, 10.0], [0.0, 0.0]])
    stats.observe(np.full((20, 2), 3.0), ["wideband"] * 20)
    assert stats.observed() == {"wideband": 20, "telephone": 0}
    np.testing.assert_allclose(stats.bands["telephone"].mean, [10.0, 10.0])
    with pytest.raises(ModelError, match="unknown input kind 'satellite'"):
        stats.standardise(np.zeros((1, 2)), ["satellite"])


def test_follow_false_keeps_the_training_population() -> None:
    stats = DeploymentStats(np.zeros((2, 2)), np.ones((2, 2)),
                            AdaptationSettings(follow=False))
    stats.observe(np.full((50, 2), 7.0), ["wideband"] * 50)
    np.testing.assert_allclose(stats.bands["wideband"].mean, [0.0, 0.0])


def test_saved_statistics_continue_where_they_stopped() -> None:
    settings = AdaptationSettings(prior_weight=5, window=1000)
    first = DeploymentStats(np.zeros((2, 4)), np.ones((2, 4)), settings)
    first.observe(np.random.default_rng(1).normal(3.0, 2.0, size=(300, 4)), ["telephone"] * 300)
    data = first.to_bytes("model-a")
    second = DeploymentStats(np.zeros((2, 4)), np.ones((2, 4)), settings)
    second.load_bytes(data, "model-a", "stats.npz")
    for band in BANDS:
        np.testing.assert_allclose(second.bands[band].mean, first.bands[band].mean)
        np.testing.assert_allclose(second.bands[band].var, first.bands[band].var)
        assert second.bands[band].count == first.bands[band].count


def test_statistics_of_another_model_or_a_damaged_file_are_refused() -> None:
    stats = DeploymentStats(np.zeros((2, 4)), np.ones((2, 4)))
    data = stats.to_bytes("model-a")
    with pytest.raises(ModelError, match="statistics of model 'model-a'.*'model-b'"):
        stats.load_bytes(data, "model-b", "stats.npz")
    with pytest.raises(ModelError, match="stats.npz: not a feature statistics file"):
        stats.load_bytes(b"garbage", "model-a", "stats.npz")
    other = DeploymentStats(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ModelError, match="damaged statistics"):
        other.load_bytes(data, "model-a", "stats.npz")


def test_settings_and_shapes_are_checked() -> None:
    with pytest.raises(ModelError, match="prior_weight <= window"):
        AdaptationSettings(prior_weight=10, window=5)
    with pytest.raises(ModelError, match="must both be"):
        DeploymentStats(np.zeros((3, 4)), np.ones((3, 4)))


@pytest.mark.parametrize(("rate", "band"), [(8000, "telephone"), (16000, "wideband"),
                                            (None, "wideband"), (44100, "wideband")])
def test_band_of_sample_rate(rate: int | None, band: str) -> None:
    assert band_of(rate) == band
