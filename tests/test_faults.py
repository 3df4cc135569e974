"""Faults a long run meets, each handled: a GPU checkpoint on a CPU-only machine, a resume that would
not continue the same run (each mismatch named), and a worker killed with SIGKILL at a random moment
(``test_campaign.py``: the OOM killer's way, and the resumed run still ends with the uninterrupted
weights)."""

import pytest
import torch

from amortgap import models, train
from amortgap.models import CheckpointError

CONFIG = models.VAEConfig(data_dim=64, latent_dim=4, encoder_hidden=(32,), decoder_hidden=(32,))
TRAIN = train.TrainConfig(epochs=3, batch_size=64, lr_schedule="stages", stage_base=2, stages=3, patience=None)


@pytest.fixture(scope="module")
def tiny_data():
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((320, 64), 0.3), generator=g)
    return x[:256], x[256:]


def fresh(seed: int = 1) -> models.VAE:
    torch.manual_seed(seed)
    return models.VAE(CONFIG)


def stop_after(epoch: int):
    def interrupt(row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt

    return interrupt


def interrupted_checkpoint(tiny_data, path, epoch: int = 2):
    with pytest.raises(KeyboardInterrupt):
        train.train(fresh(), *tiny_data, TRAIN, checkpoint=path, progress=False, callback=stop_after(epoch))
    return path


def resume(tiny_data, path, config=TRAIN, model=None, data=None):
    return train.train(model or fresh(), *(data or tiny_data), config, checkpoint=path, resume=True, progress=False)


@pytest.fixture
def as_if_on_cuda(monkeypatch):
    """torch.save tags every CPU tensor with location 'cuda:0', as a GPU run's files carry it."""
    from torch import serialization

    entry = (0, lambda obj: "cuda:0" if obj.device.type == "cpu" else None, lambda obj, location: None)
    monkeypatch.setattr(serialization, "_package_registry", [entry, *serialization._package_registry])


def test_a_gpu_model_file_loads_on_a_cpu(tmp_path, as_if_on_cuda):
    model = fresh()
    models.save(model, tmp_path / "gpu.pt")
    if not torch.cuda.is_available():  # the tag took effect: a plain load wants the GPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    loaded = models.load(tmp_path / "gpu.pt")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert a.device.type == "cpu" and torch.equal(a, b)


def test_a_gpu_training_checkpoint_resumes_on_a_cpu(tiny_data, tmp_path, monkeypatch):
    path = interrupted_checkpoint(tiny_data, tmp_path / "run.pt")
    state = models.safe_load(path)
    state["rng"], state["rng_device"] = torch.zeros(16, dtype=torch.uint8), "cuda"  # a CUDA generator's state
    with monkeypatch.context() as m:
        from torch import serialization

        m.setattr(serialization, "_package_registry", [(0, lambda obj: "cuda:0", lambda obj, loc: None),
                                                       *serialization._package_registry])  # fmt: skip
        models.atomic_save(state, path)
    with pytest.warns(UserWarning, match="written on cuda.*fresh data order"):
        result = resume(tiny_data, path)
    assert result.history.epoch.tolist() == [1, 2, 3] and result.finished


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(config=train.TrainConfig(**{**TRAIN.__dict__, "lr": 3e-3})), "training settings.*'lr'"),
        (dict(model=models.VAE(models.VAEConfig(data_dim=64, latent_dim=5, encoder_hidden=(32,), decoder_hidden=(32,)))),
         "architecture"),
        (dict(model=fresh(seed=2)), "initial weights"),
        (dict(data="other"), "other data"),
    ],
)
def test_resume_refuses_what_would_not_continue_this_run_and_says_which(tiny_data, tmp_path, change, named):
    path = interrupted_checkpoint(tiny_data, tmp_path / "run.pt")
    if change.get("data") == "other":
        change["data"] = (1 - tiny_data[0], tiny_data[1])
    with pytest.raises(CheckpointError, match=named):
        resume(tiny_data, path, **change)


def test_resume_refuses_an_adam_step_count_that_does_not_match_the_schedule(tiny_data, tmp_path):
    path = interrupted_checkpoint(tiny_data, tmp_path / "run.pt")
    state = models.safe_load(path)
    for moments in state["adam"].values():
        moments["step"] = moments["step"] + 1
    models.atomic_save(state, path)
    with pytest.raises(CheckpointError, match="Adam states after .* steps"):
        resume(tiny_data, path)


def test_a_fresh_adam_at_each_stage_is_what_the_step_count_expects(tiny_data, tmp_path):
    """Stages of 1, 2 and 4 epochs (base 2): after epoch 3 the Adam of stage 1 has taken 2 epochs of steps."""
    assert [TRAIN.stage(e) for e in range(8)] == [0, 1, 1, 2, 2, 2, 2, 3]
    assert [TRAIN.stage_start(e) for e in range(8)] == [0, 1, 1, 3, 3, 3, 3, 7]
    path = interrupted_checkpoint(tiny_data, tmp_path / "run.pt", epoch=3)
    assert {int(m["step"]) for m in models.safe_load(path)["adam"].values()} == {2 * 4}  # 4 batches of 64


def test_a_budget_stops_cleanly_and_the_resumed_run_is_the_uninterrupted_one(tiny_data, tmp_path, monkeypatch):
    config = train.TrainConfig(**{**TRAIN.__dict__, "epochs": 5})
    whole = train.train(fresh(), *tiny_data, config, progress=False)
    clock = iter(range(0, 10_000, 10))  # every reading of the clock 10 s later: each epoch "takes" 10 s
    monkeypatch.setattr(train.time, "monotonic", lambda: float(next(clock)))
    paused = train.train(fresh(), *tiny_data, config, checkpoint=tmp_path / "run.pt", progress=False,
                         budget_seconds=35)  # fmt: skip
    monkeypatch.undo()
    assert not paused.finished and 0 < len(paused.history) < 5
    assert models.safe_load(tmp_path / "run.pt")["epoch"] == len(paused.history)
    resumed = resume(tiny_data, tmp_path / "run.pt", config)
    assert resumed.finished and resumed.history.epoch.tolist() == [1, 2, 3, 4, 5]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_run_stopped_by_patience_resumes_past_it_to_the_uninterrupted_run(tiny_data, tmp_path):
    """A run first stopped by its patience rule (``after_patience="stop"``) and resumed with
    ``"continue"`` follows the path of a run that never stopped (the campaign's planar model of seed 0
    was extended so)."""
    keep_going = train.TrainConfig(**{**TRAIN.__dict__, "epochs": 8, "patience": 1, "min_delta": 50.0,
                                      "after_patience": "continue"})  # fmt: skip
    whole = train.train(fresh(), *tiny_data, keep_going, progress=False)
    assert whole.early_epoch is not None and whole.early_epoch < 8, "the rule fires early in this run"
    stopped = train.train(fresh(), *tiny_data, train.TrainConfig(**{**keep_going.__dict__, "after_patience": "stop"}),
                          checkpoint=tmp_path / "run.pt", progress=False)  # fmt: skip
    assert len(stopped.history) < 8
    resumed = resume(tiny_data, tmp_path / "run.pt", keep_going)
    assert resumed.history.epoch.tolist() == list(range(1, 9)) and resumed.early_epoch == whole.early_epoch
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
