"""Training VAEs: Adam, KL warm-up, a learning-rate schedule (Cremer et al.'s stages among them),
validation-based early stopping, a wall-clock budget, and atomic per-epoch checkpoints from which an
interrupted run resumes to the identical result.

Models of one architecture train together as one stacked computation (:mod:`amortgap.stacked`);
a single model is a stack of one. Each step is the loss's gradient by hand
(:mod:`amortgap.elbo_gradient`) and torch's fused Adam over one flat buffer (:mod:`amortgap.adam`);
``STEP`` names that step in every run's record (:mod:`amortgap.campaign`). Each member keeps its own seed, data order, Adam state, early
stopping and checkpoint: its randomness (shuffling, dynamic binarization, reparameterization noise)
comes from its own generator, seeded with its ``TrainConfig.seed`` and saved in its checkpoint, and
validation draws from a generator seeded afresh, so it neither depends on nor disturbs training.
A member that stops early leaves the stack.

A table model (``VAEConfig.table_images``: per-image VI, no encoder) trains on exactly its table's
images: each batch's encoder input is its images' one-hot indices. It has no q for a validation
image, so its validation ELBO is NaN and its result is the weights of its last epoch.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import pandas as pd
import torch
from torch import Tensor

from .config import FromSection
from . import stacked
from .data import Binarization, binarize
from .adam import FlatAdam
from .elbo_gradient import NegativeElbo
from .models import VAE, CheckpointError, atomic_save, safe_load, table_input
from .models import save as save_model
from .parts import tensor_digest
from .progress import bar as progress_bar

TRAIN_FORMAT = "amortgap.train/4"
STEP = "by-hand"  # the training step (amortgap.elbo_gradient and amortgap.adam), as run.json names it
SCHEDULES = ("constant", "exponential", "cosine", "plateau", "stages")
RESUMABLE_CHANGES = ("epochs", "after_patience", "snapshot_epochs")  # none changes the path a run takes


@dataclass(frozen=True)
class TrainConfig(FromSection):
    """Optimisation settings. The KL weight rises linearly from 0 to 1 over ``warmup_epochs``; the
    learning rate follows ``lr_schedule`` (``exponential``: times ``lr_decay`` each epoch;
    ``cosine``: down to ``lr * lr_decay`` at the last epoch; ``plateau``: times ``lr_decay`` after
    ``plateau_patience`` epochs without a better validation ELBO, at most ``max_decays`` times;
    ``stages``: Cremer et al. (2018)'s schedule, stage i = 0 .. ``stages`` - 1 lasting
    ``stage_base``**i epochs at ``lr * lr_decay**(i / (stages - 1))``, each with a fresh Adam;
    epochs past the last stage continue in stages as long as the last, at its rate).

    The best weights are those of the best validation ELBO; with ``best_after_warmup`` only epochs
    after the KL warm-up count (before it ends the model optimises another objective; the plateau
    protocol's models, which predate the rule, count every epoch). ``patience`` counted epochs without
    a better validation ELBO (``None``: never) fire the early-stopping rule: the run stops there
    (``after_patience="stop"``), or keeps the best weights of that moment as its early-stopped
    model and trains on to ``epochs`` (``"continue"``: one run gives both protocols' models). "Better"
    means by more than ``min_delta`` nats: at a small rate a model can creep up by hundredths of a
    nat for a hundred epochs. With ``plateau`` and ``patience`` longer than ``plateau_patience``, a
    model stops only once its smallest rate no longer helps. ``epochs`` is the cap. The weights
    after each epoch in ``snapshot_epochs`` are kept (:attr:`TrainResult.snapshots`)."""

    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: Literal["constant", "exponential", "cosine", "plateau", "stages"] = "constant"
    lr_decay: float = 1.0
    plateau_patience: int = 5
    max_decays: int = 2
    stage_base: int = 3
    stages: int = 8
    warmup_epochs: int = 0
    best_after_warmup: bool = False
    patience: int | None = 20
    min_delta: float = 0.0
    after_patience: Literal["stop", "continue"] = "stop"
    binarization: Binarization = "static"
    samples: int = 1
    seed: int = 0
    valid_batch_size: int = 1000
    snapshot_epochs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "samples", "valid_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.lr <= 0 or self.lr_decay <= 0 or self.warmup_epochs < 0:
            raise ValueError("lr and lr_decay must be positive and warmup_epochs >= 0")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; one of {SCHEDULES}")
        if self.stage_base < 1 or self.stages < 2:
            raise ValueError(f"stage_base must be positive and stages at least 2, not {self.stage_base}, {self.stages}")
        if self.after_patience not in ("stop", "continue"):
            raise ValueError(f"after_patience must be 'stop' or 'continue', not {self.after_patience!r}")
        if self.binarization not in ("static", "dynamic"):
            raise ValueError(f"binarization must be 'static' or 'dynamic', not {self.binarization!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be positive or None, not {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, not {self.min_delta}")
        if self.plateau_patience < 1 or self.max_decays < 0:
            raise ValueError("plateau_patience must be positive and max_decays >= 0")
        object.__setattr__(self, "snapshot_epochs", tuple(sorted({int(e) for e in self.snapshot_epochs})))
        if any(e < 1 for e in self.snapshot_epochs):
            raise ValueError(f"snapshot_epochs must be positive, not {self.snapshot_epochs}")

    def stage(self, epoch: int) -> int:
        """The ``stages`` schedule's stage of epoch ``epoch`` (0-based); 0 for the other schedules."""
        if self.lr_schedule != "stages":
            return 0
        start = 0
        for i in range(self.stages):
            start += self.stage_base**i
            if epoch < start:
                return i
        return self.stages + (epoch - start) // self.stage_base ** (self.stages - 1)

    def stage_start(self, epoch: int) -> int:
        """The first epoch (0-based) of ``epoch``'s stage (0 for the other schedules)."""
        i = self.stage(epoch)
        last = self.stage_base ** (self.stages - 1)
        return sum(self.stage_base**j for j in range(min(i, self.stages))) + max(i - self.stages, 0) * last

    def learning_rate(self, epoch: int, decays: int = 0) -> float:
        """The learning rate of epoch ``epoch`` (0-based), after ``decays`` plateau decays."""
        if self.lr_schedule == "stages":
            return self.lr * self.lr_decay ** (min(self.stage(epoch), self.stages - 1) / (self.stages - 1))
        if self.lr_schedule == "plateau":
            return self.lr * self.lr_decay**decays
        if self.lr_schedule == "exponential":
            return self.lr * self.lr_decay**epoch
        if self.lr_schedule == "cosine":
            progress = epoch / max(self.epochs - 1, 1)
            return self.lr * (self.lr_decay + (1 - self.lr_decay) * 0.5 * (1 + math.cos(math.pi * progress)))
        return self.lr

    def kl_weight(self, epoch: int, batch: int, batches: int) -> float:
        """Linear KL warm-up from 0 to 1 over ``warmup_epochs``, updated every batch."""
        if self.warmup_epochs == 0:
            return 1.0
        return min(1.0, (epoch + batch / batches) / self.warmup_epochs)


@dataclass
class TrainResult:
    """The trained model (best validation weights after the warm-up; a table model's, having no
    validation ELBO: its last epoch's), one history row per epoch, the
    weights after each reached epoch of ``TrainConfig.snapshot_epochs`` (epoch -> state dict), the
    epoch of the best weights when the patience rule fired (None if it never did; with
    ``after_patience="stop"`` those are the model's weights), the best epoch, and whether the run is
    finished (False: a budget stopped it, and its checkpoint resumes it)."""

    model: VAE
    history: pd.DataFrame
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    early_epoch: int | None = None
    best_epoch: int | None = None
    finished: bool = True


@dataclass
class _Member:
    """One model's training state: what its checkpoint holds, and where."""

    model: VAE
    config: TrainConfig
    checkpoint: Path | None
    generator: torch.Generator  # its state at an epoch's start fixes that epoch's data order and noise
    adam: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # name -> step, exp_avg, exp_avg_sq
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_valid: float = -math.inf
    best_state: dict[str, Tensor] | None = None
    best_epoch: int | None = None
    stalls: int = 0
    decays: int = 0
    fired: bool = False  # the patience rule has fired
    early_epoch: int | None = None
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)  # data, initial weights

    @property
    def lr(self) -> float:
        return self.config.learning_rate(self.epoch, self.decays)

    @property
    def running(self) -> bool:
        stopped = self.fired and self.config.after_patience == "stop"
        return self.epoch < self.config.epochs and not stopped


@torch.no_grad()
def mean_elbo(stack: stacked.Stack, x: Tensor, batch_size: int = 1000, seed: int = 0) -> Tensor:
    """Each member's mean single-sample ELBO over the same x [N, D]: [M]. The noise comes from a
    generator seeded with ``seed`` (the same for every member, and the global RNG untouched)."""
    if stack.template.config.table_images:
        raise ValueError("a table model has q only for its own training images, by index: no ELBO of other images")
    generator = torch.Generator(x.device).manual_seed(seed)
    d, M = stack.template.latent_dim, stack.size
    loss = NegativeElbo(stack)
    total = torch.zeros(M, device=x.device)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        eps = torch.randn(1, 1, len(xb), d, generator=generator, device=x.device).expand(1, M, -1, -1)
        total += loss.elbo(xb.expand(M, -1, -1), eps).sum(-1)
    return total / len(x)


def evaluate_elbo(model: VAE, x: Tensor, batch_size: int = 1000, seed: int = 0) -> float:
    """Mean single-sample ELBO over x [N, D], with noise from a generator seeded with ``seed``."""
    return mean_elbo(stacked.stack_models([model]), x, batch_size, seed).item()


def train(
    model: VAE,
    train_x: Tensor,
    valid_x: Tensor,
    config: TrainConfig = TrainConfig(),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    budget_seconds: float | None = None,
) -> TrainResult:
    """Train ``model`` alone: :func:`train_stack` with one member."""
    on_epoch = None if callback is None else (lambda member, row: callback(row))
    return train_stack([model], train_x, valid_x, [config], [checkpoint], resume, progress, on_epoch,
                       budget_seconds)[0]  # fmt: skip


def train_stack(
    models: Sequence[VAE],
    train_x: Tensor,
    valid_x: Tensor,
    configs: Sequence[TrainConfig],
    checkpoints: Sequence[str | os.PathLike | None] | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
    budget_seconds: float | None = None,
) -> list[TrainResult]:
    """Train ``models`` (one architecture, one device, each freshly initialised) as one stacked
    computation on intensities or binary data ``train_x`` [N, D] (binarized per the configs'
    ``binarization``); ``valid_x`` [M, D] must already be binary. ``configs`` may differ only in
    their seeds. Parameters with ``requires_grad=False`` (a frozen decoder) stay as they are.

    Member i's state (weights, Adam moments and step, schedule position, RNG state, which fixes the
    data order, history, best and early weights) is written atomically to ``checkpoints[i]`` after
    every epoch, its snapshots once each beside it (:func:`snapshot_path`); ``resume=True``
    continues from it, and refuses a checkpoint of other settings, data or initial weights, or an
    inconsistent Adam step count (a finished run's owner keeps its weights and deletes the checkpoint:
    :mod:`amortgap.campaign`).
    With ``budget_seconds``, no epoch starts that would end past the budget (judged by the last
    epoch's time): the run stops cleanly, resumable, with ``finished=False``. ``callback(i, row)``
    receives member i's history row of each epoch (raise in it to stop)."""
    if len(configs) != len(models) or (checkpoints is not None and len(checkpoints) != len(models)):
        raise ValueError("give one config (and one checkpoint, if any) per model")
    differ = {f.name for f in fields(TrainConfig) for c in configs[1:]
              if f.name != "seed" and getattr(c, f.name) != getattr(configs[0], f.name)}  # fmt: skip
    if differ:
        raise ValueError(f"models train in one stack only with the same settings but seed; {sorted(differ)} differ")
    config = configs[0]
    table = models[0].config.table_images
    if table and table != len(train_x):
        raise ValueError(f"a table of {table} images trains on those images, not on {len(train_x)}")
    if table and config.lr_schedule == "plateau":
        raise ValueError("a table model has no validation ELBO, so no plateau of it can set its learning rate")
    device = next(models[0].parameters()).device
    train_x, valid_x = train_x.to(device), valid_x.to(device)
    # static: binarized once, kept as bytes (a quarter of the memory each batch's gather reads)
    static = binarize(train_x, "static").to(torch.uint8) if config.binarization == "static" else None
    data = tensor_digest(train_x, valid_x) if checkpoints is not None else ""
    batches = math.ceil(len(train_x) / config.batch_size)
    members = []
    for model, member_config, path in zip(models, configs, checkpoints or [None] * len(models)):
        member = _Member(model, member_config, Path(path) if path is not None else None,
                         torch.Generator(device).manual_seed(member_config.seed))  # fmt: skip
        if member.checkpoint is not None:
            member.fingerprints = {"data": data, "initial weights": tensor_digest(*model.state_dict().values())}
            if resume and member.checkpoint.exists():
                _restore(member, batches)
        members.append(member)

    start, last_epoch_seconds = time.monotonic(), 0.0
    first = min(m.epoch for m in members)
    bar = progress_bar(desc=f"train epochs ({len(members)} model{'s' * (len(members) > 1)})", show=progress,
                       initial=first, total=config.epochs)  # fmt: skip
    while running := [m for m in members if m.running]:
        if budget_seconds is not None and time.monotonic() - start + last_epoch_seconds > budget_seconds:
            break
        epoch = min(m.epoch for m in running)
        lr = max(m.lr for m in running if m.epoch == epoch)  # members at another rate train as their own stack
        began = time.monotonic()
        _train_epoch([m for m in running if m.epoch == epoch and m.lr == lr], train_x if static is None else static,
                     valid_x, epoch, callback and (lambda m, row: callback(members.index(m), row)))  # fmt: skip
        last_epoch_seconds = time.monotonic() - began
        still = [m.epoch for m in members if m.running]
        bar.update(min(still, default=config.epochs) - bar.n)  # the slowest running member's epoch
        bar.set_postfix(running=len(still), best_valid=f"{max(m.best_valid for m in members):.2f}")
    bar.close()
    results = []
    for member in members:
        if member.best_state is not None:
            member.model.load_state_dict(member.best_state)
        results.append(TrainResult(member.model, pd.DataFrame(member.history), member.snapshots, member.early_epoch,
                                   member.best_epoch, not member.running))  # fmt: skip
    return results


def _train_epoch(group: list[_Member], train_x: Tensor, valid_x: Tensor, epoch: int,
                 callback: Callable[[_Member, dict], None] | None) -> None:  # fmt: skip
    """One epoch of every member of ``group`` (all at ``epoch``, so their Adam steps agree) as one
    stack; then validation, early-stopping bookkeeping and each member's checkpoint."""
    start = time.perf_counter()
    config = group[0].config
    stack = stacked.stack_models([m.model for m in group])
    lr = group[0].lr
    if epoch > 0 and config.stage(epoch) != config.stage(epoch - 1):  # a new stage: a fresh Adam
        for member in group:
            member.adam = {}
    adam = FlatAdam(stack)
    if group[0].adam:
        adam.load_state({name: {"step": group[0].adam[name]["step"],
                                **{k: stacked.stack_tensors([m.adam[name][k] for m in group]) for k in ("exp_avg", "exp_avg_sq")}}
                         for name in stack.trainable_names})  # fmt: skip
    loss = NegativeElbo(stack, adam.grads)

    dynamic = config.binarization == "dynamic"
    dtype = next(iter(stack.params.values())).dtype
    n, bs, d = train_x.shape[0], config.batch_size, stack.template.latent_dim
    table = stack.template.config.table_images
    batches = math.ceil(n / bs)
    orders = [torch.randperm(n, generator=m.generator, device=train_x.device) for m in group]
    elbo_sum = torch.zeros(len(group), device=train_x.device)
    for b in range(batches):
        xs, noise, rows = [], [], []
        for member, order in zip(group, orders):
            rows.append(order[b * bs : (b + 1) * bs])
            xb = train_x[rows[-1]]
            xs.append(binarize(xb, "dynamic", member.generator) if dynamic else xb)
            noise.append(torch.randn(config.samples, len(xb), d, generator=member.generator, device=xb.device))
        inputs = table_input(torch.nn.functional.one_hot(torch.stack(rows), n).to(dtype), stack.template.config) if table else None
        elbo = loss(torch.stack(xs).to(dtype), torch.stack(noise, 1), config.kl_weight(epoch, b, batches), inputs)
        adam.step(lr)
        elbo_sum += elbo.sum(-1)
    valid = [math.nan] * len(group) if table else mean_elbo(stack, valid_x, config.valid_batch_size).tolist()
    for member, train_sum, valid_elbo in zip(group, elbo_sum.tolist(), valid):
        if not math.isfinite(train_sum) or not (table or math.isfinite(valid_elbo)):
            if member.checkpoint is None:
                name, kept = f"member {group.index(member)}", "nothing was saved"
            else:
                name, kept = member.checkpoint.name, (f"its checkpoint still holds epoch {epoch}" if epoch > 0
                                                      else "no checkpoint was written")  # fmt: skip
            raise FloatingPointError(f"{name}: the ELBO is not finite after epoch {epoch + 1} (train {train_sum / n}, "
                                     f"valid {valid_elbo}): training diverged; {kept}")  # fmt: skip

    stacked.unstack_into(stack, [m.model for m in group])
    seconds = (time.perf_counter() - start) / len(group)
    for i, (member, train_elbo) in enumerate(zip(group, (elbo_sum / n).tolist())):
        member.adam = {name: {"step": state["step"].clone(),
                              "exp_avg": stacked.member_tensor(state["exp_avg"], i).clone(memory_format=torch.contiguous_format),
                              "exp_avg_sq": stacked.member_tensor(state["exp_avg_sq"], i).clone(memory_format=torch.contiguous_format)}
                       for name, state in adam.state().items()}  # fmt: skip
        if not table and (not config.best_after_warmup or epoch + 1 > config.warmup_epochs):
            _track_best(member, valid[i], epoch + 1)
        if epoch + 1 in config.snapshot_epochs:
            member.snapshots[epoch + 1] = {k: v.detach().clone() for k, v in member.model.state_dict().items()}
            if member.checkpoint is not None:
                save_model(member.model, snapshot_path(member.checkpoint, epoch + 1))
        row = {"epoch": epoch + 1, "train_elbo": train_elbo, "valid_elbo": valid[i], "lr": lr,
               "kl_weight": config.kl_weight(epoch, batches, batches), "seconds": seconds}
        member.history.append(row)
        member.epoch = epoch + 1
        if member.checkpoint is not None:
            _checkpoint(member)
        if callback is not None:
            callback(member, row)


def _track_best(member: _Member, valid: float, epoch: int) -> None:
    """The best weights, the patience count, plateau decays and the early-stopping rule after an epoch
    (1-based ``epoch``) with validation ELBO ``valid``."""
    config = member.config
    if valid > member.best_valid:  # the best weights are kept whatever the margin ...
        member.best_state = {k: v.detach().clone() for k, v in member.model.state_dict().items()}
        member.best_epoch = epoch
    improved = valid > member.best_valid + config.min_delta  # ... but only a real gain resets the count
    member.best_valid = max(member.best_valid, valid)
    member.stalls = 0 if improved else member.stalls + 1
    if config.lr_schedule == "plateau" and member.stalls >= config.plateau_patience \
            and member.decays < config.max_decays:  # fmt: skip
        member.decays, member.stalls = member.decays + 1, 0
    if config.patience is not None and not member.fired and member.stalls >= config.patience:
        member.fired, member.early_epoch = True, member.best_epoch


def _plain(value):
    """A config value as a checkpoint stores it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def snapshot_path(checkpoint: str | os.PathLike, epoch: int) -> Path:
    """Where a run checkpointed at ``checkpoint`` keeps its weights after epoch ``epoch``: a model
    file (:func:`amortgap.models.load`), written once, beside the checkpoint."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / f"{checkpoint.stem}.snapshots" / f"e{epoch}.pt"


def train_cached(
    model: VAE,
    train_x: Tensor,
    valid_x: Tensor,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    name: str,
    progress: bool = False,
) -> TrainResult:
    """:func:`train_stack_cached` of one model."""
    return train_stack_cached([model], train_x, valid_x, [config], checkpoint_dir, [name], progress)[0]


def train_stack_cached(
    models: Sequence[VAE],
    train_x: Tensor,
    valid_x: Tensor,
    configs: Sequence[TrainConfig],
    checkpoint_dir: str | os.PathLike,
    names: Sequence[str],
    progress: bool = False,
) -> list[TrainResult]:
    """:func:`train_stack` with member i's checkpoint at ``checkpoint_dir/names[i]-<fingerprint>.pt``,
    the fingerprint covering the architecture, its config, the training data, any frozen weights and
    the training code and the initial weights (frozen ones included): an interrupted run resumes, a
    finished member is loaded instead of retrained, and any change trains afresh."""
    data = tensor_digest(train_x, valid_x)
    paths = []
    for model, config, name in zip(models, configs, names, strict=True):
        tag = fingerprint(model.config, config, data=data, initial=tensor_digest(*model.state_dict().values()))
        paths.append(Path(checkpoint_dir) / f"{name}-{tag}.pt")
    return train_stack(models, train_x, valid_x, configs, paths, resume=True, progress=progress)


def fingerprint(*configs, **extra) -> str:
    """A short hash of the given configs (dataclasses or plain values), ``extra`` values, and the
    source of the modules that load data, build and train models: a cached model is reused only
    when settings and training code are the same."""
    from . import adam, data, elbo_gradient, families, models, stacked

    payload = json.dumps([asdict(c) if is_dataclass(c) else c for c in configs] + [extra], sort_keys=True,
                         default=str)  # fmt: skip
    code = "".join(inspect.getsource(module) for module in (adam, data, elbo_gradient, families, models, stacked,
                                                            sys.modules[__name__]))  # fmt: skip
    return hashlib.sha256((payload + code).encode()).hexdigest()[:12]


def _checkpoint(member: _Member) -> None:
    atomic_save({
        "format": TRAIN_FORMAT,
        "train_config": asdict(member.config),
        "model_config": member.model.config.to_dict(),
        "fingerprints": member.fingerprints,
        "model": member.model.state_dict(),
        "adam": member.adam,
        "rng": member.generator.get_state(),
        "rng_device": member.generator.device.type,
        "epoch": member.epoch,
        "history": member.history,
        "best_valid": member.best_valid,
        "best_state": member.best_state,
        "best_epoch": member.best_epoch,
        "stalls": member.stalls,
        "decays": member.decays,
        "fired": member.fired,
        "early_epoch": member.early_epoch,
        "snapshot_epochs": sorted(member.snapshots),  # the weights are in their own files
    }, member.checkpoint)  # fmt: skip


def _restore(member: _Member, batches: int) -> None:
    """Continue ``member`` from its checkpoint, after checking that it is the run this call would
    continue: the same settings (only ``epochs`` may grow), architecture, data and initial weights,
    and an Adam step count that matches the schedule position (``batches`` steps per epoch)."""
    path, model, config = member.checkpoint, member.model, member.config
    obj = safe_load(path, map_location=next(model.parameters()).device)
    if obj["format"] != TRAIN_FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint of this version (format {obj['format']!r}, "
                              f"expected {TRAIN_FORMAT!r}); start afresh without resume")  # fmt: skip
    if obj["model_config"] != model.config.to_dict():
        raise CheckpointError(
            f"{path} was written for architecture {obj['model_config']}, not {model.config.to_dict()}"
        )
    saved = obj["train_config"]  # a setting newer than the checkpoint is compared at its default
    changed = {f.name for f in fields(TrainConfig) if f.name not in RESUMABLE_CHANGES
               and _plain(saved.get(f.name, f.default)) != _plain(getattr(config, f.name))}  # fmt: skip
    if changed:
        raise CheckpointError(
            f"{path} was written with other training settings ({sorted(changed)} differ); resume needs the same "
            f"settings (only {' and '.join(RESUMABLE_CHANGES)} may change), or start afresh without resume"
        )
    for what, digest in obj["fingerprints"].items():
        if digest != member.fingerprints.get(what):
            raise CheckpointError(f"{path} was written for other {what} (fingerprint {digest}, here "
                                  f"{member.fingerprints.get(what)}); it would not continue this run")  # fmt: skip
    epoch = obj["epoch"]
    expected = (epoch - config.stage_start(epoch - 1)) * batches if epoch > 0 else 0
    steps = {int(state["step"]) for state in obj["adam"].values()}
    if obj["adam"] and steps != {expected}:
        raise CheckpointError(f"{path} holds Adam states after {sorted(steps)} steps, but {epoch} epochs of this "
                              f"schedule at {batches} batches each mean {expected}; it is corrupt or of another run")  # fmt: skip
    model.load_state_dict(obj["model"])
    if obj.get("rng_device", "cpu") == member.generator.device.type:
        member.generator.set_state(obj["rng"].cpu())
    else:  # a CUDA generator's state means nothing to a CPU one: continue on a fresh, seeded stream
        warnings.warn(f"{path} was written on {obj['rng_device']}; it continues here on {member.generator.device.type} "
                      "with a fresh data order and noise stream (seeded by seed and epoch), so the run is not "
                      "bit-identical to one that never moved", stacklevel=3)  # fmt: skip
        member.generator.manual_seed(config.seed * 1_000_003 + epoch)
    member.adam, member.epoch, member.history = obj["adam"], epoch, obj["history"]
    member.best_valid, member.best_state, member.best_epoch = obj["best_valid"], obj["best_state"], obj["best_epoch"]
    member.stalls, member.decays, member.fired = obj["stalls"], obj["decays"], obj["fired"]
    member.early_epoch = obj["early_epoch"]  # (checkpoints before 2026-12-03 also hold its weights, unused)
    member.snapshots = {e: safe_load(snapshot_path(path, e))["state_dict"] for e in obj["snapshot_epochs"]}
