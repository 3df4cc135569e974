"""Variational families: how per-datapoint parameters become a distribution q(z).

A family maps a dict of parameter tensors, each with leading batch dimension [B, ...], to a
``torch.distributions.Distribution`` with batch shape [B] and event shape [d]. Per-datapoint
optimisation (:mod:`amortgap.local`) works on such dicts, row by row, so any family that follows
this protocol can be optimised datapoint by datapoint.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

Params = dict[str, Tensor]


class Family(Protocol):
    """A variational family with per-datapoint parameters."""

    def params_from(self, q: Distribution) -> Params:
        """Parameters [B, ...] that reproduce the given q (e.g. an encoder's output)."""

    def prior_params(self, batch: int, latent_dim: int, like: Tensor) -> Params:
        """Parameters [B, ...] of the standard normal prior, on ``like``'s device and dtype."""

    def distribution(self, params: Params) -> Distribution:
        """The distribution, batch shape [B], event shape [d]."""


class DiagonalGaussian:
    """q(z) = N(loc, diag(exp(log_scale))^2): the fully factorised Gaussian (FFG)."""

    def params_from(self, q: Distribution) -> Params:
        return {"loc": q.mean.detach().clone(), "log_scale": q.stddev.detach().log()}

    def prior_params(self, batch: int, latent_dim: int, like: Tensor) -> Params:
        zeros = like.new_zeros(batch, latent_dim)
        return {"loc": zeros, "log_scale": zeros.clone()}

    def distribution(self, params: Params) -> Distribution:
        return diagonal_gaussian(params["loc"], params["log_scale"])


def diagonal_gaussian(loc: Tensor, log_scale: Tensor) -> Distribution:
    """N(loc, diag(exp(2 log_scale))) with batch shape loc.shape[:-1] and event shape [d]."""
    return Independent(Normal(loc, torch.exp(log_scale)), 1)
