"""Training lowers the loss, resumes to the identical result, and refuses mismatched checkpoints."""

import pytest
import torch

from amortgap import models, stacked, train
from amortgap.elbo_gradient import NegativeElbo
from amortgap.models import CheckpointError, table_input

CONFIG = models.VAEConfig(data_dim=64, latent_dim=4, encoder_hidden=(32,), decoder_hidden=(32,))


@pytest.fixture(scope="module")
def tiny_data():
    """Binary 8x8 'images': 6 random prototypes with 5% of pixels flipped; 512 to train, 128 to validate."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.bernoulli(torch.full((6, 64), 0.5), generator=g)
    x = prototypes[torch.randint(6, (640,), generator=g)]
    flips = torch.bernoulli(torch.full_like(x, 0.05), generator=g)
    x = (x + flips) % 2
    return x[:512], x[512:]


def fit(data, config: train.TrainConfig, **kwargs) -> train.TrainResult:
    torch.manual_seed(1)
    return train.train(models.VAE(CONFIG), *data, config, progress=False, **kwargs)


def test_training_lowers_the_loss(tiny_data):
    torch.manual_seed(1)
    before = train.evaluate_elbo(models.VAE(CONFIG), tiny_data[1])
    result = fit(tiny_data, train.TrainConfig(epochs=8, batch_size=32, lr=3e-3, patience=None))
    history = result.history
    assert list(history.epoch) == list(range(1, 9))
    assert history.valid_elbo.iloc[-1] > before + 5
    assert history.train_elbo.iloc[-1] > history.train_elbo.iloc[0]
    assert history.valid_elbo.iloc[-1] > history.valid_elbo.iloc[0]
    assert {"lr", "kl_weight", "seconds"} <= set(history.columns)


def test_warmup_and_schedule(tiny_data):
    config = train.TrainConfig(epochs=4, batch_size=64, warmup_epochs=2, lr_schedule="exponential", lr_decay=0.5)
    history = fit(tiny_data, config).history
    assert history.kl_weight.tolist() == [0.5, 1.0, 1.0, 1.0]
    assert history.lr.tolist() == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    cosine = train.TrainConfig(epochs=5, lr_schedule="cosine", lr_decay=0.1)
    assert cosine.learning_rate(0) == pytest.approx(1e-3) and cosine.learning_rate(4) == pytest.approx(1e-4)


def test_dynamic_binarization_trains_on_intensities(tiny_data):
    intensities = tiny_data[0] * 0.8 + 0.1
    result = fit((intensities, tiny_data[1]), train.TrainConfig(epochs=2, batch_size=64, binarization="dynamic"))
    assert result.history.train_elbo.notna().all()


def test_resume_after_interruption_equals_an_uninterrupted_run(tiny_data, tmp_path):
    config = train.TrainConfig(epochs=6, batch_size=64, lr=3e-3, warmup_epochs=2, binarization="dynamic",
                               lr_schedule="cosine", lr_decay=0.3, patience=None)
    intensities = (tiny_data[0] * 0.9 + 0.05, tiny_data[1])
    whole = fit(intensities, config)

    def interrupt(row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(intensities, config, checkpoint=checkpoint, callback=interrupt)
    torch.manual_seed(1)
    fresh = models.VAE(CONFIG)  # the run's initial weights (resume checks them) ...
    torch.manual_seed(999)  # ... in a new process, whose global RNG is in some other state
    resumed = train.train(fresh, *intensities, config, checkpoint=checkpoint, resume=True, progress=False)
    assert resumed.history.epoch.tolist() == list(range(1, 7))
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert whole.history.valid_elbo.tolist() == resumed.history.valid_elbo.tolist()
    assert not list(tmp_path.glob("*.tmp")), "checkpoints are written atomically"


def test_early_stopping_keeps_the_best_weights(tiny_data):
    config = train.TrainConfig(epochs=30, batch_size=16, lr=0.05, patience=2)  # a rate too high to keep improving
    result = fit(tiny_data, config)
    history = result.history
    assert len(history) < 30
    best = history.valid_elbo.max()
    assert history.valid_elbo.idxmax() == len(history) - 3, "stops `patience` epochs after the best"
    assert train.evaluate_elbo(result.model, tiny_data[1]) == pytest.approx(best, abs=1e-4)


def stop_after(epoch: int):
    """A callback that interrupts a run once it has checkpointed ``epoch``."""

    def interrupt(row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt

    return interrupt


def test_resume_refuses_other_settings_or_architecture(tiny_data, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_data, train.TrainConfig(epochs=3, batch_size=64), checkpoint=checkpoint, callback=stop_after(1))
    with pytest.raises(CheckpointError, match="lr"):
        fit(tiny_data, train.TrainConfig(epochs=2, batch_size=64, lr=0.1), checkpoint=checkpoint, resume=True)
    other = models.VAE(models.VAEConfig(data_dim=64, latent_dim=5, encoder_hidden=(32,), decoder_hidden=(32,)))
    with pytest.raises(CheckpointError, match="architecture"):
        train.train(other, *tiny_data, train.TrainConfig(epochs=2, batch_size=64), checkpoint=checkpoint,
                    resume=True, progress=False)
    longer = fit(tiny_data, train.TrainConfig(epochs=2, batch_size=64), checkpoint=checkpoint, resume=True)
    assert longer.history.epoch.tolist() == [1, 2], "epochs may grow on resume"


def test_model_checkpoint_is_not_a_training_checkpoint(tiny_data, tmp_path):
    models.save(models.VAE(CONFIG), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        fit(tiny_data, train.TrainConfig(epochs=1), checkpoint=tmp_path / "model.pt", resume=True)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=0.0), dict(lr_schedule="step"), dict(patience=0),
                                 dict(binarization="soft")])
def test_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        train.TrainConfig(**bad)


def test_fingerprint_tells_settings_apart():
    config = train.TrainConfig(epochs=3)
    assert train.fingerprint(CONFIG, config, n=1) == train.fingerprint(CONFIG, train.TrainConfig(epochs=3), n=1)
    assert train.fingerprint(CONFIG, config, n=1) != train.fingerprint(CONFIG, config, n=2)
    assert train.fingerprint(CONFIG, config) != train.fingerprint(CONFIG, train.TrainConfig(epochs=4))


def test_plateau_schedule_decays_after_stalls_and_stops_at_its_smallest_rate(tiny_data):
    config = train.TrainConfig(epochs=200, batch_size=64, lr=3e-2, lr_schedule="plateau", lr_decay=0.1,
                               plateau_patience=2, max_decays=2, patience=3)  # fmt: skip
    history = fit(tiny_data, config).history
    rates = history.lr.tolist()
    assert sorted(set(rates), reverse=True) == pytest.approx([3e-2, 3e-3, 3e-4])  # both decays happened
    best = history.valid_elbo.cummax()
    stalled = (best.diff() <= 0).tolist()  # epoch e did not improve on the best so far
    for e in range(1, len(rates)):
        if rates[e] < rates[e - 1]:  # a decay follows plateau_patience epochs without improvement
            assert all(stalled[e - 2 : e]), e
    assert len(rates) < 200 and all(stalled[-3:]) and rates[-1] == pytest.approx(3e-4)


def test_snapshots_hold_the_weights_after_their_epochs_and_survive_a_resume(tiny_data, tmp_path):
    config = train.TrainConfig(epochs=4, batch_size=64, patience=None, snapshot_epochs=(3, 1))
    assert config.snapshot_epochs == (1, 3)
    whole = fit(tiny_data, config, checkpoint=tmp_path / "whole.pt")
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_data, config, checkpoint=tmp_path / "one.pt", callback=stop_after(1))
    assert sorted(whole.snapshots) == [1, 3]
    assert models.load(train.snapshot_path(tmp_path / "whole.pt", 3)).state_dict().keys() == whole.snapshots[3].keys()
    one = models.safe_load(tmp_path / "one.pt")
    assert one["epoch"] == 1 and one["snapshot_epochs"] == [1]
    for name, value in one["model"].items():
        torch.testing.assert_close(whole.snapshots[1][name], value, rtol=0, atol=0)
    resumed = fit(tiny_data, config, checkpoint=tmp_path / "one.pt", resume=True)
    assert sorted(resumed.snapshots) == [1, 3]
    for name, value in whole.snapshots[3].items():
        torch.testing.assert_close(resumed.snapshots[3][name], value, rtol=0, atol=0)


def test_min_delta_stops_a_model_that_only_creeps_up_and_keeps_its_best_weights(tiny_data):
    config = train.TrainConfig(epochs=50, batch_size=64, lr=3e-3, patience=3, min_delta=1e9)
    result = fit(tiny_data, config)
    history = result.history
    assert len(history) == 1 + 3, "after the first epoch no gain is large enough"
    best = int(history.valid_elbo.idxmax())
    torch.manual_seed(1)
    replay = train.train(models.VAE(CONFIG), *tiny_data, train.TrainConfig(**{**config.__dict__, "epochs": best + 1,
                                                                                "patience": None}), progress=False)  # fmt: skip
    for a, b in zip(result.model.parameters(), replay.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="min_delta"):
        train.TrainConfig(min_delta=-1)


def test_the_training_kl_is_torchs_closed_form_to_the_bit():
    """The trainer's KL skips building the prior, yet its values and gradients are those of
    torch.distributions.kl_divergence, bit for bit (so the speed-up changes no number)."""
    from torch.distributions import kl_divergence
    from amortgap.families import diagonal_gaussian, kl_to_standard_normal

    torch.manual_seed(0)
    loc, log_scale = torch.randn(3, 7, 5, requires_grad=True), (0.5 * torch.randn(3, 7, 5)).requires_grad_()
    zeros = torch.zeros(3, 7, 5)
    expected = kl_divergence(diagonal_gaussian(loc, log_scale), diagonal_gaussian(zeros, zeros))
    q = diagonal_gaussian(loc, log_scale)
    fast = kl_to_standard_normal(q.base_dist.loc, q.base_dist.scale)
    assert torch.equal(fast, expected)
    for a, b in zip(torch.autograd.grad(expected.sum(), [loc, log_scale]), torch.autograd.grad(fast.sum(), [loc, log_scale])):
        assert torch.equal(a, b)


def test_a_diverging_run_fails_with_its_epoch_and_writes_no_checkpoint_of_it(tiny_data, tmp_path):
    poisoned = tiny_data[1].clone()
    poisoned[0, 0] = float("nan")  # a NaN pixel makes the validation ELBO NaN
    path = tmp_path / "run.pt"
    with pytest.raises(FloatingPointError, match="run.pt: the ELBO is not finite after epoch 1.*no checkpoint was written"):
        fit((tiny_data[0], poisoned), train.TrainConfig(epochs=2, batch_size=64, patience=None), checkpoint=path)
    assert not path.exists()


TABLE = models.VAEConfig(**{**CONFIG.to_dict(), "table_images": 64})


def test_table_models_learn_each_images_own_posterior_from_its_row_and_keep_their_last_weights(tiny_data):
    """Per-image VI with the decoder (``VAEConfig.table_images``): row i of the table is the q of
    training image i, so after training an image's ELBO under its own row beats its ELBO under the
    rows of other images, for each of two stacked members (own seeds, so own batch orders) on
    dynamically binarized images; a run has no validation ELBO and keeps its last weights."""
    x = tiny_data[0][:64] * 0.9 + 0.05
    configs = [train.TrainConfig(epochs=30, batch_size=16, lr=1e-2, patience=None, binarization="dynamic", seed=seed,
                                 snapshot_epochs=(30,)) for seed in (1, 2)]  # fmt: skip
    torch.manual_seed(1)
    results = train.train_stack([models.VAE(TABLE) for _ in configs], x, tiny_data[1], configs, progress=False)
    own = torch.nn.functional.one_hot(torch.arange(64), 64).float()
    shuffled = own[torch.randperm(64, generator=torch.Generator().manual_seed(1))]
    eps = torch.randn(16, 1, 64, CONFIG.latent_dim, generator=torch.Generator().manual_seed(0))
    target = torch.bernoulli(x, generator=torch.Generator().manual_seed(3))
    for result in results:
        assert result.history.valid_elbo.isna().all() and result.best_epoch is None
        assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), result.snapshots[30].values()))
        loss = NegativeElbo(stacked.stack_models([result.model]))
        mine, others = (loss.elbo(target[None], eps, rows[None])[0] for rows in (own, shuffled))
        assert (mine - others).mean() > 5 and result.history.train_elbo.iloc[-1] > result.history.train_elbo.iloc[0] + 5


def test_a_table_run_resumes_to_the_uninterrupted_weights(tiny_data, tmp_path):
    x, config = tiny_data[0][:64], train.TrainConfig(epochs=6, batch_size=16, lr=3e-3, warmup_epochs=2, patience=None)
    torch.manual_seed(1)
    whole = train.train(models.VAE(TABLE), x, tiny_data[1], config, progress=False)

    def interrupt(row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        torch.manual_seed(1)
        train.train(models.VAE(TABLE), x, tiny_data[1], config, checkpoint=tmp_path / "t.pt", callback=interrupt, progress=False)
    torch.manual_seed(1)
    resumed = train.train(models.VAE(TABLE), x, tiny_data[1], config, checkpoint=tmp_path / "t.pt", resume=True, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()))
    assert whole.history.train_elbo.tolist() == resumed.history.train_elbo.tolist()


def test_a_table_model_refuses_other_images_a_plateau_schedule_and_an_elbo_of_unseen_ones(tiny_data):
    with pytest.raises(ValueError, match="table of 64 images trains on those images, not on 512"):
        train.train(models.VAE(TABLE), *tiny_data, train.TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="no plateau"):
        train.train(models.VAE(TABLE), tiny_data[0][:64], tiny_data[1], train.TrainConfig(epochs=1, lr_schedule="plateau"),
                    progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="no ELBO of other images"):
        train.evaluate_elbo(models.VAE(TABLE), tiny_data[1])


def test_a_tables_input_scale_is_its_rows_rate_multiplier(tiny_data):
    """At a rate made for a decoder, a table's rows (one gradient per epoch each) barely move; their
    input scale multiplies the step Adam takes on them: what an image's own row is worth (its ELBO
    under its row against under other images' rows) grows with it."""
    x, config = tiny_data[0][:64], train.TrainConfig(epochs=8, batch_size=16, lr=1e-3, patience=None)
    own = torch.nn.functional.one_hot(torch.arange(64), 64).float()
    shuffled = own[torch.randperm(64, generator=torch.Generator().manual_seed(1))]
    eps = torch.randn(16, 1, 64, CONFIG.latent_dim, generator=torch.Generator().manual_seed(0))
    worth = {}
    for scale in (1.0, 10.0):
        torch.manual_seed(1)
        model = models.VAE(models.VAEConfig(**{**TABLE.to_dict(), "table_scale": scale}))
        trained = train.train(model, x, tiny_data[1], config, progress=False).model
        loss = NegativeElbo(stacked.stack_models([trained]))
        mine, others = (loss.elbo(x[None], eps, table_input(rows, trained.config)[None])[0] for rows in (own, shuffled))
        worth[scale] = float((mine - others).mean())
    assert worth[10.0] > 5 * worth[1.0] > 0, worth  # about 10x: the step on a row, and so its early gain
