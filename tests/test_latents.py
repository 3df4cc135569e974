"""Active units and per-dimension KL, on encoders whose answers are known."""

import pytest
import torch

from amortgap import latents
from amortgap.linear_gaussian import LinearEncoder, LinearGaussian
from amortgap.models import VAE, VAEConfig


def test_dead_dimensions_are_inactive_and_cost_no_kl():
    model = LinearGaussian.random(data_dim=8, latent_dim=4, seed=0)
    A = model.encoder.A.clone()
    A[2:] = 0  # dimensions 2 and 3 ignore x ...
    log_scale = model.encoder.log_scale.clone()
    log_scale[2:] = 0  # ... and equal the prior
    c = model.encoder.c.clone()
    c[2:] = 0
    model.encoder = LinearEncoder(A, c, log_scale)
    x, _ = model.sample(2000, torch.Generator().manual_seed(1))
    activity = latents.unit_activity(model, x)
    assert latents.active_units(activity) == 2
    assert activity[2:].abs().max() < 1e-12
    kl = latents.kl_per_dimension(model, x, batch_size=300)
    assert kl[2:].abs().max() < 1e-12 and (kl[:2] > 0.1).all()
    q = model.encode(x)
    exact = 0.5 * (q.mean.pow(2) + q.variance - q.variance.log() - 1).sum(-1).mean()
    torch.testing.assert_close(kl.sum(), exact)


def test_activity_is_the_variance_of_the_posterior_means():
    model = LinearGaussian.random(data_dim=8, latent_dim=3, seed=2)
    x, _ = model.sample(500, torch.Generator().manual_seed(3))
    expected = model.encode(x).mean.var(0, unbiased=False)
    torch.testing.assert_close(latents.unit_activity(model, x, batch_size=128), expected)


def test_pixel_accuracy_of_a_decoder_that_copies_the_mean():
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,)))
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    q = model.encode(x)
    probs = model.mean_image(q.mean)
    expected = ((probs > 0.5).float() == x).float().mean(-1)
    torch.testing.assert_close(latents.pixel_accuracy(model, x, q), expected)


def test_the_kl_split_needs_a_diagonal_gaussian():
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=4, latent_dim=2, encoder_hidden=(3,), decoder_hidden=(3,), family="planar"))
    with pytest.raises(ValueError, match="diagonal Gaussian"):
        latents.kl_per_dimension(model, torch.zeros(3, 4))
