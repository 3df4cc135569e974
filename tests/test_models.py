"""The VAE follows the model protocol; checkpoints round-trip and never run code."""

import os
import pickle

import pytest
import torch

from amortgap import models
from amortgap.linear_gaussian import LinearGaussian

SMALL = models.VAEConfig(data_dim=12, latent_dim=3, encoder_hidden=(8,), decoder_hidden=(8, 8))


def test_default_architecture_is_cremer_et_al():
    vae = models.VAE()
    widths = [m.out_features for m in vae.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [200, 200, 100]
    widths = [m.out_features for m in vae.decoder if isinstance(m, torch.nn.Linear)]
    assert widths == [200, 200, 784]
    assert isinstance(vae.encoder[1], torch.nn.ELU)


def test_protocol_shapes():
    vae = models.VAE(SMALL)
    x = torch.bernoulli(torch.full((5, 12), 0.3))
    q = vae.encode(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    assert vae.log_joint(x, q.rsample((7,))).shape == (7, 5)
    assert vae.decoder(torch.zeros(2, 3)).shape == (2, 12)
    assert isinstance(vae, models.LatentVariableModel)
    assert isinstance(LinearGaussian.random(), models.LatentVariableModel)


def test_log_joint_is_bernoulli_likelihood_plus_standard_normal_prior():
    vae = models.VAE(SMALL)
    x = torch.bernoulli(torch.full((4, 12), 0.5))
    z = torch.randn(2, 4, 3)
    expected = (
        torch.distributions.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
        + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(vae.log_joint(x, z), expected)


def test_sample_gives_binary_data_and_latents():
    x, z = models.VAE(SMALL).sample(6, torch.Generator().manual_seed(0))
    assert x.shape == (6, 12) and z.shape == (6, 3)
    assert set(x.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("bad", [dict(activation="gelu2"), dict(latent_dim=0), dict(encoder_hidden=(8, -1))])
def test_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        models.VAEConfig(**bad)


def test_save_load_round_trip(tmp_path):
    vae = models.VAE(SMALL)
    models.save(vae, tmp_path / "m.pt")
    again = models.load(tmp_path / "m.pt")
    assert again.config == SMALL
    x, z = torch.rand(3, 12).round(), torch.randn(2, 3, 3)
    torch.testing.assert_close(again.log_joint(x, z), vae.log_joint(x, z))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), "the temp file is renamed away"


def test_a_table_model_saves_and_loads_and_an_amortized_ones_config_reads_as_before(tmp_path):
    """``table_images`` is left out of an amortized model's stored config, so that every checkpoint
    written before the field existed compares equal to today's (a training resume checks it)."""
    assert "table_images" not in SMALL.to_dict() and models.VAEConfig(**SMALL.to_dict()) == SMALL
    table = models.VAEConfig(**{**SMALL.to_dict(), "table_images": 7})
    vae = models.VAE(table)
    assert vae.encoder[0].weight.shape == (2 * 3, 7) and len(vae.encoder) == 1, "one Linear layer on one-hot indices"
    models.save(vae, tmp_path / "t.pt")
    again = models.load(tmp_path / "t.pt")
    assert again.config == table and torch.equal(again.encoder[0].weight, vae.encoder[0].weight)
    with pytest.raises(ValueError, match="table_images is a number of training images"):
        models.VAEConfig(table_images=-1)
    square = models.VAE(models.VAEConfig(**{**SMALL.to_dict(), "table_images": 12}))  # as many images as pixels
    images = torch.tensor([[1.0, 1.0] + [0.0] * 10, [0.0] * 12])
    with pytest.raises(ValueError, match="looked up by one-hot image indices \\[B, 12\\]"):
        square.encode(images)
    assert square.encode(torch.eye(12)[[3, 4]]).batch_shape == (2,)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    models.save(models.VAE(SMALL), tmp_path / "m.pt")
    with pytest.raises(models.CheckpointError, match="another architecture.*encoder_hidden"):
        models.load(tmp_path / "m.pt", config=models.VAEConfig(data_dim=12, latent_dim=3, decoder_hidden=(8, 8)))


def test_weights_that_do_not_fit_their_config_are_refused(tmp_path):
    state = models.VAE(SMALL).state_dict()
    other = models.VAEConfig(data_dim=12, latent_dim=4, encoder_hidden=(8,), decoder_hidden=(8, 8))
    torch.save({"format": models.CHECKPOINT_FORMAT, "config": other.to_dict(), "state_dict": state}, tmp_path / "m.pt")
    with pytest.raises(models.CheckpointError, match="do not fit"):
        models.load(tmp_path / "m.pt")


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a zip or pickle", b"PK\x03\x04truncated"])
def test_corrupt_checkpoint_is_refused(tmp_path, content):
    (tmp_path / "m.pt").write_bytes(content)
    with pytest.raises(models.CheckpointError, match="corrupt"):
        models.load(tmp_path / "m.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(models.CheckpointError, match="not found"):
        models.load(tmp_path / "nope.pt")


class _Payload:
    """Unpickling this object would run code: it creates a file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickled_object_disguised_as_checkpoint_is_refused(tmp_path, writer):
    marker = tmp_path / "code_ran"
    payload = {"format": models.CHECKPOINT_FORMAT, "config": SMALL.to_dict(), "state_dict": _Payload(str(marker))}
    path = tmp_path / "m.pt"
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(models.CheckpointError, match="refuses"):
        models.load(path)
    assert not marker.exists(), "loading a checkpoint must never run code"


def test_a_dict_without_format_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "m.pt")
    with pytest.raises(models.CheckpointError, match="format"):
        models.load(tmp_path / "m.pt")


def test_a_tables_input_scale_multiplies_the_step_on_its_rows_and_it_starts_at_the_bias():
    """Scaling the one-hot input by s makes row i's q s W[:, i] + b: Adam moves W by about its rate
    per step, so q moves by about s times it; an amortized model has no scale to set."""
    config = models.VAEConfig(**{**SMALL.to_dict(), "table_images": 5, "table_scale": 30.0})
    vae = models.VAE(config)
    assert torch.equal(vae.encoder[0].weight, torch.zeros(6, 5)), "every image's q starts as the bias's"
    with torch.no_grad():
        vae.encoder[0].weight[:, 2] = 0.1
    loc = vae.encode(torch.eye(5)[[2]]).base_dist.loc
    torch.testing.assert_close(loc, 30.0 * 0.1 + vae.encoder[0].bias[:3].unsqueeze(0))
    with pytest.raises(ValueError, match="for a model without a table"):
        models.VAEConfig(table_scale=2.0)
    with pytest.raises(ValueError, match="positive"):
        models.VAEConfig(table_images=5, table_scale=0.0)
