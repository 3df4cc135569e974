"""The oracle itself must be right: its closed forms agree with each other and with torch."""

import torch
from torch.distributions import kl_divergence, MultivariateNormal

from amortgap.families import diagonal_gaussian
from amortgap.linear_gaussian import LinearGaussian


def test_elbo_gap_is_kl_to_the_exact_posterior(linear_model, linear_x):
    q = linear_model.encode(linear_x)
    q_full = MultivariateNormal(q.mean, covariance_matrix=torch.diag_embed(q.variance))
    kl = kl_divergence(q_full, linear_model.exact_posterior(linear_x))
    gap = linear_model.exact_log_px(linear_x) - linear_model.exact_elbo(linear_x, q)
    torch.testing.assert_close(gap, kl, atol=1e-3, rtol=1e-4)


def test_exact_log_px_is_bayes_rule(linear_model, linear_x):
    """log p(x) = log p(x, z) - log p(z|x) at any z."""
    z = torch.randn(4, *linear_x.shape[:1], linear_model.latent_dim)
    via_bayes = linear_model.log_joint(linear_x, z) - linear_model.exact_posterior(linear_x).log_prob(z)
    torch.testing.assert_close(via_bayes, linear_model.exact_log_px(linear_x).expand(4, -1), atol=1e-3, rtol=1e-4)


def test_qstar_is_the_best_diagonal_gaussian(linear_model, linear_x):
    qstar = linear_model.exact_qstar(linear_x)
    best = linear_model.exact_elbo(linear_x, qstar)
    loc, log_scale = qstar.mean, qstar.stddev.log()
    for _ in range(20):
        nudged = diagonal_gaussian(loc + 0.05 * torch.randn_like(loc), log_scale + 0.05 * torch.randn_like(loc))
        assert (linear_model.exact_elbo(linear_x, nudged) < best).all()


def test_optimal_encoder_outputs_qstar(linear_model, linear_x):
    exact = LinearGaussian(linear_model.W, linear_model.b, linear_model.psi)
    gaps = exact.exact_gaps(linear_x)
    torch.testing.assert_close(gaps["amortization_gap"], torch.zeros(len(linear_x)), atol=1e-4, rtol=0)
    assert (gaps["approximation_gap"] > 0.01).all(), "a correlated posterior must leave an approximation gap"


def test_random_model_has_both_gaps(linear_model, linear_x):
    gaps = linear_model.exact_gaps(linear_x)
    assert gaps["amortization_gap"].mean() > 0.2 and gaps["approximation_gap"].mean() > 0.1
    torch.testing.assert_close(gaps["inference_gap"], gaps["approximation_gap"] + gaps["amortization_gap"])
