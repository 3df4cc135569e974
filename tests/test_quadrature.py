"""The quadrature oracle against the linear-Gaussian model's closed forms, per datapoint."""

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
    loc, log_scale, elbo = exact_best_diagonal_gaussian(model, x, exact_posterior(model, x, points=101))
    qstar = model.exact_qstar(x)
    torch.testing.assert_close(loc, qstar.mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(log_scale.exp(), qstar.stddev, atol=1e-5, rtol=0)
    torch.testing.assert_close(elbo, model.exact_elbo(x, qstar), atol=1e-8, rtol=0)


def test_quadrature_needs_two_latent_dimensions():
    with pytest.raises(ValueError, match="2-dimensional"):
        exact_posterior(LinearGaussian.random(latent_dim=3), torch.zeros(1, 10))


@pytest.fixture
def float32_default():
    """The trained VAE is float32, as in the pipeline, whatever default the closed-form tests'
    module fixture (float64 while it lives) has left in place."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.slow
def test_every_estimator_against_quadrature_on_real_images(float32_default):
    """A 2-d-latent VAE briefly trained on real Fashion-MNIST images: AIS and IWAE against the exact
    log p(x), and the q* search against the exact best diagonal Gaussian, image by image."""
    from amortgap import data, gaps, models, train
    from amortgap.ais import AISConfig

    torch.manual_seed(0)
    model = models.VAE(models.VAEConfig(latent_dim=2, encoder_hidden=(64,), decoder_hidden=(64,)))
    x_train = data.load("train").x[:1000]
    x_valid = data.load_binarized("valid")[:200]
    model = train.train(model, x_train, x_valid, train.TrainConfig(epochs=3, batch_size=50, lr=3e-3),
                        progress=False).model  # fmt: skip
    model.requires_grad_(False)
    test_x = data.load_binarized("test")
    x = test_x[data.random_subset(len(test_x), 12, seed=0)]
    exact = exact_posterior(model, x, points=151)
    _, _, exact_qstar = exact_best_diagonal_gaussian(model, x, exact)
    table = gaps.decompose(model, x, gaps.DecomposeConfig(elbo_samples=2000, iwae_samples=5000, ais=AISConfig()))
    for column, truth, tolerance in (("log_px", exact.log_px, 0.1), ("log_px_iwae", exact.log_px, 0.1),
                                     ("elbo_optimal", exact_qstar, 0.05)):  # fmt: skip
        error = torch.tensor(table[column].to_numpy()) - truth.double()
        assert error.abs().max() < tolerance, (column, error)
    assert (torch.tensor(table.elbo_optimal.to_numpy()) <= exact_qstar.double() + 3 * torch.tensor(table.elbo_optimal_se.to_numpy())).all()


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
