"""Exact answers for a model with a 2-dimensional latent space, by quadrature on real images.

With d = 2 the posterior can be tabulated: log p(x) = log sum_g p(x, z_g) dA over a fine grid of z,
and the posterior's mean and covariance are weighted sums over the same grid. The grid is placed in
passes: a wide one finds where the posterior lies, and each next one spans +-``span`` posterior
standard deviations around its mean, so a narrow posterior is resolved as well as a broad one.
The change of log p(x) between the last two passes is reported as the quadrature error.

The best diagonal Gaussian q* maximises L[q] = E_q[log p(x, z)] + H[q], and E_q is computed by
Gauss-Hermite quadrature on q's own nodes, so q*'s ELBO is exact to quadrature precision too. These
exact values are the referee for every Monte Carlo estimator (IWAE, AIS, the q* search) on real
images, which no closed-form linear model can provide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .models import LatentVariableModel

LOG_2PI = math.log(2 * math.pi)


@dataclass
class ExactPosterior:
    """Per image [B]: log p(x), the posterior mean [B, 2] and covariance [B, 2, 2], and the change of
    log p(x) between the last two grid passes (an estimate of the quadrature error)."""

    log_px: Tensor
    mean: Tensor
    covariance: Tensor
    quadrature_error: Tensor


def _log_joint_on(model: LatentVariableModel, x: Tensor, z: Tensor, chunk: int) -> Tensor:
    """log p(x_b, z_bg) for grids z [B, G, 2]: [B, G], the decoder run on ``chunk`` points at a time."""
    parts = [model.log_joint(x, z[:, i : i + chunk].transpose(0, 1)).T for i in range(0, z.shape[1], chunk)]
    return torch.cat(parts, 1)


@torch.no_grad()
def exact_posterior(
    model: LatentVariableModel,
    x: Tensor,
    points: int = 201,
    span: float = 8.0,
    passes: int = 3,
    limit: float = 8.0,
    chunk: int = 4096,
) -> ExactPosterior:
    """log p(x) and the posterior's first two moments for each image of x [B, D] by quadrature on a
    ``points`` x ``points`` grid per image (``passes`` passes: the first over [-limit, limit]^2, the
    others +-``span`` posterior standard deviations around the previous pass's mean)."""
    if model.latent_dim != 2:
        raise ValueError(f"quadrature needs a 2-dimensional latent space, not {model.latent_dim}")
    if passes < 2 or points < 3:
        raise ValueError("need at least 2 passes (for the error estimate) and 3 points per axis")
    B = x.shape[0]
    unit = torch.linspace(-1, 1, points, dtype=x.dtype, device=x.device)
    center = x.new_zeros(B, 2)
    half = x.new_full((B, 2), limit)
    log_px = previous = None
    for _ in range(passes):
        axes = center[:, :, None] + half[:, :, None] * unit  # [B, 2, P]
        z = torch.stack(torch.meshgrid(unit, unit, indexing="ij"), -1).reshape(-1, 2)  # [G, 2] on [-1, 1]^2
        z = center[:, None, :] + half[:, None, :] * z  # [B, G, 2]
        log_cell = torch.log(axes[:, 0, 1] - axes[:, 0, 0]) + torch.log(axes[:, 1, 1] - axes[:, 1, 0])
        log_joint = _log_joint_on(model, x, z, chunk)  # [B, G]
        previous, log_px = log_px, torch.logsumexp(log_joint, 1) + log_cell
        weights = torch.softmax(log_joint, 1)  # [B, G]
        mean = (weights[:, :, None] * z).sum(1)
        centred = z - mean[:, None, :]
        covariance = torch.einsum("bg,bgi,bgj->bij", weights, centred, centred)
        sd = torch.diagonal(covariance, dim1=1, dim2=2).sqrt()
        center, half = mean, (span * sd).clamp_min(1e-4)
    return ExactPosterior(log_px, mean, covariance, (log_px - previous).abs())


def gauss_hermite_elbo(
    model: LatentVariableModel, x: Tensor, loc: Tensor, log_scale: Tensor, nodes: int = 32
) -> Tensor:
    """L[q] for q = N(loc, diag(exp(log_scale))^2), loc and log_scale [B, 2], by tensor-product
    Gauss-Hermite quadrature with ``nodes`` nodes per axis (differentiable in loc and log_scale): [B]."""
    t, w = np.polynomial.hermite.hermgauss(nodes)
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    log_w = torch.as_tensor(np.log(w / math.sqrt(math.pi)), dtype=x.dtype, device=x.device)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)  # [G, 2]
    weights = (log_w[:, None] + log_w[None, :]).reshape(-1).exp()  # [G], sums to 1
    z = loc[None] + math.sqrt(2) * log_scale.exp()[None] * grid[:, None, :]  # [G, B, 2]
    expected_log_joint = (weights[:, None] * model.log_joint(x, z)).sum(0)
    entropy = log_scale.sum(-1) + 1 + LOG_2PI  # of a 2-d diagonal Gaussian
    return expected_log_joint + entropy


def exact_best_diagonal_gaussian(
    model: LatentVariableModel, x: Tensor, posterior: ExactPosterior, nodes: int = 32, iterations: int = 100
) -> tuple[Tensor, Tensor, Tensor]:
    """q* of the diagonal family for each image: (loc [B, 2], log_scale [B, 2], L[q*] [B]), by
    L-BFGS on the Gauss-Hermite ELBO from the exact posterior's mean and conditional scales
    (the mean-field optimum for a Gaussian posterior, a close start otherwise). The images are
    independent, so maximising the sum maximises each."""
    precision = torch.linalg.inv(posterior.covariance)
    loc = posterior.mean.clone().requires_grad_()
    log_scale = (-0.5 * torch.diagonal(precision, dim1=1, dim2=2).log()).clone().requires_grad_()
    optimizer = torch.optim.LBFGS([loc, log_scale], lr=1, max_iter=iterations, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = -gauss_hermite_elbo(model, x, loc, log_scale, nodes).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        elbo = gauss_hermite_elbo(model, x, loc, log_scale, nodes)
    return loc.detach(), log_scale.detach(), elbo

