"""Sweep members: frozen decoders stay frozen, finished members are reloaded, flow encoders train."""

import pytest
import torch

from amortgap import models, sweep, train
from amortgap.families import PlanarFlowDistribution

from test_train import CONFIG, tiny_data  # noqa: F401  (fixture)

FAST = train.TrainConfig(epochs=3, batch_size=64, lr=3e-3, patience=None)


def member(width: int, depth: int, seed: int, decoder: str | None = None) -> sweep.Member:
    return sweep.Member(sweep.member_config(CONFIG, width, depth), seed, decoder)


def train_one(data, tmp_path, width, depth, seed, decoder: models.VAE | None = None) -> train.TrainResult:
    decoders = {} if decoder is None else {"ref": decoder}
    (result,) = sweep.train_members([member(width, depth, seed, decoder and "ref")], *data, FAST, tmp_path, decoders)
    return result


def test_a_frozen_decoder_stays_as_it_was(tiny_data, tmp_path):
    torch.manual_seed(0)
    reference = models.VAE(CONFIG)
    result = train_one(tiny_data, tmp_path, 8, 1, 0, reference)
    for (name, before), after in zip(reference.decoder.state_dict().items(), result.model.decoder.state_dict().values()):
        assert torch.equal(before, after), name
    assert result.model.config.encoder_hidden == (8,)
    assert result.history.valid_elbo.iloc[-1] > result.history.valid_elbo.iloc[0]


def test_joint_members_train_both_halves(tiny_data, tmp_path):
    torch.manual_seed(0)
    untrained = models.VAE(sweep.member_config(CONFIG, 8, 2))
    result = train_one(tiny_data, tmp_path, 8, 2, 0)
    assert not torch.equal(untrained.decoder[0].weight, result.model.decoder[0].weight)
    assert result.model.config.encoder_hidden == (8, 8)


def test_a_finished_member_is_reloaded_not_retrained(tiny_data, tmp_path):
    first = train_one(tiny_data, tmp_path, 8, 1, 3)
    (checkpoint,) = tmp_path.iterdir()
    again = train_one(tiny_data, tmp_path, 8, 1, 3)
    assert list(tmp_path.iterdir()) == [checkpoint]
    assert again.history.equals(first.history), "a reload returns the stored history, seconds included"
    other_seed = train_one(tiny_data, tmp_path, 8, 1, 4)
    assert len(list(tmp_path.iterdir())) == 2
    assert not torch.equal(other_seed.model.encoder[0].weight, first.model.encoder[0].weight)


def test_other_frozen_weights_are_another_member(tiny_data, tmp_path):
    decoders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        decoders.append(models.VAE(CONFIG))
    for decoder in decoders:
        train_one(tiny_data, tmp_path, 8, 1, 0, decoder)
    assert len(list(tmp_path.iterdir())) == 2


def test_bad_members_are_refused():
    with pytest.raises(ValueError, match="width and depth must be positive"):
        sweep.member_config(CONFIG, 0, 2)
    with pytest.raises(ValueError, match="decoder must have"):
        models.VAE(CONFIG).with_frozen_decoder(models.VAEConfig(data_dim=64, latent_dim=5))
    with pytest.raises(ValueError, match="no decoder given"):
        sweep.train_members([member(8, 1, 0, "nowhere")], torch.zeros(2, 64), torch.zeros(2, 64), FAST, "unused")


def test_a_planar_flow_vae_trains_and_round_trips(tiny_data, tmp_path):
    config = models.VAEConfig(**{**CONFIG.to_dict(), "family": "planar", "flow_length": 3})
    torch.manual_seed(0)
    result = train.train(models.VAE(config), *tiny_data, FAST, progress=False)
    assert result.history.valid_elbo.iloc[-1] > result.history.valid_elbo.iloc[0]
    models.save(result.model, tmp_path / "flow.pt")
    loaded = models.load(tmp_path / "flow.pt")
    assert loaded.config.family == "planar" and loaded.config.flow_length == 3
    assert isinstance(loaded.encode(tiny_data[1][:4]), PlanarFlowDistribution)
    with pytest.raises(ValueError, match="family must be one of"):
        models.VAEConfig(family="iaf")


@pytest.mark.slow
def test_stacks_trained_in_worker_processes_are_loaded_as_trained(tiny_data, tmp_path):
    """Two single-thread workers train the stacks and checkpoint them; the caller then loads them:
    the same members as training in this process, up to the last bits of another thread count."""
    torch.manual_seed(0)
    reference = models.VAE(CONFIG)
    torch.manual_seed(1)
    other = models.VAE(CONFIG)
    members = [member(8, 1, 0, "ref"), member(8, 1, 1, "ref"), member(16, 1, 0, "ref"), member(8, 2, 0, "other"),
               member(8, 1, 0)]
    decoders = {"ref": reference, "other": other}
    here = sweep.train_members(members, *tiny_data, FAST, tmp_path / "here", decoders)
    there = sweep.train_members(members, *tiny_data, FAST, tmp_path / "there", decoders, workers=2)
    assert len(list((tmp_path / "there").iterdir())) == len(members)
    for a, b in zip(here, there):
        assert a.model.config == b.model.config
        for x, y in zip(a.model.parameters(), b.model.parameters()):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-4)
    for m, result in zip(members, there):
        frozen = decoders.get(m.decoder)
        if frozen is not None:
            assert torch.equal(result.model.decoder[0].weight, frozen.decoder[0].weight), m.name
    reloaded = sweep.train_members(members, *tiny_data, FAST, tmp_path / "there", decoders)
    assert all(a.history.equals(b.history) for a, b in zip(there, reloaded)), "the workers' histories, not new ones"


def test_max_stack_splits_stacks_without_changing_the_members(tiny_data, tmp_path):
    members = [member(8, 1, s) for s in (0, 1, 2)]
    whole = sweep.train_members(members, *tiny_data, FAST, tmp_path / "whole")
    split = sweep.train_members(members, *tiny_data, FAST, tmp_path / "split", max_stack=2)
    for a, b in zip(whole, split):
        for x, y in zip(a.model.parameters(), b.model.parameters()):
            torch.testing.assert_close(x, y, rtol=0, atol=2e-5)
    with pytest.raises(ValueError, match="max_stack"):
        sweep.train_members(members, *tiny_data, FAST, tmp_path, max_stack=0)
