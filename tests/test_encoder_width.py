"""The width study's pilot: a fresh encoder on the joint model's frozen decoder against the joint
encoder, paired per image, one-sided."""

import copy

import pytest
import torch

from amortgap import models, stats
from amortgap.study import encoder_width


@pytest.fixture
def joint() -> models.VAE:
    torch.manual_seed(0)
    return models.VAE(models.VAEConfig(data_dim=12, latent_dim=2, encoder_hidden=(8,), decoder_hidden=(8,)))


def images(n: int = 40) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 12), 0.3), generator=torch.Generator().manual_seed(1))


def test_the_joint_encoder_against_itself_differs_by_nothing_and_passes(joint):
    result = encoder_width.pilot(joint, copy.deepcopy(joint), images(), samples=50)
    assert result["difference"] == 0 and result["difference_se"] == 0 and result["passes"]
    assert result["fresh_elbo"] == result["joint_elbo"] < 0


def test_an_encoder_worse_by_more_than_the_margin_fails(joint):
    config = joint.config
    torch.manual_seed(5)
    fresh = joint.with_frozen_decoder(config)  # an untrained encoder on the same decoder
    with torch.no_grad():
        fresh.encoder[-1].bias[config.latent_dim :] += 3.0  # q's scale e^3: far too wide
    result = encoder_width.pilot(joint, fresh, images(), samples=50)
    assert result["difference"] < -encoder_width.PILOT_MARGIN and not result["passes"]
    t = stats.t_quantile(0.95, 39)  # one-sided, 40 images
    assert result["lower_bound"] == pytest.approx(result["difference"] - t * result["difference_se"])


def test_a_model_with_another_decoder_is_refused(joint):
    other = copy.deepcopy(joint)
    with torch.no_grad():
        other.decoder[0].weight += 1
    with pytest.raises(ValueError, match="fresh was not trained on this decoder"):
        encoder_width.pilot(joint, other, images())
