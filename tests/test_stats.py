import math

import numpy as np
import pytest

from amortgap.stats import crossed_interval, mean_ci, t_quantile, trend


@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (4, 2.776), (30, 2.042), (10_000, 1.960)])
def test_t_quantiles_match_the_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-3)


def test_mean_ci():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3), abs=1e-3)
    assert math.isnan(mean_ci([5.0])[1])
    with pytest.raises(ValueError):
        t_quantile(0.3, 2)


def _crossed(rng, mu=0.0, S=3, N=60, seed_sd=1.0, image_sd=2.0, noise_sd=1.0):
    return (mu + seed_sd * rng.standard_normal((S, 1)) + image_sd * rng.standard_normal((1, N))
            + noise_sd * rng.standard_normal((S, N)))  # fmt: skip


@pytest.mark.parametrize("seed_sd, image_sd", [(1.0, 2.0), (0.0, 2.0), (2.0, 0.0)])
def test_crossed_interval_covers_the_true_mean_near_95_percent_of_the_time(seed_sd, image_sd):
    # Satterthwaite's df is itself estimated, so with 3 seeds coverage runs a little under nominal (91% at worst here)
    rng = np.random.default_rng(0)
    trials = 600
    hits = 0
    for _ in range(trials):
        ci = crossed_interval(_crossed(rng, 3.0, seed_sd=seed_sd, image_sd=image_sd))
        hits += ci.low <= 3.0 <= ci.high
    assert 0.9 <= hits / trials <= 0.99


def test_crossed_interval_is_wider_than_an_images_only_interval_when_seeds_differ():
    rng = np.random.default_rng(1)
    v = _crossed(rng, seed_sd=3.0)
    images_only = crossed_interval(v.mean(0, keepdims=True))
    both = crossed_interval(v)
    assert both.high - both.low > 2 * (images_only.high - images_only.low)
    assert both.mean == pytest.approx(v.mean())


def test_one_seed_gives_the_t_interval_over_images():
    values = np.array([[1.0, 2.0, 4.0, 7.0]])
    mean, half = mean_ci(values[0])
    ci = crossed_interval(values)
    assert (ci.mean, ci.high - ci.mean) == pytest.approx((mean, half))


def test_a_seed_component_estimated_negative_counts_as_zero():
    """Seeds whose means agree exactly (MS_seed = 0, below MS_residual): the seed component is set to
    zero, not let negative, so the interval is the one over image means alone (variance MS_image /
    (S N)), never narrower. Left negative, it would subtract the residual's share."""
    rng = np.random.default_rng(3)
    v = _crossed(rng, seed_sd=0.0)
    v -= v.mean(1, keepdims=True) - v.mean()
    over_images = v.mean(0)
    ci = crossed_interval(v)
    assert ci.se == pytest.approx(over_images.std(ddof=1) / math.sqrt(len(over_images)), rel=1e-12)
    assert ci.high - ci.mean == pytest.approx(mean_ci(over_images)[1], rel=1e-12)


def test_crossed_interval_refuses_bad_input():
    with pytest.raises(ValueError):
        crossed_interval(np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        crossed_interval(np.array([[1.0, np.nan]]))


@pytest.mark.parametrize("shifts, word", [
    ([0, 1, 2, 3], "rises"),
    ([3, 2, 2, 0], "falls"),
    ([0, 2, 0.5, 3], "is non-monotone"),
    ([0, 0, 0, 0], "shows no resolved change"),
])  # fmt: skip
def test_trend_words_come_from_the_intervals(shifts, word):
    rng = np.random.default_rng(2)
    images = rng.standard_normal((1, 200)) * 5
    levels = [s + images + 0.1 * rng.standard_normal((3, 200)) for s in shifts]
    assert trend(levels) == word


def test_values_without_any_spread_have_an_interval_of_zero_width():
    interval = crossed_interval(np.full((2, 3), 5.0))
    assert (interval.mean, interval.low, interval.high, interval.se) == (5.0, 5.0, 5.0, 0.0)
