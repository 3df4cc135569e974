"""The rows of a decoder trained without an encoder (amortgap.table_rows): a table model's q of a
training image is its row, its q* search starts there (or, on an image it has no row for, from the
prior), and a VAE's rows are decompose's own."""

import numpy as np
import pytest
import torch

from amortgap import models, table_rows
from amortgap.gaps import DecomposeConfig, decompose
from amortgap.qstar import QStarConfig

SMALL = dict(data_dim=12, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(8,))
CONFIG = DecomposeConfig(elbo_samples=200, iwae_samples=500, ais=None, log_px_from="iwae", batch_size=16,
                         qstar=QStarConfig(max_steps=400, window=20), qstar_restarts=2, qstar_perturbed=1)  # fmt: skip


@pytest.fixture()
def saved(tmp_path):
    """A table model of 6 images (its rows set apart from the prior) and a VAE, saved as weights files,
    and 4 binary images."""
    torch.manual_seed(0)
    table = models.VAE(models.VAEConfig(**SMALL, table_images=6))
    with torch.no_grad():
        table.encoder[0].weight.normal_(0.0, 1.0)
    paths = {"table": tmp_path / "table.pt", "vae": tmp_path / "vae.pt"}
    models.save(table, paths["table"])
    models.save(models.VAE(models.VAEConfig(**SMALL)), paths["vae"])
    return paths, torch.bernoulli(torch.full((4, 12), 0.4))


def test_a_table_models_q_is_its_rows_and_the_prior_where_it_has_none(saved):
    paths, x = saved
    model = models.load(paths["table"])
    rows = torch.tensor([5, 0, 3, 3])
    q = table_rows.LookedUp(model, rows).encode(x)
    direct = model.encode(torch.eye(6)[rows])
    assert torch.equal(q.base_dist.loc, direct.base_dist.loc) and torch.equal(q.base_dist.scale, direct.base_dist.scale)
    assert not torch.equal(q.base_dist.loc[0], q.base_dist.loc[1]), "each image its own row"
    prior = table_rows.LookedUp(model, None).encode(x)
    assert torch.equal(prior.base_dist.loc, torch.zeros(4, 2)) and torch.equal(prior.base_dist.scale, torch.ones(4, 2))
    with pytest.raises(ValueError, match="3 images for 4 table rows"):
        table_rows.LookedUp(model, rows).encode(x[:3])
    with pytest.raises(ValueError, match="indices \\[B\\] into the table's 6 images"):
        table_rows.LookedUp(model, torch.tensor([6]))
    with pytest.raises(ValueError, match="only a table model"):
        table_rows.LookedUp(models.load(paths["vae"]), rows)


def test_a_table_models_qstar_from_its_rows_and_from_the_prior_agree_and_beat_its_rows(saved):
    """On images it has rows for, L[q] is the rows' ELBO and q* (searched from them) beats it; on the
    same images taken as unseen, the search from the prior finds the same L[q*], and no L[q]."""
    paths, x = saved
    torch.manual_seed(1)
    seen = table_rows.decoder_rows(paths["table"], x, torch.tensor([5, 0, 3, 1]), CONFIG)
    torch.manual_seed(1)
    unseen = table_rows.decoder_rows(paths["table"], x, None, CONFIG)
    assert (seen.amortization_gap > -3 * seen.amortization_gap_se).all() and seen.amortization_gap.mean() > 0.05
    np.testing.assert_allclose(unseen.elbo_optimal, seen.elbo_optimal, atol=0.05)
    np.testing.assert_allclose(unseen.log_px, seen.log_px, atol=0.1)
    assert unseen[table_rows.NEEDS_Q].isna().all().all() and seen[table_rows.NEEDS_Q].notna().all().all()


def test_a_vaes_rows_are_decomposes_and_it_has_no_table_rows(saved):
    paths, x = saved
    torch.manual_seed(2)
    rows = table_rows.decoder_rows(paths["vae"], x, None, CONFIG)
    torch.manual_seed(2)
    expected = decompose(models.load(paths["vae"]), x, CONFIG)
    assert rows.equals(expected)
    with pytest.raises(ValueError, match="is a VAE"):
        table_rows.decoder_rows(paths["vae"], x, torch.tensor([0, 1, 2, 3]), CONFIG)
