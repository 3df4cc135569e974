"""Estimator certification and the refinement curve, against the linear-Gaussian oracle."""

import pytest
import torch

from amortgap import certify, gaps, qstar
from amortgap.ais import AISConfig
from amortgap.families import DiagonalGaussian, PlanarFlow


@pytest.fixture(scope="module")
def simulated():
    from amortgap.linear_gaussian import LinearGaussian

    model = LinearGaussian.random(data_dim=10, latent_dim=3, seed=1, encoder_error=0.05)
    x, z = model.sample(40, torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    found = qstar.optimal_q(model, x)
    result = certify.certify(model, x, z, found.q, AISConfig(steps=300, chains=8, leapfrog_steps=10),
                             [AISConfig(steps=20, chains=4, leapfrog_steps=10), 2000], seed=0)  # fmt: skip
    return model, x, result


def test_the_sandwich_brackets_the_exact_log_likelihood(simulated):
    model, x, result = simulated
    exact = model.exact_log_px(x).double().numpy()
    lower, upper = result.estimates["reference_ais"].to_numpy(), result.estimates["bdmc_upper"].to_numpy()
    assert (lower - exact).mean() < 0.01 and (upper - exact).mean() > -0.01
    summary = result.summary()
    assert 0 <= summary.loc["sandwich", "error_nats"] < 0.05
    assert abs(summary.loc["iwae_2000", "error_nats"]) < 0.05
    assert summary.loc["ais_20x4", "evaluations"] == 20 * 4 * 10
    assert summary.loc["iwae_2000", "seconds_per_point"] > 0


def test_cheapest_within_picks_the_cheapest_accurate_estimator(simulated):
    summary = simulated[2].summary()
    summary.loc["ais_20x4", ["error_nats", "error_se"]] = [0.5, 0.01]
    assert certify.cheapest_within(summary, 0.1) == "iwae_2000"
    summary.loc["iwae_2000", ["error_nats", "error_se"]] = [0.02, 0.05]
    assert certify.cheapest_within(summary, 0.1) is None, "two standard errors count against the estimator"


def test_refinement_climbs_from_the_encoder_to_qstar(linear_model, linear_x):
    x = linear_x[:32]
    curve = qstar.refinement_curve(linear_model, x, [0, 5, 50, 400], elbo_samples=500)
    means = curve.groupby("steps").elbo.mean()
    amortized = linear_model.exact_elbo(x, linear_model.encode(x)).mean().item()
    optimal = linear_model.exact_elbo(x, linear_model.exact_qstar(x)).mean().item()
    assert means[0] == pytest.approx(amortized, abs=0.05)
    assert means[0] < means[5] < means[50] and means[400] > means[5]
    assert means[400] == pytest.approx(optimal, abs=0.05)
    assert (curve.groupby("steps").seconds_per_point.first() > 0).all()
    from_prior = qstar.refinement_curve(linear_model, x, [0, 5], init="prior", elbo_samples=500)
    assert from_prior.groupby("steps").elbo.mean()[5] < means[5], "the encoder is a warm start"


def test_optimal_elbo_of_a_family_agrees_with_decompose(linear_model, linear_x):
    x = linear_x[:24]
    config = gaps.DecomposeConfig(elbo_samples=500, iwae_samples=0, ais=AISConfig(steps=20, chains=2))
    ffg = gaps.optimal_elbo(linear_model, x, DiagonalGaussian(), config)
    reference = gaps.decompose(linear_model, x, config)
    assert ffg.elbo_optimal.mean() == pytest.approx(reference.elbo_optimal.mean(), abs=0.03)
    flow = gaps.optimal_elbo(linear_model, x, PlanarFlow(4), config, init="prior")
    assert flow.elbo_optimal.mean() > ffg.elbo_optimal.mean() - 0.02
    assert (flow.elbo_optimal < linear_model.exact_log_px(x).numpy() + 0.1).all()


def test_families_that_cannot_serve_are_refused_with_a_reason(linear_model, linear_x):
    from amortgap import models
    from amortgap.families import PlanarFlow

    with pytest.raises(ValueError, match="planar flow lacks"):
        gaps.decompose(linear_model, linear_x[:4], family=PlanarFlow(2))
    flow_vae = models.VAE(models.VAEConfig(data_dim=10, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8,),
                                           family="planar", flow_length=2))  # fmt: skip
    with pytest.raises(ValueError, match="use init='prior'"):
        qstar.optimal_q(flow_vae, linear_x[:4].round(), DiagonalGaussian())


def test_optimal_elbo_from_given_starting_parameters(linear_model, linear_x):
    """Started at the exact q*, the optimiser stays there; the start is sliced batch by batch."""
    x = linear_x[:24]
    exact = linear_model.exact_qstar(x)
    config = gaps.DecomposeConfig(elbo_samples=500, iwae_samples=0, ais=AISConfig(steps=20, chains=2), batch_size=10)
    table = gaps.optimal_elbo(linear_model, x, DiagonalGaussian(), config, init=DiagonalGaussian().params_from(exact))
    assert table.elbo_optimal.mean() == pytest.approx(linear_model.exact_elbo(x, exact).mean().item(), abs=0.03)
    assert len(table) == 24
