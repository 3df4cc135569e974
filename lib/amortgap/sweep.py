"""Encoder sweeps: VAEs that differ only in their encoder's hidden layers, trained either jointly with
their own decoder or against one frozen decoder (which isolates the encoder's capacity from the
decoder adapting to it). Members of one shape (the seeds of one encoder) train as one stack through
:func:`amortgap.train.train_stack_cached`, so a sweep resumes after an interruption and reuses
finished members."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

import torch
from torch import Tensor

from .models import VAE, VAEConfig
from .train import TrainConfig, TrainResult, train_stack_cached


def member_config(base: VAEConfig, width: int, depth: int) -> VAEConfig:
    """``base`` with an encoder of ``depth`` hidden layers of ``width`` units."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be positive, not {width} and {depth}")
    return replace(base, encoder_hidden=(width,) * depth)


Member = tuple[int, int, int]
"""(width, depth, seed) of one sweep member."""


def train_members(
    base: VAEConfig,
    members: Sequence[Member],
    train_x: Tensor,
    valid_x: Tensor,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    frozen_decoder: VAE | None = None,
    progress: bool = False,
    device: torch.device | str = "cpu",
    workers: int = 1,
) -> list[TrainResult]:
    """Train (or resume, or reload) ``members``, one stack per encoder shape, and return their results
    in the order given. Each encoder is initialised from its seed; with ``frozen_decoder`` each
    decoder is a frozen copy of that model's (on that model's device, and run once for the whole
    stack), else it is trained jointly on ``device``.

    With ``workers`` > 1 the stacks train in that many processes of one thread each, the widest
    first (on 2 cores, two 1-thread processes train 1.6x faster than one 2-thread process; `make
    bench`); their checkpoints are then loaded here."""
    groups = [[m for m in members if m[:2] == shape] for shape in dict.fromkeys((w, d) for w, d, _ in members)]
    args = (base, train_x, valid_x, config, checkpoint_dir, frozen_decoder, progress, device)
    if workers > 1 and len(groups) > 1:
        widest_first = sorted(groups, key=lambda g: -g[0][0] * g[0][1])
        context = torch.multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(groups)), initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for _ in pool.imap_unordered(_train_group_star, [(group, *args) for group in widest_first]):
                pass
    results: dict[Member, TrainResult] = {}
    for group in groups:
        results.update(zip(group, _train_group(group, *args)))
    return [results[m] for m in members]


def _train_group(group: list[Member], base: VAEConfig, train_x: Tensor, valid_x: Tensor, config: TrainConfig,
                 checkpoint_dir: str | os.PathLike, frozen_decoder: VAE | None, progress: bool,
                 device: torch.device | str) -> list[TrainResult]:  # fmt: skip
    """Train (or reload) the members of one encoder shape as one stack."""
    models = [_fresh_member(base, *member, frozen_decoder, device) for member in group]
    kind = "joint" if frozen_decoder is None else "frozen"
    names = [f"{kind}_w{w}_d{d}_s{s}" for w, d, s in group]
    configs = [replace(config, seed=s) for _, _, s in group]
    return train_stack_cached(models, train_x, valid_x, configs, checkpoint_dir, names, progress)


def _train_group_star(args: tuple) -> None:
    """:func:`_train_group` in a worker process: the checkpoints are the result."""
    _train_group(*args)


def train_member(base: VAEConfig, width: int, depth: int, seed: int, train_x: Tensor, valid_x: Tensor,
                 config: TrainConfig, checkpoint_dir: str | os.PathLike, frozen_decoder: VAE | None = None,
                 progress: bool = False, device: torch.device | str = "cpu") -> TrainResult:  # fmt: skip
    """:func:`train_members` of the one member (width, depth, seed)."""
    return train_members(base, [(width, depth, seed)], train_x, valid_x, config, checkpoint_dir, frozen_decoder,
                         progress, device)[0]  # fmt: skip


def _fresh_member(base: VAEConfig, width: int, depth: int, seed: int, frozen_decoder: VAE | None,
                  device: torch.device | str) -> VAE:  # fmt: skip
    """A member initialised from ``seed``: a whole VAE, or an encoder before a frozen decoder."""
    model_config = member_config(base, width, depth)
    torch.manual_seed(seed)
    if frozen_decoder is None:
        return VAE(model_config).to(device)
    return frozen_decoder.with_frozen_decoder(model_config)
