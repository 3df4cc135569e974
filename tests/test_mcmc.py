"""HMC's running posterior summaries converge to the linear-Gaussian model's exact posterior."""

import pytest
import torch

from amortgap.linear_gaussian import LinearGaussian
from amortgap.mcmc import HMCConfig, hmc


@pytest.mark.slow
def test_hmc_posterior_means_converge_to_the_exact_ones_per_datapoint():
    model = LinearGaussian.random(data_dim=10, latent_dim=3, seed=1)
    x, _ = model.sample(32, torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    run = hmc(model, x, record=[10, 1000], config=HMCConfig(chains=4, burn_in=50))
    exact = model.posterior_mean(x)
    error = (run.mean_z - exact).pow(2).sum(-1)  # [R, B]
    posterior_sd = torch.linalg.inv(model.posterior_precision).diagonal().sqrt().max()
    assert error[1].sqrt().max() < 0.15 * posterior_sd * 3**0.5
    assert error[1].mean() < error[0].mean()
    assert run.evaluations == [4 * (1 + 60 * 10), 4 * (1 + 1050 * 10)]
    assert ((run.acceptance > 0.1) & (run.acceptance < 0.99)).all()
    assert run.seconds[1] > run.seconds[0] > 0


@pytest.mark.slow
def test_hmc_expected_log_likelihood_matches_the_closed_form():
    model = LinearGaussian.random(data_dim=10, latent_dim=3, seed=1)
    x, _ = model.sample(16, torch.Generator().manual_seed(2))
    torch.manual_seed(1)
    run = hmc(model, x, record=[2000], config=HMCConfig(chains=4, burn_in=50))
    posterior = model.exact_posterior(x)
    resid = x - (posterior.mean @ model.W.T + model.b)
    expected_sq = resid.pow(2) + torch.diagonal(model.W @ posterior.covariance_matrix[0] @ model.W.T)
    exact = -0.5 * ((expected_sq / model.psi).sum(-1) + model.psi.log().sum() + 10 * torch.log(torch.tensor(2 * torch.pi)))
    torch.testing.assert_close(run.mean_log_likelihood[0], exact, atol=0.15, rtol=0)


def test_hmc_refuses_an_empty_record():
    with pytest.raises(ValueError):
        hmc(LinearGaussian.random(), torch.zeros(2, 10), record=[])


def test_hmc_starts_from_the_given_distribution_and_keeps_each_chains_mean():
    """With no burn-in and steps too small to move, one kept transition reports the start: a point
    mass (scale 1e-6) at z0 gives every chain log p(x|z0); the chains' means average to the mean."""
    from amortgap.families import diagonal_gaussian

    model = LinearGaussian.random(data_dim=10, latent_dim=3, seed=1)
    x, _ = model.sample(4, torch.Generator().manual_seed(2))
    z0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    start = diagonal_gaussian(z0, torch.full_like(z0, -6 * 2.302585))
    run = hmc(model, x, record=[1, 2], config=HMCConfig(chains=3, burn_in=0, step_size=1e-9), init=start)
    assert run.chain_log_likelihood.shape == (2, 3, 4)
    torch.testing.assert_close(run.mean_log_likelihood, run.chain_log_likelihood.mean(1))
    expected = model.log_joint(x, z0[None])[0] - model.log_prior(z0[None])[0]
    torch.testing.assert_close(run.chain_log_likelihood[0], expected.expand(3, 4), atol=1e-3, rtol=0)
