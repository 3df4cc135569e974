"""Stacked training: a member trained in a stack is the member trained alone, members do not touch
each other, a member that stops early leaves the stack, and an interrupted stack resumes exactly."""

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from amortgap import models, stacked, sweep, train
from amortgap.elbo_gradient import NegativeElbo

from test_train import CONFIG, tiny_data  # noqa: F401  (fixture)

SEEDS = (0, 1, 2)
# Dynamic binarization, warm-up and a cosine rate: every per-member random draw and schedule is used.
SETTINGS = train.TrainConfig(epochs=4, batch_size=64, lr=3e-3, warmup_epochs=2, lr_schedule="cosine", lr_decay=0.3,
                             binarization="dynamic", patience=None)  # fmt: skip
PLANAR = models.VAEConfig(**{**CONFIG.to_dict(), "family": "planar", "flow_length": 2})


def intensities(data):
    return data[0] * 0.9 + 0.05, data[1]


def fresh(config: models.VAEConfig, seed: int, frozen: models.VAE | None = None) -> models.VAE:
    torch.manual_seed(100 + seed)
    return models.VAE(config) if frozen is None else frozen.with_frozen_decoder(config)


def weights(model: models.VAE) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["joint", "frozen decoder", "planar flow"])
def test_a_member_trained_in_a_stack_is_the_member_trained_alone(tiny_data, kind):
    config = PLANAR if kind == "planar flow" else CONFIG
    frozen = fresh(CONFIG, 99) if kind == "frozen decoder" else None
    data = intensities(tiny_data)
    configs = [train.TrainConfig(**{**SETTINGS.__dict__, "seed": s}) for s in SEEDS]
    together = train.train_stack([fresh(config, s, frozen) for s in SEEDS], *data, configs, progress=False)
    for seed, config_s, member in zip(SEEDS, configs, together):
        alone = train.train(fresh(config, seed, frozen), *data, config_s, progress=False)
        for a, b in zip(weights(alone.model), weights(member.model)):
            torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
        assert member.history.valid_elbo.tolist() == pytest.approx(alone.history.valid_elbo.tolist(), abs=1e-3)
    if frozen is not None:
        for member in together:
            assert all(torch.equal(a, b) for a, b in zip(weights(member.model.decoder), weights(frozen.decoder)))


def test_members_do_not_influence_each_other(tiny_data):
    data = intensities(tiny_data)
    configs = [train.TrainConfig(**{**SETTINGS.__dict__, "seed": s}) for s in SEEDS]
    plain = train.train_stack([fresh(CONFIG, s) for s in SEEDS], *data, configs, progress=False)
    perturbed_first = fresh(CONFIG, 0)
    with torch.no_grad():
        perturbed_first.encoder[0].weight.mul_(3.0)
    perturbed = train.train_stack([perturbed_first] + [fresh(CONFIG, s) for s in SEEDS[1:]], *data, configs,
                                  progress=False)  # fmt: skip
    assert not torch.equal(plain[0].model.encoder[0].weight, perturbed[0].model.encoder[0].weight)
    for a, b in zip(plain[1:], perturbed[1:]):
        assert all(torch.equal(x, y) for x, y in zip(weights(a.model), weights(b.model)))
        assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))


def test_a_member_that_stops_early_leaves_the_stack(tiny_data, monkeypatch):
    """A rate too high to keep improving: members stop at their own epochs, each as it would alone."""
    config = train.TrainConfig(epochs=30, batch_size=16, lr=0.05, patience=2)
    seeds = (0, 1, 2, 3)
    configs = [train.TrainConfig(**{**config.__dict__, "seed": s}) for s in seeds]
    sizes = []
    stack_models = stacked.stack_models

    def spy(models):
        sizes.append(len(models))
        return stack_models(models)

    monkeypatch.setattr(stacked, "stack_models", spy)
    together = train.train_stack([fresh(CONFIG, s) for s in seeds], *tiny_data, configs, progress=False)
    monkeypatch.undo()
    lengths = [len(r.history) for r in together]
    assert len(set(lengths)) > 1, "the members stop at different epochs"
    running = [sum(length > epoch for length in lengths) for epoch in range(max(lengths))]
    assert sizes == running, "each epoch's stack holds exactly the members still running"
    for seed, member_config, member in zip(seeds, configs, together):
        alone = train.train(fresh(CONFIG, seed), *tiny_data, member_config, progress=False)
        assert len(alone.history) == len(member.history)
        assert train.evaluate_elbo(member.model, tiny_data[1]) == pytest.approx(alone.history.valid_elbo.max(), abs=1e-3)


@pytest.mark.parametrize("stop_at", [1, 2, 3])
def test_an_interrupted_stack_resumes_to_the_uninterrupted_state(tiny_data, tmp_path, stop_at):
    data = intensities(tiny_data)
    configs = [train.TrainConfig(**{**SETTINGS.__dict__, "seed": s}) for s in SEEDS]
    paths = [tmp_path / f"m{s}.pt" for s in SEEDS]
    whole = train.train_stack([fresh(CONFIG, s) for s in SEEDS], *data, configs, progress=False)

    def interrupt(i, row):
        if row["epoch"] == stop_at and i == len(SEEDS) - 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_stack([fresh(CONFIG, s) for s in SEEDS], *data, configs, paths, progress=False, callback=interrupt)
    torch.manual_seed(999)  # a new process starts from some other global RNG state
    resumed = train.train_stack([fresh(CONFIG, s) for s in SEEDS], *data, configs, paths, resume=True, progress=False)
    for a, b in zip(whole, resumed):
        assert all(torch.equal(x, y) for x, y in zip(weights(a.model), weights(b.model)))
        assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))


def test_a_crash_between_two_members_checkpoints_catches_up(tiny_data, tmp_path):
    """Member 0 wrote epoch 2, members 1 and 2 only epoch 1: the laggards train on until all agree."""
    data = intensities(tiny_data)
    configs = [train.TrainConfig(**{**SETTINGS.__dict__, "seed": s}) for s in SEEDS]
    paths = [tmp_path / f"m{s}.pt" for s in SEEDS]
    whole = train.train_stack([fresh(CONFIG, s) for s in SEEDS], *data, configs, progress=False)

    def crash(i, row):
        if row["epoch"] == 2 and i == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_stack([fresh(CONFIG, s) for s in SEEDS], *data, configs, paths, progress=False, callback=crash)
    epochs = []
    resumed = train.train_stack([fresh(CONFIG, s) for s in SEEDS], *data, configs, paths, resume=True,
                                progress=False, callback=lambda i, row: epochs.append((i, row["epoch"])))  # fmt: skip
    assert epochs[:2] == [(1, 2), (2, 2)], "the members behind train first, as a stack of their own"
    for a, b in zip(whole, resumed):
        for x, y in zip(weights(a.model), weights(b.model)):
            torch.testing.assert_close(x, y, rtol=0, atol=2e-5)


def test_the_stacked_elbo_is_each_models_own(tiny_data):
    """The per-datapoint stacked ELBO with given noise equals each model's, computed by the model."""
    x = tiny_data[1][:16]
    members = [fresh(CONFIG, s) for s in SEEDS]
    stack = stacked.stack_models(members)
    eps = torch.randn(2, len(members), len(x), CONFIG.latent_dim)
    elbo = NegativeElbo(stack).elbo(x.expand(len(members), -1, -1), eps)
    for i, model in enumerate(members):
        q = model.encode(x)
        z = q.mean + q.stddev * eps[:, i]
        prior = Independent(Normal(torch.zeros_like(q.mean), torch.ones_like(q.mean)), 1)
        own = model.log_likelihood(x, z).mean(0) - kl_divergence(q, prior)
        torch.testing.assert_close(elbo[i], own.detach(), rtol=0, atol=1e-4)


def test_stacks_refuse_mixed_settings_or_shapes(tiny_data):
    with pytest.raises(ValueError, match=r"\['lr'\] differ"):
        train.train_stack([fresh(CONFIG, 0), fresh(CONFIG, 1)], *tiny_data,
                          [train.TrainConfig(epochs=1), train.TrainConfig(epochs=1, lr=0.1, seed=1)], progress=False)
    with pytest.raises(ValueError, match="one architecture"):
        stacked.stack_models([fresh(CONFIG, 0), fresh(sweep.member_config(CONFIG, 8, 1), 1)])
    with pytest.raises(ValueError, match="one config"):
        train.train_stack([fresh(CONFIG, 0)], *tiny_data, [], progress=False)


def test_stacked_training_is_plain_adam_on_each_models_own_elbo(tiny_data):
    """The reference: a plain loop over one model with the model's own encoder, likelihood and
    analytic KL, and one Adam kept across epochs, drawing from the member's generator in the same
    order (a permutation per epoch, then noise per batch). Stacked training must follow it."""
    config = train.TrainConfig(epochs=3, batch_size=64, lr=3e-3, patience=None, seed=5)
    trained = train.train(fresh(CONFIG, 0), *tiny_data, config, progress=False).model
    model = fresh(CONFIG, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    x = tiny_data[0]
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for rows in order.split(config.batch_size):
            xb = x[rows]
            q = model.encode(xb)
            z = q.mean + q.stddev * torch.randn(1, len(xb), CONFIG.latent_dim, generator=generator)
            prior = Independent(Normal(torch.zeros_like(q.mean), torch.ones_like(q.mean)), 1)
            loss = -(model.log_likelihood(xb, z).mean(0) - kl_divergence(q, prior)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for a, b in zip(weights(model), weights(trained)):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5)


def test_the_stacked_layout_round_trips_every_member():
    square, wide, bias = torch.randn(3, 5, 5), torch.randn(3, 4, 7), torch.randn(3, 4)
    for tensors in (list(square), list(wide), list(bias)):
        stacked_tensor = stacked.stack_tensors(tensors)
        for i, t in enumerate(tensors):
            assert torch.equal(stacked.member_tensor(stacked_tensor, i), t)
    assert stacked.stack_tensors(list(wide)).shape == (3, 7, 4), "a Linear weight [out, in] is stacked as [M, in, out]"


def test_a_stack_interrupted_while_members_stall_resumes_exactly(tiny_data, tmp_path):
    """Early stopping survives an interruption: stalls, best weights and stopped members resume."""
    config = train.TrainConfig(epochs=30, batch_size=16, lr=0.05, patience=2)
    seeds = (0, 1, 2, 3)
    configs = [train.TrainConfig(**{**config.__dict__, "seed": s}) for s in seeds]
    whole = train.train_stack([fresh(CONFIG, s) for s in seeds], *tiny_data, configs, progress=False)
    stop_at = min(len(r.history) for r in whole)  # the epoch at which the first member stops
    paths = [tmp_path / f"m{s}.pt" for s in seeds]

    def interrupt(i, row):
        if row["epoch"] == stop_at and i == len(seeds) - 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_stack([fresh(CONFIG, s) for s in seeds], *tiny_data, configs, paths, progress=False,
                          callback=interrupt)  # fmt: skip
    resumed = train.train_stack([fresh(CONFIG, s) for s in seeds], *tiny_data, configs, paths, resume=True,
                                progress=False)  # fmt: skip
    for a, b in zip(whole, resumed):
        assert a.history.drop(columns="seconds").equals(b.history.drop(columns="seconds"))
        assert all(torch.equal(x, y) for x, y in zip(weights(a.model), weights(b.model)))
