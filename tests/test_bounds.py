"""Every estimator of log p(x) and of the ELBO, checked against the closed-form linear-Gaussian model."""

import pytest
import torch

from amortgap import bounds
from amortgap.ais import AISConfig, ais, annealing_schedule, bdmc_upper_bound
from amortgap.linear_gaussian import LinearGaussian

TOL = 0.05  # nats


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_elbo_matches_closed_form_within_its_standard_error(linear_model, linear_x):
    q = linear_model.encode(linear_x)
    estimate = bounds.elbo(linear_model, linear_x, q, num_samples=2000, max_pairs=4096)
    z_scores = (estimate.value - linear_model.exact_elbo(linear_x, q)) / estimate.stderr
    assert z_scores.abs().max() < 4.5
    assert z_scores.mean().abs() < 4 / len(linear_x) ** 0.5  # unbiased: the mean z-score is ~N(0, 1/B)
    assert estimate.num_samples == 2000


def test_elbo_defaults_to_the_encoder(linear_model, linear_x):
    estimate = bounds.elbo(linear_model, linear_x, num_samples=4000)
    exact = linear_model.exact_elbo(linear_x, linear_model.encode(linear_x))
    assert (estimate.value - exact).mean().abs() < TOL / 5


def test_iwae_rises_with_k_towards_log_px(linear_model, linear_x):
    log_px = linear_model.exact_log_px(linear_x)
    q = linear_model.encode(linear_x)
    gaps = [(log_px - bounds.iwae(linear_model, linear_x, q, k).value).mean().item() for k in (1, 10, 100, 5000)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[0] > 0.5 and 0 <= gaps[-1] < 0.1, gaps


def test_iwae_with_one_sample_is_an_elbo_sample_and_ess_is_bounded(linear_model, linear_x):
    estimate = bounds.iwae(linear_model, linear_x, num_samples=300)
    assert ((estimate.ess >= 1 - 1e-4) & (estimate.ess <= 300 + 1e-3)).all()
    one = bounds.iwae(linear_model, linear_x, num_samples=1)
    torch.testing.assert_close(one.ess, torch.ones(len(linear_x)))


@pytest.mark.slow
@pytest.mark.parametrize("start", ["prior", "qstar"])
def test_ais_and_bdmc_bracket_log_px(linear_model, linear_x, start):
    log_px = linear_model.exact_log_px(linear_x)
    init = linear_model.exact_qstar(linear_x) if start == "qstar" else None
    config = AISConfig(steps=500, chains=16)
    lower = ais(linear_model, linear_x, init, config)
    posterior = linear_model.exact_posterior(linear_x).sample((config.chains,))
    upper = bdmc_upper_bound(linear_model, linear_x, posterior, init, config)
    lower_err, upper_err = (lower.log_px - log_px).mean(), (upper.log_px - log_px).mean()
    assert -TOL < lower_err < 0.01, lower_err
    assert -0.01 < upper_err < TOL, upper_err
    assert lower.log_px.mean() < upper.log_px.mean()
    assert 0.4 < lower.acceptance.mean() < 0.9 and 0.4 < upper.acceptance.mean() < 0.9


def test_bdmc_accepts_one_exact_sample_per_datapoint(linear_model):
    """On simulated data the generating z is the one exact posterior sample we have."""
    x, z = linear_model.sample(64, torch.Generator().manual_seed(5))
    init = linear_model.encode(x)
    upper = bdmc_upper_bound(linear_model, x, z, init, AISConfig(steps=300, chains=4))
    assert upper.log_weights.shape == (4, 64)
    assert 0 < (upper.log_px - linear_model.exact_log_px(x)).mean() < TOL


def test_short_ais_is_looser_than_long_ais(linear_model, linear_x):
    log_px = linear_model.exact_log_px(linear_x)
    short = ais(linear_model, linear_x, config=AISConfig(steps=5, chains=4))
    long = ais(linear_model, linear_x, config=AISConfig(steps=300, chains=4))
    assert (log_px - short.log_px).mean() > 3 * (log_px - long.log_px).mean().abs() + 0.1


def test_sigmoid_schedule_is_monotone_from_zero_to_one():
    for kind in ("sigmoid", "linear"):
        betas = annealing_schedule(100, kind)
        assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    sigmoid = annealing_schedule(100).diff()
    assert sigmoid[0] < sigmoid[50] and sigmoid[-1] < sigmoid[50]


def test_chunking_bounds_memory_without_changing_the_estimate(linear_model, linear_x):
    q = linear_model.encode(linear_x)
    torch.manual_seed(1)
    whole = bounds.log_weights_chunked(linear_model, linear_x, q, 1000, max_pairs=10**9)
    torch.manual_seed(1)
    chunked = bounds.log_weights_chunked(linear_model, linear_x, q, 1000, max_pairs=64 * 7)
    assert chunked.shape == whole.shape == (1000, 64)
    assert (chunked.mean(0) - whole.mean(0)).abs().max() < 0.1


@pytest.mark.parametrize("bad", [dict(steps=0), dict(chains=0), dict(step_size=-1.0), dict(schedule="cubic"),
                                 dict(target_acceptance=1.5)])
def test_ais_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        AISConfig(**bad)


def test_log_weights_need_a_sample():
    with pytest.raises(ValueError, match="num_samples"):
        bounds.log_weights_chunked(None, torch.zeros(2, 3), None, 0)


@pytest.mark.slow
def test_default_ais_meets_a_tenth_of_a_nat_per_datapoint_and_its_standard_error_is_calibrated():
    model = LinearGaussian.random(data_dim=50, latent_dim=10, seed=1, noise_scale=0.5, encoder_error=0.05)
    x, _ = model.sample(200, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    result = ais(model, x, model.exact_qstar(x))
    error = result.log_px - model.exact_log_px(x)
    assert error.abs().quantile(0.95) < 0.1, error.abs().quantile(0.95)
    assert error.mean().abs() < 0.02
    assert 0.85 < (error.abs() < 2 * result.log_px_se).float().mean() < 1.0
