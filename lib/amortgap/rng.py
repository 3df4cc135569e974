"""Seeded blocks: run code with the global RNGs seeded, leaving the caller's random state untouched."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch's RNGs (those of ``device`` too, if it is a GPU) for the block, then restore them."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    """Seed numpy's legacy global RNG for the block (seaborn's strip-plot jitter draws from it), then
    restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
