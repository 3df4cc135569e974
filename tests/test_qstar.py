"""q* and semi-amortized refinement against the closed-form q* of the linear-Gaussian model."""

import pytest
import torch

from amortgap import qstar
from amortgap.families import DiagonalGaussian


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("init", ["encoder", "prior"])
def test_qstar_matches_the_closed_form(linear_model, linear_x, init):
    result = qstar.optimal_q(linear_model, linear_x, init=init)
    exact = linear_model.exact_qstar(linear_x)
    deficit = linear_model.exact_elbo(linear_x, exact) - linear_model.exact_elbo(linear_x, result.q)
    assert deficit.min() > -1e-4, "nothing beats the exact q*"
    assert deficit.mean() < 0.01 and deficit.max() < 0.05
    assert (result.q.mean - exact.mean).abs().max() < 0.05
    assert (result.q.stddev / exact.stddev - 1).abs().max() < 0.1
    assert result.converged.all()


def test_each_datapoint_stops_on_its_own(linear_model, linear_x):
    result = qstar.optimal_q(linear_model, linear_x)
    assert result.steps.unique().numel() > 1, "points should converge at different steps"
    from_prior = qstar.optimal_q(linear_model, linear_x, init="prior")
    assert from_prior.steps.float().mean() > result.steps.float().mean(), "the encoder is a warm start"


def test_max_steps_bounds_the_work(linear_model, linear_x):
    result = qstar.optimal_q(linear_model, linear_x, config=qstar.QStarConfig(max_steps=30), init="prior")
    assert (result.steps == 30).all() and not result.converged.any()


def test_rows_are_optimised_independently(linear_model, linear_x):
    """Optimising a datapoint alone or among others gives the same answer (up to Monte Carlo noise)."""
    together = qstar.optimal_q(linear_model, linear_x[:8]).q
    alone = qstar.optimal_q(linear_model, linear_x[:1]).q
    assert (together.mean[0] - alone.mean[0]).abs().max() < 0.03


def test_refinement_closes_the_amortization_gap(linear_model, linear_x):
    qstar_elbo = linear_model.exact_elbo(linear_x, linear_model.exact_qstar(linear_x))
    remaining = []
    config = qstar.QStarConfig(num_samples=50)  # the noise floor of constant-rate steps shrinks with samples
    for k in (0, 1, 5, 20, 100):
        q = qstar.refine(linear_model, linear_x, k, config=config).q
        remaining.append((qstar_elbo - linear_model.exact_elbo(linear_x, q)).mean().item())
    assert all(a > b for a, b in zip(remaining, remaining[1:])), remaining
    assert remaining[-1] < 0.05 * remaining[0]


def test_zero_refinement_steps_is_the_encoder(linear_model, linear_x):
    q = qstar.refine(linear_model, linear_x, 0).q
    encoder = linear_model.encode(linear_x)
    torch.testing.assert_close(q.mean, encoder.mean)
    torch.testing.assert_close(q.stddev, encoder.stddev)


def test_bad_arguments_are_refused(linear_model, linear_x):
    with pytest.raises(ValueError, match="init"):
        qstar.optimal_q(linear_model, linear_x, init="zeros")
    with pytest.raises(ValueError, match="steps"):
        qstar.refine(linear_model, linear_x, -1)
    with pytest.raises(ValueError):
        qstar.QStarConfig(lr_decay=1.5)


def test_family_round_trip(linear_model, linear_x):
    q = linear_model.encode(linear_x)
    family = DiagonalGaussian()
    again = family.distribution(family.params_from(q))
    torch.testing.assert_close(again.mean, q.mean)
    torch.testing.assert_close(again.stddev, q.stddev)


@pytest.mark.parametrize("max_pairs", [20_000 * 64, 20_000 * 5, 1])
def test_chunked_gradients_are_each_rows_exact_elbo_gradient(linear_model, linear_x, max_pairs):
    """However the rows are chunked (all at once, 5 per chunk, one by one), each row's Monte Carlo
    gradient estimates the gradient of its own closed-form ELBO (at a q away from q*)."""
    family = DiagonalGaussian()
    encoder = family.params_from(linear_model.encode(linear_x))
    params = {"loc": encoder["loc"] + 0.5, "log_scale": encoder["log_scale"] - 0.5}
    estimate, grads = qstar._elbo_gradients(linear_model, linear_x, family, params, 20_000, max_pairs)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    exact = linear_model.exact_elbo(linear_x, family.distribution(leaves))
    exact_grads = torch.autograd.grad(exact.sum(), list(leaves.values()))
    assert estimate.shape == (linear_x.shape[0],)
    assert (estimate - exact.detach()).abs().max() < 0.1
    for name, g, e in zip(leaves, (grads[k] for k in leaves), exact_grads):
        assert g.shape == e.shape
        assert (g - e).norm(dim=1).max() < 0.1 * e.norm(dim=1).min(), name


def test_max_pairs_must_be_positive(linear_model, linear_x):
    with pytest.raises(ValueError, match="max_pairs"):
        qstar.optimal_q(linear_model, linear_x, max_pairs=0)


def test_restarts_keep_the_best_search_per_datapoint(linear_model, linear_x):
    """Random restarts end no lower than the one search, row by row, and their steps are counted."""
    config = qstar.QStarConfig(max_steps=30)
    torch.manual_seed(0)
    one = qstar.optimal_q(linear_model, linear_x, config=config, init="prior")
    torch.manual_seed(0)
    several = qstar.optimal_q(linear_model, linear_x, config=config, init="prior", restarts=3)
    elbo_one = qstar._elbo_for_comparison(linear_model, linear_x, one.q, 200, 10**7)
    elbo_several = qstar._elbo_for_comparison(linear_model, linear_x, several.q, 200, 10**7)
    assert (elbo_several >= elbo_one - 1e-9).all()
    assert (several.steps == 4 * one.steps).all()
    with pytest.raises(ValueError, match="restarts"):
        qstar.optimal_q(linear_model, linear_x, restarts=-1)


def test_a_non_finite_elbo_fails_with_its_datapoints(linear_model, linear_x):
    x = linear_x[:5].clone()
    x[3, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"datapoint\(s\) \[3\] .* not finite at q\* step 50"):
        qstar.optimal_q(linear_model, x, config=qstar.QStarConfig(max_steps=200))


@pytest.mark.slow
def test_a_search_from_many_starts_finds_the_closed_form_optimum_from_each(linear_model, linear_x):
    """The linear-Gaussian ELBO is concave in q's parameters: every start ends at the exact q*, so the
    encoder's start is never beaten and one more start would add nothing."""
    x = linear_x[:16]
    search = qstar.search_q(linear_model, x, prior_starts=2, perturbed_starts=2)
    assert search.starts == ("encoder", "prior_1", "prior_2", "perturbed_3", "perturbed_4")
    assert search.elbos.shape == (5, 16)
    exact = linear_model.exact_elbo(x, linear_model.exact_qstar(x))
    for k in range(5):  # each start's ELBO estimate (200 samples) is its q*'s, per datapoint
        assert (search.elbos[k] - exact).abs().max() < 0.1, search.starts[k]
    assert search.first_start_deficit.max() < 0.1
    assert (search.search_uncertainty >= 0).all() and search.search_uncertainty.max() < 0.05
    deficit = exact - linear_model.exact_elbo(x, search.result.q)
    assert deficit.max() < 0.05


@pytest.mark.slow
def test_random_starts_escape_the_encoders_local_optimum(two_modes):
    model, x = two_modes, torch.linspace(3.5, 4.5, 8).unsqueeze(1)
    config = qstar.QStarConfig(lr=0.1, window=20, max_steps=600)
    torch.manual_seed(0)
    stuck = qstar.search_q(model, x, config=config, perturbed_starts=3, perturb_scale=2.0)
    assert (stuck.result.q.mean[:, 0] < 0).all(), "small moves of the encoder's q stay in its mode"
    assert stuck.first_start_deficit.max() < 0.05
    torch.manual_seed(0)
    search = qstar.search_q(model, x, config=config, prior_starts=10)
    assert (search.result.q.mean[:, 0] > 0).all(), "some prior start reaches the heavier mode of every image"
    assert (search.first_start_deficit > 0.3).all() and (search.first_start_deficit < 1.0).all()
    assert (search.elbos.argmax(0) > 0).all()
    # several starts reach the heavier mode, so leaving one out changes little
    assert search.search_uncertainty.max() < 0.1 * search.first_start_deficit.min()


@pytest.mark.slow
def test_the_search_table_has_a_row_per_image_and_a_column_per_start(two_modes):
    x = torch.linspace(3.5, 4.5, 8).unsqueeze(1)
    torch.manual_seed(0)
    search = qstar.search_q(two_modes, x, config=qstar.QStarConfig(lr=0.1, window=20, max_steps=600), prior_starts=10)
    table = search.table()
    assert list(table.columns[:3]) == ["encoder", "prior_1", "prior_2"] and len(table) == 8
    assert table.first_start_deficit.to_numpy() == pytest.approx(search.first_start_deficit.numpy())
    assert table.first_start_deficit.to_numpy() == pytest.approx((table[list(search.starts)].max(axis=1) - table.encoder).to_numpy())
    assert table.search_uncertainty.to_numpy() == pytest.approx(search.search_uncertainty.numpy())


def test_a_lone_start_has_no_search_uncertainty(linear_model, linear_x):
    search = qstar.search_q(linear_model, linear_x[:4])
    assert search.elbos.isnan().all()
    assert search.table().search_uncertainty.isna().all()
    with pytest.raises(ValueError, match="two starts"):
        search.search_uncertainty
    with pytest.raises(ValueError, match="perturb_scale"):
        qstar.search_q(linear_model, linear_x[:4], perturbed_starts=1, perturb_scale=0)
    with pytest.raises(ValueError, match="prior_starts"):
        qstar.search_q(linear_model, linear_x[:4], prior_starts=-1)
