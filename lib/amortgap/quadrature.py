"""Exact answers for a model with a 2-dimensional latent space, by quadrature on real images.

With d = 2 the posterior can be tabulated: log p(x) = log sum_g p(x, z_g) dA over a fine grid of z,
and the posterior's mean and covariance are weighted sums over the same grid. The grid is placed in
passes, per image: a wide first pass finds where the posterior lies, and each next pass spans the
box of the previous pass's cells whose log p(x, z) is within ``drop`` nats of its largest (padded
by two cells), so that a narrow posterior is resolved as finely as a broad one, and every mode of
a multimodal one stays inside. Where the box barely shrinks (a broad posterior, or modes far
apart) the next pass has twice the points per axis. Passes go on until two in a row agree on
log p(x) within ``tolerance``; their difference is reported as the quadrature error.

The best diagonal Gaussian q* maximises L[q] = E_q[log p(x, z)] + H[q], and E_q is computed by
Gauss-Hermite quadrature on q's own nodes, so q*'s ELBO is exact to quadrature precision too. These
exact values are the referee for every Monte Carlo estimator (IWAE, AIS, the q* search) on real
images, which no closed-form linear model can provide.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .bounds import MAX_PAIRS
from .models import LatentVariableModel

LOG_2PI = math.log(2 * math.pi)
PAD_CELLS = 2  # cells added on every side of a pass's box


@dataclass
class ExactPosterior:
    """Per image [B]: log p(x), the posterior mean [B, 2] and covariance [B, 2, 2], the change of
    log p(x) between the last two grid passes (an estimate of the quadrature error), and the
    passes and the last pass's points per axis that it took (ints [B])."""

    log_px: Tensor
    mean: Tensor
    covariance: Tensor
    quadrature_error: Tensor
    passes: Tensor
    points: Tensor


def _log_joint_on(model: LatentVariableModel, x: Tensor, z: Tensor, max_pairs: int) -> Tensor:
    """log p(x_b, z_bg) for grids z [B, G, 2]: [B, G], the decoder run on at most ``max_pairs``
    (point, image) pairs at a time."""
    chunk = max(1, max_pairs // x.shape[0])
    parts = [model.log_joint(x, z[:, i : i + chunk].transpose(0, 1)).T for i in range(0, z.shape[1], chunk)]
    return torch.cat(parts, 1)


def _grid_pass(model: LatentVariableModel, x: Tensor, lo: Tensor, hi: Tensor, points: int, drop: float,
               max_pairs: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """One pass on a ``points`` x ``points`` grid over the box [lo, hi] (each [B, 2]) of every image:
    log p(x) [B], the posterior's mean [B, 2] and covariance [B, 2, 2], and the next pass's box
    (lo, hi), the padded bounding box of the cells within ``drop`` nats of the largest."""
    unit = torch.linspace(0, 1, points, dtype=x.dtype, device=x.device)
    grid = torch.stack(torch.meshgrid(unit, unit, indexing="ij"), -1).reshape(-1, 2)  # [G, 2] on [0, 1]^2
    width = hi - lo  # [B, 2]
    z = lo[:, None, :] + width[:, None, :] * grid  # [B, G, 2]
    cell = width / (points - 1)  # [B, 2]
    log_joint = _log_joint_on(model, x, z, max_pairs)  # [B, G]
    log_px = torch.logsumexp(log_joint, 1) + cell.log().sum(1)
    weights = torch.softmax(log_joint, 1)
    mean = (weights[:, :, None] * z).sum(1)
    centred = z - mean[:, None, :]
    covariance = torch.einsum("bg,bgi,bgj->bij", weights, centred, centred)
    near = (log_joint >= log_joint.max(1, keepdim=True).values - drop)[:, :, None]  # [B, G, 1]
    next_lo = torch.where(near, z, torch.inf).amin(1) - PAD_CELLS * cell
    next_hi = torch.where(near, z, -torch.inf).amax(1) + PAD_CELLS * cell
    return log_px, mean, covariance, torch.maximum(next_lo, lo), torch.minimum(next_hi, hi)


@torch.no_grad()
def exact_posterior(
    model: LatentVariableModel,
    x: Tensor,
    points: int = 201,
    limit: float = 8.0,
    drop: float = 30.0,
    tolerance: float = 1e-4,
    min_passes: int = 3,
    max_passes: int = 10,
    max_points: int = 1601,
    max_pairs: int = MAX_PAIRS * 64,
) -> ExactPosterior:
    """log p(x) and the posterior's first two moments for each image of x [B, D] by quadrature: a
    first pass on a ``points`` x ``points`` grid over [-limit, limit]^2, then passes over the box of
    cells within ``drop`` nats of the largest log p(x, z) (twice the points per axis, up to
    ``max_points``, where the box keeps more than half its width), until two passes agree within
    ``tolerance`` nats (at least ``min_passes``, at most ``max_passes``). Images that converge stop;
    the others go on, in groups of equal grids."""
    if model.latent_dim != 2:
        raise ValueError(f"quadrature needs a 2-dimensional latent space, not {model.latent_dim}")
    if min_passes < 2 or max_passes < min_passes or points < 3:
        raise ValueError("need 2 <= min_passes <= max_passes (two passes give the error estimate) and 3 points per axis")
    B = x.shape[0]
    lo, hi = x.new_full((B, 2), -limit), x.new_full((B, 2), limit)
    n = torch.full((B,), points, dtype=torch.long, device=x.device)
    log_px, error = x.new_full((B,), math.nan), x.new_full((B,), math.inf)
    mean, covariance = x.new_zeros(B, 2), x.new_zeros(B, 2, 2)
    passes, last = torch.zeros(B, dtype=torch.long, device=x.device), n.clone()
    for k in range(max_passes):
        active = (passes < min_passes) | (error > tolerance)
        if not active.any():
            break
        for size in n[active].unique().tolist():
            rows = (active & (n == size)).nonzero().squeeze(1)
            new, mean[rows], covariance[rows], next_lo, next_hi = _grid_pass(model, x[rows], lo[rows], hi[rows], size,
                                                                             drop, max_pairs)  # fmt: skip
            if k > 0:
                error[rows] = (new - log_px[rows]).abs()
            log_px[rows], last[rows] = new, size
            barely_shrinks = ((next_hi - next_lo) > 0.5 * (hi[rows] - lo[rows])).any(1)
            n[rows] = torch.where(barely_shrinks, (2 * size - 1) if 2 * size - 1 <= max_points else size, size)
            lo[rows], hi[rows] = next_lo, next_hi
            passes[rows] += 1
    return ExactPosterior(log_px, mean, covariance, error, passes, last)


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


@dataclass
class ExactQStar:
    """The best diagonal Gaussian of each image [B]: its ``loc`` and ``log_scale`` [B, 2] and L[q*]
    ``elbo``; which start it came from (``start``, an index into the starts); and its checks: the
    change of L[q*] at twice the Gauss-Hermite nodes (``node_error``), the norm of L's gradient at
    q* (``gradient_norm``), and whether both are small and L[q*] <= log p(x) (``checked``)."""

    loc: Tensor
    log_scale: Tensor
    elbo: Tensor
    start: Tensor
    node_error: Tensor
    gradient_norm: Tensor
    checked: Tensor


def _lbfgs(model: LatentVariableModel, x: Tensor, loc: Tensor, log_scale: Tensor, nodes: int, iterations: int,
           rounds: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    """L-BFGS on the sum of the images' Gauss-Hermite ELBOs (the images are independent, so the sum's
    optimum is each image's), for up to ``rounds`` rounds of ``iterations``; after the first, only
    the images whose ELBO still moved by more than 1e-9 nats go on, so that none stops where only
    the sum converged."""
    loc, log_scale = loc.detach().clone(), log_scale.detach().clone()
    with torch.no_grad():
        elbo = gauss_hermite_elbo(model, x, loc, log_scale, nodes)
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _ in range(rounds):
        rows = active.nonzero().squeeze(1)
        if len(rows) == 0:
            break
        m, s = loc[rows].clone().requires_grad_(), log_scale[rows].clone().requires_grad_()
        optimizer = torch.optim.LBFGS([m, s], lr=1, max_iter=iterations, tolerance_grad=1e-9,
                                      tolerance_change=1e-12, line_search_fn="strong_wolfe")  # fmt: skip

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = -gauss_hermite_elbo(model, x[rows], m, s, nodes).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        with torch.no_grad():
            now = gauss_hermite_elbo(model, x[rows], m, s, nodes)
        better = now > elbo[rows]  # a line search never loses ground; float noise can
        loc[rows[better]], log_scale[rows[better]] = m.detach()[better], s.detach()[better]
        active[rows] = (now - elbo[rows]).abs() > 1e-9
        elbo[rows[better]] = now[better]
    return loc, log_scale


def exact_best_diagonal_gaussian(
    model: LatentVariableModel, x: Tensor, posterior: ExactPosterior, starts: tuple[tuple[Tensor, Tensor], ...] = (),
    nodes: int = 16, iterations: int = 100, rounds: int = 10, node_tolerance: float = 1e-3,
    gradient_tolerance: float = 1e-3,
) -> ExactQStar:
    """q* of the diagonal family for each image of x [B, D], by L-BFGS on the Gauss-Hermite ELBO
    (``nodes`` per axis) from several starts, keeping each image's best: the exact posterior's mean
    with its conditional scales (the mean-field optimum for a Gaussian posterior), and each of
    ``starts`` ((loc, log_scale), each [B, 2]: say the encoder's q and a searched q*, so that the
    exact q* is never beaten by a search that found a better local optimum). The starts run in x's
    dtype; the best is then polished and checked in float64 (on a float64 copy of the model, where
    the gradient at the optimum is not float noise): L[q*] at twice the nodes within
    ``node_tolerance`` nats, the gradient's norm below ``gradient_tolerance``, and L[q*] <= log p(x)
    up to the quadrature's own error."""
    precision = torch.linalg.inv(posterior.covariance.to(x.dtype))
    candidates = [(posterior.mean.to(x.dtype), -0.5 * torch.diagonal(precision, dim1=1, dim2=2).log()),
                  *((loc.to(x.dtype), log_scale.to(x.dtype)) for loc, log_scale in starts)]
    found = [_lbfgs(model, x, loc, log_scale, nodes, iterations, rounds) for loc, log_scale in candidates]
    exact = model if x.dtype == torch.float64 else copy.deepcopy(model).double()
    x = x.double()
    with torch.no_grad():
        elbos = torch.stack([gauss_hermite_elbo(exact, x, loc.double(), log_scale.double(), nodes) for loc, log_scale in found])
    # the first start within 1e-3 nats of the best: starts that reach one optimum differ by float32 noise there
    best = (elbos >= elbos.amax(0) - 1e-3).to(torch.int8).argmax(0)
    rows = torch.arange(len(x), device=x.device)
    loc, log_scale = _lbfgs(exact, x, torch.stack([f[0] for f in found])[best, rows].double(),
                            torch.stack([f[1] for f in found])[best, rows].double(), nodes, iterations, rounds)  # fmt: skip
    with torch.enable_grad():
        at = (loc.clone().requires_grad_(), log_scale.clone().requires_grad_())
        elbo = gauss_hermite_elbo(exact, x, *at, nodes)
        gradient = torch.cat(torch.autograd.grad(elbo.sum(), at), 1)
    with torch.no_grad():
        node_error = (gauss_hermite_elbo(exact, x, loc, log_scale, 2 * nodes) - elbo).abs()
    gradient_norm = gradient.norm(dim=1)
    checked = ((node_error < node_tolerance) & (gradient_norm < gradient_tolerance)
               & (elbo <= (posterior.log_px + posterior.quadrature_error).double() + node_tolerance))  # fmt: skip
    return ExactQStar(loc, log_scale, elbo.detach(), best, node_error, gradient_norm, checked)
