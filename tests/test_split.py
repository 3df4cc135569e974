"""The split of the amortization gap: its parts add up per image, q_best is chosen on its own images
with q_joint winning ties, the encoders' ELBOs share their noise, and the generalisation's interval
is Welch's."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from amortgap.bounds import elbo
from amortgap.models import VAE, VAEConfig
from amortgap.rng import seeded
from amortgap.stats import t_quantile
from amortgap.study import split

CONFIG = VAEConfig(data_dim=12, latent_dim=3, encoder_hidden=(16,), decoder_hidden=(8,))


def test_the_parts_add_up_to_the_amortization_gap_per_image():
    rng = np.random.default_rng(0)
    qstar = pd.Series(-90 + rng.normal(size=20))
    elbos = pd.DataFrame({"joint": qstar - 3 - rng.random(20), "distilled": qstar - 2 - rng.random(20)})
    rows = split.parts_per_image(qstar, elbos, best="distilled")
    np.testing.assert_allclose(rows.expressivity + rows.optimisation, rows.amortization_gap, atol=1e-12)
    np.testing.assert_allclose(rows.amortization_gap, qstar - elbos.joint)
    np.testing.assert_allclose(rows.optimisation, elbos.distilled - elbos.joint)


def test_the_best_candidate_must_beat_the_joint_encoder_strictly():
    selection = pd.DataFrame({"joint": [-100.0, -102.0], "fresh": [-101.0, -101.0], "distilled": [-99.0, -104.0]})
    assert split.choose_best(selection) == "joint", "a tie keeps the joint encoder"
    selection.loc[0, "fresh"] = -100.9
    assert split.choose_best(selection) == "fresh"


def test_every_candidates_elbo_is_drawn_with_the_same_noise_and_on_the_same_decoder():
    torch.manual_seed(0)
    joint = VAE(CONFIG)
    other = joint.with_frozen_decoder(CONFIG)
    x = torch.bernoulli(torch.full((9, CONFIG.data_dim), 0.3), generator=torch.Generator().manual_seed(1))
    table = split.candidate_elbos({"joint": joint, "again": joint, "other": other}, x, samples=50, seed=7)
    assert list(table.columns) == ["joint", "again", "other"] and len(table) == 9
    np.testing.assert_array_equal(table.joint, table.again)
    with seeded(7):
        np.testing.assert_array_equal(table.other, elbo(other, x, num_samples=50).value.double().numpy())
    split.shares_decoder(joint, {"other": other})
    with pytest.raises(ValueError, match="not trained on this decoder"):
        split.shares_decoder(joint, {"stranger": VAE(CONFIG)})


def test_the_generalisation_is_welchs_difference_and_its_parts_add_up():
    rng = np.random.default_rng(1)
    rows = pd.concat([pd.DataFrame({"decoder": "e300", "split": s, "expressivity": rng.normal(m, sd, n),
                                    "optimisation": rng.normal(0.5, 0.2, n)})
                      for s, m, sd, n in (("train", 2.0, 1.0, 40), ("test", 2.6, 2.0, 25))], ignore_index=True)  # fmt: skip
    rows["amortization_gap"] = rows.expressivity + rows.optimisation
    found = split.generalisation(rows).set_index("quantity")
    a, b = rows[rows.split == "test"].expressivity.to_numpy(), rows[rows.split == "train"].expressivity.to_numpy()
    va, vb = a.var(ddof=1) / 25, b.var(ddof=1) / 40
    df = (va + vb) ** 2 / (va**2 / 24 + vb**2 / 39)
    half = t_quantile(0.975, int(df)) * math.sqrt(va + vb)
    assert found.loc["expressivity", "mean"] == pytest.approx(a.mean() - b.mean())
    assert found.loc["expressivity", "high"] - found.loc["expressivity", "mean"] == pytest.approx(half)
    assert found.loc["amortization_gap", "mean"] == pytest.approx(found.loc["expressivity", "mean"] + found.loc["optimisation", "mean"])


def test_the_summary_gives_each_parts_interval_median_and_quantiles():
    rows = pd.DataFrame({"decoder": "best", "split": "train", "expressivity": np.arange(10.0), "optimisation": np.ones(10),
                         "amortization_gap": np.arange(10.0) + 1})  # fmt: skip
    found = split.summary(rows, ["decoder", "split"]).set_index("quantity")
    assert found.loc["expressivity", "mean"] == pytest.approx(4.5) and found.loc["expressivity", "median"] == pytest.approx(4.5)
    assert found.loc["expressivity", "q10"] == pytest.approx(0.9) and found.loc["expressivity", "images"] == 10
    half = t_quantile(0.975, 9) * np.arange(10.0).std(ddof=1) / math.sqrt(10)
    assert found.loc["expressivity", "high"] == pytest.approx(4.5 + half)
