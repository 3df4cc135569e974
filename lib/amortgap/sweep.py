"""Sweeps of VAEs: models that differ in their encoder, their seed, and whether they train jointly
with their own decoder or against a frozen one (which isolates the encoder's capacity from the
decoder adapting to it). Members that share an architecture and a frozen decoder (or have none)
train as one stack through :func:`amortgap.train.train_stack_cached`, so a sweep resumes after an
interruption and reuses finished members; stacks run in parallel worker processes."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .families import make_family
from .models import VAE, VAEConfig
from .parallel import run_tasks
from .train import TrainConfig, TrainResult, train_stack_cached


def member_config(base: VAEConfig, width: int, depth: int) -> VAEConfig:
    """``base`` with an encoder of ``depth`` hidden layers of ``width`` units."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be positive, not {width} and {depth}")
    return replace(base, encoder_hidden=(width,) * depth)


@dataclass(frozen=True)
class Member:
    """One model of a sweep: its architecture, its seed, and the key (in ``decoders``) of the frozen
    decoder its encoder trains against (None: encoder and decoder train jointly)."""

    config: VAEConfig
    seed: int
    decoder: str | None = None

    @property
    def name(self) -> str:
        encoder = "x".join(map(str, self.config.encoder_hidden))
        return f"{self.decoder or 'joint'}_{self.config.family}_e{encoder}_s{self.seed}"


def train_members(
    members: Sequence[Member],
    train_x: Tensor,
    valid_x: Tensor,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    decoders: Mapping[str, VAE] | None = None,
    progress: bool = False,
    device: torch.device | str = "cpu",
    workers: int = 1,
    max_stack: int | None = None,
) -> list[TrainResult]:
    """Train (or resume, or reload) ``members`` and return their results in the order given. Each is
    initialised from its seed; a member with a ``decoder`` key gets a frozen copy of that model's
    decoder (on that model's device), else it trains jointly on ``device``.

    With ``workers`` > 1 the stacks first train in that many single-thread processes, the most
    expensive first; their checkpoints are then loaded here. ``max_stack`` splits larger stacks, so
    that the work divides more evenly between the workers."""
    decoders = dict(decoders or {})
    missing = {m.decoder for m in members if m.decoder is not None} - set(decoders)
    if missing:
        raise ValueError(f"no decoder given for {sorted(missing)}")
    if max_stack is not None and max_stack < 1:
        raise ValueError(f"max_stack must be positive, not {max_stack}")
    keys = dict.fromkeys((m.config, m.decoder) for m in members)
    whole = [[m for m in members if (m.config, m.decoder) == key] for key in keys]
    size = max_stack or len(members)
    groups = [group[i : i + size] for group in whole for i in range(0, len(group), size)]
    args = (train_x, valid_x, config, checkpoint_dir, decoders, progress, device)
    if workers > 1 and len(groups) > 1:
        costliest_first = sorted(groups, key=lambda g: -len(g) * _model_cost(g[0].config))
        run_tasks(_train_group_in_worker, [(group, *args) for group in costliest_first], workers,
                  desc="training stacks", progress=progress)  # fmt: skip
    results: dict[Member, TrainResult] = {}
    for group in groups:
        results.update(zip(group, _train_group(group, *args)))
    return [results[m] for m in members]


def _model_cost(config: VAEConfig) -> int:
    """Multiply-adds of one image through encoder and decoder: a guide to which stack takes longest."""
    encoder = [config.data_dim, *config.encoder_hidden, make_family(config.family, config.flow_length).flat_size(config.latent_dim)]
    decoder = [config.latent_dim, *config.decoder_hidden, config.data_dim]
    return sum(a * b for sizes in (encoder, decoder) for a, b in zip(sizes[:-1], sizes[1:]))


def _train_group(group: list[Member], train_x: Tensor, valid_x: Tensor, config: TrainConfig,
                 checkpoint_dir: str | os.PathLike, decoders: Mapping[str, VAE], progress: bool,
                 device: torch.device | str) -> list[TrainResult]:  # fmt: skip
    """Train (or reload) the members of one architecture and decoder as one stack."""
    models = [_fresh(member, decoders, device) for member in group]
    configs = [replace(config, seed=m.seed) for m in group]
    return train_stack_cached(models, train_x, valid_x, configs, checkpoint_dir, [m.name for m in group], progress)


def _train_group_in_worker(*args) -> None:
    """:func:`_train_group` in a worker process: the checkpoints are the result."""
    _train_group(*args)


def _fresh(member: Member, decoders: Mapping[str, VAE], device: torch.device | str) -> VAE:
    """A member initialised from its seed: a whole VAE, or an encoder before a frozen decoder."""
    torch.manual_seed(member.seed)
    if member.decoder is None:
        return VAE(member.config).to(device)
    return decoders[member.decoder].with_frozen_decoder(member.config)
