"""The family matrix's per-image rows (amortgap.family_rows): every family's encoder on one frozen
decoder, its L[q] on common random numbers, and the family's L[q*] from the same kind of search."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from amortgap import family_rows, models
from amortgap.families import DiagonalGaussian
from amortgap.gaps import DecomposeConfig, optimal_elbo, optimal_elbo_with_qstar
from amortgap.qstar import QStarConfig
from amortgap.split_rows import candidate_elbos

SMALL = dict(data_dim=12, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(8,), flow_length=2)
CONFIG = DecomposeConfig(elbo_samples=50, iwae_samples=100, ais=None, log_px_from="iwae", batch_size=16,
                         qstar=QStarConfig(max_steps=300, window=20))  # fmt: skip


@pytest.fixture()
def encoders(tmp_path):
    """An FFG, a planar and a Sylvester encoder on one frozen decoder, saved as weights files."""
    torch.manual_seed(0)
    decoder = models.VAE(models.VAEConfig(**SMALL))
    paths = {}
    for family in ("diagonal", "planar", "sylvester"):
        model = decoder.with_frozen_decoder(models.VAEConfig(**SMALL, family=family))
        paths[family] = tmp_path / f"{family}.pt"
        models.save(model, paths[family])
    return paths


def test_every_family_gets_its_elbo_on_shared_draws_and_a_qstar_from_the_same_search(encoders):
    x = torch.bernoulli(torch.full((10, 12), 0.3), generator=torch.Generator().manual_seed(1))
    loaded = {f: models.load(p) for f, p in encoders.items()}
    same = candidate_elbos(loaded, x, CONFIG.elbo_samples, CONFIG.seed)
    ffg, ffg_star = family_rows.ffg_rows(encoders["diagonal"], x, CONFIG)
    assert ffg.elbo.tolist() == same.diagonal.tolist(), "L[q] on the common random numbers"
    assert (ffg.qstar_seconds > 0).all() and (ffg.qstar_elbo_se > 0).all()
    direct, direct_star = optimal_elbo_with_qstar(loaded["diagonal"], x, DiagonalGaussian(), CONFIG)
    assert ffg.qstar_elbo.tolist() == direct.elbo_optimal.tolist()
    assert all(torch.equal(ffg_star[k], direct_star[k]) for k in direct_star)
    one_start = replace(CONFIG, qstar_restarts=0, qstar_perturbed=0)
    for flow in ("planar", "sylvester"):
        rows = family_rows.flow_rows(encoders[flow], x, CONFIG, ffg_star)
        assert len(rows) == 10 and rows.elbo.tolist() == same[flow].tolist()
        assert (rows.qstar_seconds > 0).all() and (rows.qstar_elbo_se > 0).all()
        assert (rows.qstar_elbo > rows.elbo - 3 * rows.qstar_elbo_se).mean() > 0.9, "q* is at least about as good as the encoder's q"
        family = loaded[flow].family
        mine = optimal_elbo(loaded[flow], x, family, one_start, init="encoder").elbo_optimal
        lifted = optimal_elbo(loaded[flow], x, family, one_start,
                              init=family.params_from(DiagonalGaussian().distribution(ffg_star))).elbo_optimal  # fmt: skip
        assert rows.qstar_elbo.tolist() == np.maximum(mine, lifted).tolist(), "the better search, per image"
        assert (rows.start == np.where(mine >= lifted, "encoder", "ffg_qstar")).all()
        # a flow that starts as the FFG q* keeps at least its ELBO, up to the estimates' noise
        assert (rows.qstar_elbo - ffg.qstar_elbo).mean() > -0.05


def test_the_rows_refuse_an_encoder_of_the_other_kind(encoders):
    x = torch.zeros(2, 12)
    with pytest.raises(ValueError, match="holds a planar encoder, not an FFG one"):
        family_rows.ffg_rows(encoders["planar"], x, CONFIG)
    _, ffg_star = family_rows.ffg_rows(encoders["diagonal"], x, CONFIG)
    with pytest.raises(ValueError, match="holds a diagonal encoder, not a flow one"):
        family_rows.flow_rows(encoders["diagonal"], x, CONFIG, ffg_star)
    assert isinstance(family_rows.flow_rows(encoders["sylvester"], x, CONFIG, ffg_star), pd.DataFrame)
