"""Encoder sweeps: VAEs that differ only in their encoder's hidden layers, trained either jointly with
their own decoder or against one frozen decoder (which isolates the encoder's capacity from the
decoder adapting to it). Every member is trained through :func:`amortgap.train.train_cached`, so a
sweep resumes after an interruption and reuses finished members."""

from __future__ import annotations

import os
from dataclasses import replace

import torch
from torch import Tensor

from .models import VAE, VAEConfig
from .train import TrainConfig, TrainResult, train_cached


def member_config(base: VAEConfig, width: int, depth: int) -> VAEConfig:
    """``base`` with an encoder of ``depth`` hidden layers of ``width`` units."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be positive, not {width} and {depth}")
    return replace(base, encoder_hidden=(width,) * depth)


def train_member(
    base: VAEConfig,
    width: int,
    depth: int,
    seed: int,
    train_x: Tensor,
    valid_x: Tensor,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    frozen_decoder: VAE | None = None,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> TrainResult:
    """Train (or resume, or reload) one member: the encoder is initialised from ``seed``; with
    ``frozen_decoder`` its decoder is a frozen copy of that model's (on that model's device), else
    it is trained jointly on ``device``."""
    model_config = member_config(base, width, depth)
    torch.manual_seed(seed)
    if frozen_decoder is None:
        model, kind = VAE(model_config).to(device), "joint"
    else:
        model, kind = frozen_decoder.with_frozen_decoder(model_config), "frozen"
    name = f"{kind}_w{width}_d{depth}_s{seed}"
    return train_cached(model, train_x, valid_x, replace(config, seed=seed), checkpoint_dir, name, progress)
