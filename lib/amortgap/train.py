"""Training a VAE: Adam, KL warm-up, a learning-rate schedule, validation-based early stopping, and
atomic per-epoch checkpoints from which an interrupted run resumes to the identical result.

All randomness (shuffling, dynamic binarization, reparameterization noise) comes from the global
torch RNG, whose state is saved in every checkpoint; validation uses a fixed seed on a forked RNG,
so it neither depends on nor disturbs the training stream.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Callable, Literal

import pandas as pd
import torch
from torch import Tensor
from torch.distributions import Independent, kl_divergence

from .data import Binarization, binarize
from .families import diagonal_gaussian
from .models import VAE, CheckpointError, atomic_save, safe_load
from .progress import bar as progress_bar

TRAIN_FORMAT = "amortgap.train/1"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. The KL weight rises linearly from 0 to 1 over ``warmup_epochs``; the
    learning rate follows ``lr_schedule`` (``exponential``: times ``lr_decay`` each epoch;
    ``cosine``: down to ``lr * lr_decay`` at the last epoch); training stops after ``patience``
    epochs without a better validation ELBO (``None``: never) and keeps the best weights."""

    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: Literal["constant", "exponential", "cosine"] = "constant"
    lr_decay: float = 1.0
    warmup_epochs: int = 0
    patience: int | None = 20
    binarization: Binarization = "static"
    samples: int = 1
    seed: int = 0
    valid_batch_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "samples", "valid_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.lr <= 0 or self.lr_decay <= 0 or self.warmup_epochs < 0:
            raise ValueError("lr and lr_decay must be positive and warmup_epochs >= 0")
        if self.lr_schedule not in ("constant", "exponential", "cosine"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}")
        if self.binarization not in ("static", "dynamic"):
            raise ValueError(f"binarization must be 'static' or 'dynamic', not {self.binarization!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be positive or None, not {self.patience}")

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based)."""
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
    """The trained model (best validation weights) and one history row per epoch."""

    model: VAE
    history: pd.DataFrame


def negative_elbo(model: VAE, x: Tensor, samples: int = 1, kl_weight: float = 1.0) -> tuple[Tensor, Tensor]:
    """The training loss -(E_q[log p(x|z)] - kl_weight KL(q || p(z))), averaged over the batch, and
    the per-datapoint ELBO [B] (at kl_weight 1). The KL of a diagonal Gaussian is analytic; for other
    families it is the Monte Carlo estimate log q(z) - log p(z) on the same samples."""
    q = model.encode(x)
    z = q.rsample((samples,))
    expected_log_lik = model.log_likelihood(x, z).mean(0)
    if isinstance(q, Independent):
        zeros = torch.zeros_like(q.mean)
        kl = kl_divergence(q, diagonal_gaussian(zeros, zeros))
    else:
        kl = (q.log_prob(z) - model.log_prior(z)).mean(0)
    loss = -(expected_log_lik - kl_weight * kl).mean()
    return loss, (expected_log_lik - kl).detach()


@torch.no_grad()
def evaluate_elbo(model: VAE, x: Tensor, batch_size: int = 1000, seed: int = 0) -> float:
    """Mean single-sample ELBO over x [N, D], with a fixed seed and the caller's RNG left untouched."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        total = sum(negative_elbo(model, x[i : i + batch_size])[1].sum().item() for i in range(0, len(x), batch_size))
    return total / len(x)


def train(
    model: VAE,
    train_x: Tensor,
    valid_x: Tensor,
    config: TrainConfig = TrainConfig(),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` on intensities or binary data ``train_x`` [N, D] (binarized per
    ``config.binarization``); ``valid_x`` [M, D] must already be binary. Parameters with
    ``requires_grad=False`` (a frozen decoder) stay as they are. With ``checkpoint``, the full state
    is written atomically after every epoch, and ``resume=True`` continues from it.
    ``callback`` receives each epoch's history row (raise in it to stop)."""
    device = next(model.parameters()).device
    train_x, valid_x = train_x.to(device), valid_x.to(device)
    static = binarize(train_x, "static") if config.binarization == "static" else None
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    state = {"epoch": 0, "history": [], "best_valid": -math.inf, "best_state": None, "stalls": 0}
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = _restore(checkpoint, model, optimizer, config)
    else:
        torch.manual_seed(config.seed)

    n, bs = train_x.shape[0], config.batch_size
    batches = math.ceil(n / bs)
    bar = progress_bar(range(state["epoch"], config.epochs), desc="train epochs", show=progress,
                       initial=state["epoch"], total=config.epochs)
    for epoch in bar:
        if config.patience is not None and state["stalls"] >= config.patience:
            break
        start = time.perf_counter()
        lr = config.learning_rate(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(n, device=device)
        elbo_sum = 0.0
        for b in range(batches):
            rows = order[b * bs : (b + 1) * bs]
            xb = static[rows] if static is not None else binarize(train_x[rows], "dynamic")
            loss, elbo_b = negative_elbo(model, xb, config.samples, config.kl_weight(epoch, b, batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            elbo_sum += elbo_b.sum().item()
        model.eval()
        valid = evaluate_elbo(model, valid_x, config.valid_batch_size)
        improved = valid > state["best_valid"]
        if improved:
            state["best_valid"] = valid
            state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state["stalls"] = 0 if improved else state["stalls"] + 1
        row = {"epoch": epoch + 1, "train_elbo": elbo_sum / n, "valid_elbo": valid, "lr": lr,
               "kl_weight": config.kl_weight(epoch, batches, batches),
               "seconds": time.perf_counter() - start}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if checkpoint is not None:
            _checkpoint(checkpoint, model, optimizer, config, state)
        bar.set_postfix(train=f"{row['train_elbo']:.2f}", valid=f"{valid:.2f}")
        if callback is not None:
            callback(row)
    bar.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    return TrainResult(model, pd.DataFrame(state["history"]))


def train_cached(
    model: VAE,
    train_x: Tensor,
    valid_x: Tensor,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    name: str,
    progress: bool = False,
) -> TrainResult:
    """:func:`train` with its checkpoint at ``checkpoint_dir/name-<fingerprint>.pt``, the fingerprint
    covering the architecture, ``config``, the training data, any frozen weights and the training
    code: an interrupted run resumes, a finished one is loaded instead of retrained, and any change
    trains afresh. ``model`` must be freshly initialised (its initial weights are not fingerprinted,
    so initialise it from ``config.seed``)."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    tag = fingerprint(model.config, config, data=tensor_digest(train_x, valid_x), frozen=tensor_digest(*frozen))
    path = Path(checkpoint_dir) / f"{name}-{tag}.pt"
    return train(model, train_x, valid_x, config, checkpoint=path, resume=True, progress=progress)


def tensor_digest(*tensors: Tensor) -> str:
    """A short hash of the tensors' shapes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(*configs, **extra) -> str:
    """A short hash of the given configs (dataclasses or plain values), ``extra`` values, and the
    source of the modules that load data, build and train models: a cached model is reused only
    when settings and training code are the same."""
    from . import data, families, models

    payload = json.dumps([asdict(c) if is_dataclass(c) else c for c in configs] + [extra], sort_keys=True,
                         default=str)  # fmt: skip
    code = "".join(inspect.getsource(module) for module in (data, families, models, sys.modules[__name__]))
    return hashlib.sha256((payload + code).encode()).hexdigest()[:12]


def _checkpoint(path, model: VAE, optimizer, config: TrainConfig, state: dict) -> None:
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    atomic_save({
        "format": TRAIN_FORMAT,
        "train_config": asdict(config),
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        **state,
    }, path)  # fmt: skip


def _restore(path, model: VAE, optimizer, config: TrainConfig) -> dict:
    device = next(model.parameters()).device
    obj = safe_load(path, map_location=device)
    if obj["format"] != TRAIN_FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint (format {obj['format']!r})")
    if obj["model_config"] != model.config.to_dict():
        raise CheckpointError(
            f"{path} was written for architecture {obj['model_config']}, not {model.config.to_dict()}"
        )
    saved = obj["train_config"]
    changed = {f.name for f in fields(TrainConfig) if f.name != "epochs" and saved.get(f.name) != getattr(config, f.name)}
    if changed:
        raise CheckpointError(
            f"{path} was written with other training settings ({sorted(changed)} differ); resume needs "
            "the same settings (only epochs may grow), or start afresh without resume"
        )
    model.load_state_dict(obj["model"])
    optimizer.load_state_dict(obj["optimizer"])
    torch.set_rng_state(obj["rng"]["cpu"].cpu())
    if "cuda" in obj["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in obj["rng"]["cuda"]])
    return {k: obj[k] for k in ("epoch", "history", "best_valid", "best_state", "stalls")}

