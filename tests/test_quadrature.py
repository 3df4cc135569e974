"""The quadrature oracle against the linear-Gaussian model's closed forms, per datapoint."""

import math

import pytest
import torch

from amortgap.linear_gaussian import LinearGaussian
from amortgap.quadrature import exact_best_diagonal_gaussian, exact_posterior, gauss_hermite_elbo


@pytest.fixture(scope="module")
def model_and_x():
    torch.set_default_dtype(torch.float64)
    try:
        model = LinearGaussian.random(data_dim=6, latent_dim=2, seed=3, noise_scale=0.3)
        x, _ = model.sample(20, torch.Generator().manual_seed(0))
        yield model, x
    finally:
        torch.set_default_dtype(torch.float32)


def test_quadrature_gives_log_px_and_the_posterior_moments_per_datapoint(model_and_x):
    model, x = model_and_x
    exact = exact_posterior(model, x, points=101)
    truth = model.exact_posterior(x)
    torch.testing.assert_close(exact.log_px, model.exact_log_px(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(exact.mean, truth.mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(exact.covariance, truth.covariance_matrix, atol=1e-6, rtol=1e-5)
    assert (exact.quadrature_error < 1e-6).all()


def test_gauss_hermite_elbo_is_exact_for_any_diagonal_gaussian(model_and_x):
    model, x = model_and_x
    g = torch.Generator().manual_seed(1)
    loc, log_scale = torch.randn(len(x), 2, generator=g), 0.3 * torch.randn(len(x), 2, generator=g) - 1
    q = torch.distributions.Independent(torch.distributions.Normal(loc, log_scale.exp()), 1)
    torch.testing.assert_close(gauss_hermite_elbo(model, x, loc, log_scale), model.exact_elbo(x, q), atol=1e-8, rtol=0)


def test_the_best_diagonal_gaussian_is_the_closed_form_one(model_and_x):
    model, x = model_and_x
    found = exact_best_diagonal_gaussian(model, x, exact_posterior(model, x, points=101))
    qstar = model.exact_qstar(x)
    torch.testing.assert_close(found.loc, qstar.mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(found.log_scale.exp(), qstar.stddev, atol=1e-5, rtol=0)
    torch.testing.assert_close(found.elbo, model.exact_elbo(x, qstar), atol=1e-8, rtol=0)
    assert found.checked.all() and (found.start == 0).all()


class _NarrowTwoModes:
    """p(x, z) = w1 N(z; m1, s^2 I) + w2 N(z; m2, s^2 I) in 2 dimensions, the same for every x: two
    modes 0.02 wide, far apart (the committed oracle's failures had posteriors this narrow, below
    its first grid's spacing). log p(x) = log(w1 + w2); the posterior is the normalised mixture."""

    latent_dim = 2
    weights = torch.tensor([0.7, 1.9], dtype=torch.float64)
    modes = torch.tensor([[1.3, -0.7], [-2.1, 1.9]], dtype=torch.float64)
    scale = 0.02

    def log_joint(self, x, z):
        normal = torch.distributions.Independent(torch.distributions.Normal(self.modes, self.scale), 1)
        return torch.logsumexp(normal.log_prob(z.unsqueeze(-2)) + self.weights.log(), -1)


def test_quadrature_resolves_narrow_modes_far_apart():
    model, x = _NarrowTwoModes(), torch.zeros(3, 1, dtype=torch.float64)
    exact = exact_posterior(model, x)
    p = model.weights / model.weights.sum()
    mean = p @ model.modes
    covariance = model.scale**2 * torch.eye(2, dtype=torch.float64) + sum(
        p[k] * torch.outer(model.modes[k] - mean, model.modes[k] - mean) for k in range(2))
    torch.testing.assert_close(exact.log_px, model.weights.sum().log().expand(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(exact.mean, mean.expand(3, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(exact.covariance, covariance.expand(3, 2, 2), atol=1e-6, rtol=1e-6)
    assert (exact.quadrature_error < 1e-4).all() and (exact.passes >= 3).all()
    assert (exact.points > 201).all(), "modes this far apart keep the box wide: it needs a finer grid"
    with pytest.raises(ValueError, match="min_passes"):
        exact_posterior(model, x, min_passes=1)


def test_the_exact_qstar_keeps_each_images_best_start_and_checks_it():
    """Two narrow modes far apart, where q* is the heavier mode's component (ELBO log w2: the modes do
    not overlap). Each image keeps its best start: the mean-field start over one at the lighter mode,
    and, with the optimiser cut to one iteration, a start at the heavier mode over both. Cut short
    from the mean-field start alone, q* fails its check (its gradient is not zero)."""
    model, x = _NarrowTwoModes(), torch.zeros(3, 1, dtype=torch.float64)
    exact = exact_posterior(model, x)
    log_scale = torch.full((3, 2), math.log(model.scale), dtype=torch.float64)
    light, heavy = (model.modes[0].expand(3, 2), log_scale), (model.modes[1].expand(3, 2), log_scale)
    found = exact_best_diagonal_gaussian(model, x, exact, starts=(light,))
    assert (found.start == 0).all() and found.checked.all()
    torch.testing.assert_close(found.elbo, model.weights[1].log().expand(3), atol=1e-6, rtol=0)
    cut = exact_best_diagonal_gaussian(model, x, exact, starts=(light, heavy), iterations=1, rounds=1)
    assert (cut.start == 2).all()
    torch.testing.assert_close(cut.elbo, found.elbo, atol=1e-6, rtol=0)
    assert not exact_best_diagonal_gaussian(model, x, exact, iterations=1, rounds=1).checked.any()
