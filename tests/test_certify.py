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

    with pytest.raises(ValueError, match="a flow lacks"):
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


def test_ais_against_a_long_reference_from_each_start(linear_model, linear_x):
    """Per datapoint, the long reference from q* lands on the exact log p(x); from the prior the same
    setting scatters by its much wider SE (in 3 dimensions, up to 0.7 nats either way at 300 steps),
    a short run from the prior lies far below, and each error is the yardstick (the first start's
    reference) minus the estimate."""
    x = linear_x[:24]
    exact = linear_model.exact_log_px(x).double().numpy()
    table = certify.ais_against_reference(linear_model, x, {"qstar": linear_model.exact_qstar(x), "prior": None},
                                          AISConfig(steps=300, chains=8), [AISConfig(steps=3, chains=2)], seed=0)  # fmt: skip
    assert len(table) == 2 * 2 * 24
    reference = table[(table.start == "qstar") & (table.estimator == "reference")].log_px.to_numpy()
    assert abs(reference - exact).max() < 0.1
    row = table.iloc[-1]
    assert row.error == pytest.approx(reference[row.datapoint] - row.log_px)
    summary = certify.reference_summary(table).set_index(["start", "estimator"])
    assert summary.loc[("prior", "ais_3x2"), "error_nats"] > summary.loc[("qstar", "ais_3x2"), "error_nats"] + 0.5
    assert not summary.loc[("prior", "ais_3x2"), "within_se"]
    assert summary.loc[("qstar", "reference"), "evaluations"] == 300 * 8 * 5
    assert summary.loc[("qstar", "reference"), "error_max"] == 0
    assert summary.loc[("prior", "reference"), "reported_se"] > 3 * summary.loc[("qstar", "reference"), "reported_se"]
    with pytest.raises(ValueError, match="start"):
        certify.ais_against_reference(linear_model, x, {}, AISConfig(steps=3, chains=2), [])


def test_within_se_counts_the_error_against_what_the_interval_shows():
    import pandas as pd

    table = pd.DataFrame({"start": "qstar", "estimator": "ais_5x2", "datapoint": range(100), "evaluations": 50,
                          "seconds_per_point": 0.1, "log_px": 0.0, "log_px_se": 0.2,
                          "error": [0.05, 0.15] * 50})  # fmt: skip
    row = certify.reference_summary(table).iloc[0]
    assert row.error_nats == pytest.approx(0.1) and row.within_se  # 0.1 + 2 x 0.005 < 0.2
    assert row.share_beyond_2se == 0
    table["error"] = [0.15, 0.25] * 50
    row = certify.reference_summary(table).iloc[0]
    assert not row.within_se and row.error_max == pytest.approx(0.25)


@pytest.mark.slow
def test_validation_on_simulated_images_brackets_the_exact_log_likelihood_per_image(linear_model):
    """The reference AIS from q* lies below the exact log p(x) and BDMC from the generating z above it,
    image by image (up to their noise); the true error of each setting lies between ``error`` and
    ``error_upper``."""
    reference = AISConfig(steps=300, chains=8)
    table = certify.validate_simulated(linear_model, 24, qstar.QStarConfig(), reference, [AISConfig(steps=3, chains=2)])
    x, _ = linear_model.sample(24, torch.Generator().manual_seed(0))  # the same images
    exact = linear_model.exact_log_px(x).double().numpy()
    rows = table.set_index(["start", "estimator"])
    assert sorted(set(table.estimator)) == ["ais_3x2", "bdmc", "reference"] and len(table) == 2 * 3 * 24
    lower, upper = rows.loc[("qstar", "reference")].log_px.to_numpy(), rows.loc[("qstar", "bdmc")].log_px.to_numpy()
    assert (lower - exact).max() < 0.1 and (exact - upper).max() < 0.1
    assert (upper - lower).mean() == pytest.approx(-rows.loc[("qstar", "bdmc")].error.mean())
    short = rows.loc[("prior", "ais_3x2")]
    true_error = exact - short.log_px.to_numpy()
    assert (short.error.to_numpy() - 0.1 < true_error).all() and (true_error < short.error_upper.to_numpy() + 0.1).all()
    summary = certify.reference_summary(table).set_index(["start", "estimator"])
    assert summary.loc[("qstar", "reference"), "error_upper_nats"] == pytest.approx((upper - lower).mean())
    assert not summary.loc[("prior", "ais_3x2"), "within_se"]


@pytest.mark.slow
def test_validation_on_real_images_searches_qstar_and_runs_ais_from_both_starts(linear_model, linear_x):
    x = linear_x[:16]
    torch.manual_seed(0)
    search, table = certify.validate_real(linear_model, x, qstar.QStarConfig(), prior_starts=2, perturbed_starts=1,
                                          perturb_scale=2.0, reference=AISConfig(steps=300, chains=8),
                                          candidates=[AISConfig(steps=3, chains=2)])  # fmt: skip
    assert list(search.columns[:4]) == ["encoder", "prior_1", "prior_2", "perturbed_3"] and len(search) == 16
    assert search.first_start_deficit.max() < 0.05, "the linear-Gaussian ELBO is concave: every start ends at q*"
    reference = table[(table.start == "qstar") & (table.estimator == "reference")].log_px.to_numpy()
    assert abs(reference - linear_model.exact_log_px(x).double().numpy()).max() < 0.1
    assert set(table.start) == {"qstar", "prior"} and len(table) == 2 * 2 * 16


def test_certification_from_the_prior_on_a_small_vae():
    from amortgap import models

    torch.manual_seed(0)
    vae = models.VAE(models.VAEConfig(data_dim=12, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(8,)))
    reference = AISConfig(steps=100, chains=4)
    result = certify.certify_simulated(vae, 10, reference, [AISConfig(steps=5, chains=2)], qstar.QStarConfig(max_steps=50),
                                       start="prior")  # fmt: skip
    lower, upper = result.estimates["reference_ais"], result.estimates["bdmc_upper"]
    assert (upper - lower).mean() > -0.05 and len(lower) == 10
    with pytest.raises(ValueError, match="start"):
        certify.certify_simulated(vae, 10, reference, [], qstar.QStarConfig(), start="encoder")
