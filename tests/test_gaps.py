"""The decomposition with its default config reproduces the exact gaps of the linear-Gaussian model."""

import pandas as pd
import pytest
import torch

from amortgap import gaps
from amortgap.ais import AISConfig
from amortgap.families import DiagonalGaussian
from amortgap.linear_gaussian import LinearGaussian

TOL = 0.05  # nats
HEADLINE = ["log_px", "elbo_optimal", "elbo_amortized", "approximation_gap", "amortization_gap", "inference_gap"]


@pytest.fixture(scope="module")
def model_and_x():
    model = LinearGaussian.random(data_dim=10, latent_dim=3, seed=1, encoder_error=0.05)
    x, _ = model.sample(64, torch.Generator().manual_seed(3))
    return model, x


@pytest.fixture(scope="module")
def table(model_and_x):
    model, x = model_and_x
    return gaps.decompose(model, x)


def test_default_decomposition_is_accurate(model_and_x, table):
    model, x = model_and_x
    exact = model.exact_gaps(x)
    for column in HEADLINE:
        error = torch.tensor(table[column].to_numpy()) - exact[column]
        assert error.mean().abs() < TOL, (column, error.mean())
        assert error.abs().max() < 0.25, (column, error.abs().max())


def test_table_reports_what_is_needed_to_judge_it(table):
    assert list(table.columns) == gaps.COLUMNS and len(table) == 64
    assert (table.elbo_optimal_se > 0).all() and (table.amortization_gap_se > 0).all()
    assert (table.qstar_steps > 0).all() and table.qstar_converged.all()
    assert (table.elbo_samples == 1000).all() and (table.ais_chains == AISConfig().chains).all()
    torch.testing.assert_close(
        torch.tensor((table.approximation_gap + table.amortization_gap).to_numpy()),
        torch.tensor(table.inference_gap.to_numpy()),
    )
    assert table.attrs["config"]["elbo_samples"] == 1000


def test_common_random_numbers_shrink_the_amortization_gap_error(table):
    unpaired = (table.elbo_optimal_se**2 + table.elbo_amortized_se**2) ** 0.5
    assert (table.amortization_gap_se < unpaired).mean() > 0.9


def test_encoder_equal_to_qstar_has_no_amortization_gap(model_and_x):
    model, x = model_and_x
    exact = LinearGaussian(model.W, model.b, model.psi)  # its encoder outputs the exact q*
    table = gaps.decompose(exact, x, gaps.DecomposeConfig(ais=None, log_px_from="iwae"))
    mean, sem = table.amortization_gap.mean(), table.amortization_gap.sem()
    assert abs(mean) < max(3 * sem, 0.005), (mean, sem)
    assert table.amortization_gap.abs().max() < 0.05


@pytest.mark.slow
def test_same_seed_same_numbers_and_caller_rng_untouched(model_and_x):
    model, x = model_and_x
    config = gaps.DecomposeConfig(elbo_samples=50, iwae_samples=50, ais=AISConfig(steps=20, chains=2),
                                  batch_size=20, seed=7)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = gaps.decompose(model, x, config)
    assert torch.equal(torch.get_rng_state(), before)
    second = gaps.decompose(model, x, config)
    pd.testing.assert_frame_equal(first, second)
    other = gaps.decompose(model, x, gaps.DecomposeConfig(**{**config.__dict__, "seed": 8}))
    assert not first.elbo_amortized.equals(other.elbo_amortized)


@pytest.mark.slow
def test_workers_give_the_numbers_of_one_process(model_and_x):
    """Each batch runs under its own seed, so where it runs does not change what it draws."""
    model, x = model_and_x
    config = gaps.DecomposeConfig(elbo_samples=50, iwae_samples=50, ais=AISConfig(steps=20, chains=2), batch_size=20)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same summation order
    try:
        alone = gaps.decompose(model, x, config)
    finally:
        torch.set_num_threads(threads)
    shared = gaps.decompose(model, x, config, workers=2)
    pd.testing.assert_frame_equal(alone, shared, check_exact=False, rtol=1e-5, atol=1e-5)


def test_log_px_choice(model_and_x):
    model, x = model_and_x
    config = dict(elbo_samples=50, iwae_samples=100, ais=AISConfig(steps=20, chains=2))
    best = gaps.decompose(model, x[:8], gaps.DecomposeConfig(**config, log_px_from="max"))
    assert (best.log_px == best[["log_px_iwae", "log_px_ais"]].max(axis=1)).all()
    iwae_only = gaps.decompose(model, x[:8], gaps.DecomposeConfig(**{**config, "ais": None}, log_px_from="iwae"))
    assert iwae_only.log_px_ais.isna().all() and (iwae_only.log_px == iwae_only.log_px_iwae).all()


def test_summary_has_mean_and_sem(table):
    summary = gaps.summarize(table)
    assert list(summary.index) == HEADLINE
    assert summary.loc["inference_gap", "mean"] == pytest.approx(table.inference_gap.mean())


@pytest.mark.parametrize("bad", [
    dict(elbo_samples=1), dict(iwae_samples=-1), dict(ais=None),  # ais=None with log_px_from="ais"
    dict(log_px_from="median"), dict(qstar_init="zeros"), dict(batch_size=0),
])
def test_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        gaps.DecomposeConfig(**bad)


def test_input_shape_is_checked(model_and_x):
    model, x = model_and_x
    with pytest.raises(ValueError, match="shape"):
        gaps.decompose(model, x[0])


@pytest.mark.slow
def test_the_qstar_handed_back_is_the_one_in_the_table(model_and_x):
    """decompose_with_qstar returns the table of decompose and, row for row across batches, the q*
    parameters whose exact ELBO the table's L[q*] estimates."""
    model, x = model_and_x
    config = gaps.DecomposeConfig(iwae_samples=50, ais=AISConfig(steps=20, chains=2), batch_size=20, seed=7)
    table, params = gaps.decompose_with_qstar(model, x, config)
    pd.testing.assert_frame_equal(table, gaps.decompose(model, x, config))
    assert params["loc"].shape == params["log_scale"].shape == (x.shape[0], model.latent_dim)
    exact = model.exact_elbo(x, DiagonalGaussian().distribution(params))
    assert (torch.as_tensor(table.elbo_optimal.values, dtype=exact.dtype) - exact).abs().max() < 5 * table.elbo_optimal_se.max()
    assert (model.exact_qstar(x).mean - params["loc"]).abs().max() < 0.05


def test_the_elbo_parts_match_the_closed_form_per_datapoint(model_and_x, table):
    model, x = model_and_x
    for which, q in (("amortized", model.encode(x)), ("optimal", model.exact_qstar(x))):
        reconstruction, kl = model.exact_elbo_parts(x, q)
        for name, exact in (("reconstruction", reconstruction), ("kl", kl)):
            error = torch.tensor(table[f"{name}_{which}"].to_numpy()) - exact
            assert error.abs().max() < 0.25, (name, which, error.abs().max())
    gap = table.amortization_gap_reconstruction + table.amortization_gap_kl
    torch.testing.assert_close(torch.tensor(gap.to_numpy()), torch.tensor(table.amortization_gap.to_numpy()), atol=1e-4, rtol=0)


def test_log_px_standard_errors_cover_the_exact_value(model_and_x, table):
    model, x = model_and_x
    z = (torch.tensor(table.log_px.to_numpy()) - model.exact_log_px(x)) / torch.tensor(table.log_px_se.to_numpy())
    assert (table.log_px_se > 0).all()
    assert (z.abs() < 4).float().mean() > 0.9, z
    combined = (table.log_px_se**2 + table.elbo_optimal_se**2) ** 0.5
    torch.testing.assert_close(torch.tensor(table.approximation_gap_se.to_numpy()), torch.tensor(combined.to_numpy()))


@pytest.mark.slow
def test_a_search_from_several_starts_carries_its_uncertainty_into_the_intervals(two_modes):
    """On the two-mode model the encoder's start ends in the lighter mode: prior starts find the
    heavier one, the table reports by how much the first start fell short, and what one more start
    would still add widens the standard errors of L[q*] and of both gaps that contain it."""
    x = torch.linspace(3.5, 4.5, 8).unsqueeze(1)
    qstar = gaps.QStarConfig(lr=0.1, window=20, max_steps=600)
    config = gaps.DecomposeConfig(elbo_samples=200, iwae_samples=0, ais=AISConfig(steps=20, chains=2), qstar=qstar)
    single = gaps.decompose(two_modes, x, config)
    assert not set(gaps.SEARCH_COLUMNS) & set(single.columns), "one start: nothing to report"
    several = gaps.decompose(two_modes, x, gaps.DecomposeConfig(**{**vars(config), "qstar_restarts": 10,
                                                                   "qstar_perturbed": 2}))  # fmt: skip
    assert (several.qstar_first_deficit > 0.2).all()
    assert (several.elbo_optimal > single.elbo_optimal + 0.2).all(), "the best start's q* is the table's"
    assert (several.qstar_search_uncertainty < 0.1).all(), "several starts reach the heavier mode"
    # with one prior start, an image whose prior start wins hangs on that start alone: half the difference
    pair = gaps.decompose(two_modes, x, gaps.DecomposeConfig(**{**vars(config), "qstar_restarts": 1}))
    won = pair.qstar_first_deficit > 0.2
    assert won.any()
    assert pair.qstar_search_uncertainty[won].to_numpy() == pytest.approx(pair.qstar_first_deficit[won].to_numpy() / 2)
    assert (single.elbo_optimal_se < 0.05).all(), "the Monte Carlo part alone is small here"
    for column in ("elbo_optimal_se", "amortization_gap_se", "approximation_gap_se"):
        assert (pair[column] >= pair.qstar_search_uncertainty).all() and (pair[column][won] > 0.1).all(), column
    with pytest.raises(ValueError, match="qstar_perturbed"):
        gaps.DecomposeConfig(qstar_perturbed=-1)
