"""An encoder distilled onto per-image q* (issue 39, item 2: the third candidate for q_best).

The amortization gap L[q*] - L[q_joint] mixes two causes: an encoder of this architecture cannot
represent the map x -> q*(x) (expressivity), or it can but training did not find it (optimisation).
An encoder fitted directly to q* on many training images, then fine-tuned by the ELBO, is one
witness of how far the architecture can go. The fit minimises, per image, KL(q(z|x) || q*), the
direction of the ELBO's own KL(q || p(z|x)): distillation and the fine-tuning pull the same way.

Only the diagonal Gaussian (FFG) family: both q and q* are then closed-form, and so is the KL.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from .config import FromSection
from .families import DiagonalGaussian, Params
from .models import VAE


@dataclass(frozen=True)
class DistillConfig(FromSection):
    """Adam on the mean KL over minibatches of (image, q*) pairs; ``held_out`` of the pairs (drawn
    with ``seed``) are kept apart, and the encoder of the epoch with the smallest held-out KL wins."""

    epochs: int = 60
    batch_size: int = 100
    lr: float = 1e-5
    held_out: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size) < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be positive, and lr too")
        if not 0 < self.held_out < 1:
            raise ValueError(f"held_out is a share of the pairs in (0, 1), not {self.held_out}")


def dotted(weights: str) -> str:
    """A weights file ``<run>/<path>.pt`` as one name, ``diagonal_cremer_s0.train.snapshots.e300``:
    in the names of the runs trained on it and of its q* targets."""
    return Path(weights).with_suffix("").as_posix().replace("/", ".")


def targets_file(targets_dir: str | Path, decoder: str) -> Path:
    """Where the q* targets of ``decoder`` (``<run>/<path>.pt``) live: ``<targets_dir>/<dotted>.pt``."""
    return Path(targets_dir) / f"{dotted(decoder)}.pt"


def kl_diagonal(q: Params, p: Params) -> Tensor:
    """KL(q || p) between diagonal Gaussians given by ``loc`` and ``log_scale`` [B, d]: [B]."""
    log_ratio = p["log_scale"] - q["log_scale"]
    return (log_ratio + 0.5 * ((q["loc"] - p["loc"]).pow(2) + torch.exp(2 * q["log_scale"]))
            * torch.exp(-2 * p["log_scale"]) - 0.5).sum(-1)  # fmt: skip


def encoder_params(model: VAE, x: Tensor) -> Params:
    """The parameters of ``model``'s q(z|x) for x [B, D] (``loc``, ``log_scale`` [B, d]), before they
    become a distribution. (Here rather than in :mod:`amortgap.models`: a change there would change
    the fingerprint of every kept evaluation part.)"""
    return model.family.unflatten(nn.Sequential.forward(model.encoder, x), model.latent_dim)


def distill(model: VAE, x: Tensor, target: Params, config: DistillConfig = DistillConfig()) -> tuple[VAE, pd.DataFrame]:
    """A copy of ``model`` whose encoder, starting from ``model``'s, minimises the mean of
    KL(q(z|x_i) || q*_i) over images ``x`` [N, D] with their q* ``target`` (``loc``, ``log_scale``
    [N, d]). The decoder is copied untouched. Returns the encoder of the smallest held-out KL, and
    one history row per epoch (``train_kl``, ``held_out_kl``: mean nats per image); row 0 is the
    start."""
    if not isinstance(model.family, DiagonalGaussian):
        raise ValueError(f"distillation fits a diagonal Gaussian encoder, not a {type(model.family).__name__} one")
    if set(target) != {"loc", "log_scale"} or any(t.shape != (len(x), model.latent_dim) for t in target.values()):
        raise ValueError(f"target needs loc and log_scale of shape [{len(x)}, {model.latent_dim}], "
                         f"not {({k: tuple(v.shape) for k, v in target.items()})}")  # fmt: skip
    student = copy.deepcopy(model)
    student.decoder.requires_grad_(False)
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(x), generator=generator)
    apart = max(1, round(config.held_out * len(x)))
    held, fit = order[:apart], order[apart:]
    if len(fit) < 1:
        raise ValueError(f"{len(x)} pairs leave none to fit after holding out {apart}")

    def mean_kl(rows: Tensor) -> float:
        with torch.no_grad():
            return float(kl_diagonal(encoder_params(student, x[rows]), {k: v[rows] for k, v in target.items()}).mean())

    optimizer = torch.optim.Adam(student.encoder.parameters(), lr=config.lr)
    history = [{"epoch": 0, "train_kl": mean_kl(fit), "held_out_kl": mean_kl(held)}]
    best, best_kl = copy.deepcopy(student.encoder.state_dict()), history[0]["held_out_kl"]
    for epoch in range(1, config.epochs + 1):
        total = 0.0
        for batch in fit[torch.randperm(len(fit), generator=generator)].split(config.batch_size):
            loss = kl_diagonal(encoder_params(student, x[batch]), {k: v[batch] for k, v in target.items()}).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        history.append({"epoch": epoch, "train_kl": total / len(fit), "held_out_kl": mean_kl(held)})
        if history[-1]["held_out_kl"] < best_kl:
            best, best_kl = copy.deepcopy(student.encoder.state_dict()), history[-1]["held_out_kl"]
    student.encoder.load_state_dict(best)
    return student, pd.DataFrame(history)
