"""The one HMC kernel (Neal 2011), batched over chains and datapoints, and its step-size adaptation.

AIS (:mod:`amortgap.ais`) moves its chains with this kernel on every intermediate distribution
f_beta(z) = q(z)^(1 - beta) p(x, z)^beta; the MCMC baseline (:mod:`amortgap.mcmc`) runs it at
beta = 1, on the posterior. Both adapt each datapoint's step size the same way
(:func:`adapt_step_size`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from .models import LatentVariableModel


def check_adaptation(who: str, step_size: float, target_acceptance: float, adapt_factor: float) -> None:
    """Refuse an initial step size, target acceptance rate or adaptation factor that cannot work."""
    if step_size <= 0 or adapt_factor < 1 or not 0 < target_acceptance < 1:
        raise ValueError(f"{who} needs step_size > 0, adapt_factor >= 1, 0 < target_acceptance < 1")


def adapt_step_size(step: Tensor, rate: Tensor, target_acceptance: float, adapt_factor: float) -> Tensor:
    """Each datapoint's step size [B] times ``adapt_factor`` where its chains' acceptance ``rate`` [B]
    beat ``target_acceptance``, divided by it elsewhere."""
    return step * torch.where(rate > target_acceptance, adapt_factor, 1 / adapt_factor)


class ChainState(NamedTuple):
    """Chain states z [C, B, d] with log q(z), log p(x, z) [C, B] and their gradients [C, B, d], kept
    apart so that every intermediate target (1 - beta) log q + beta log p reuses them."""

    z: Tensor
    log_q: Tensor
    log_p: Tensor
    grad_q: Tensor
    grad_p: Tensor

    def log_target(self, beta: float) -> Tensor:
        return (1 - beta) * self.log_q + beta * self.log_p

    def grad_log_target(self, beta: float) -> Tensor:
        return (1 - beta) * self.grad_q + beta * self.grad_p


def chain_state(model: LatentVariableModel, x: Tensor, init: Distribution, z: Tensor) -> ChainState:
    """The state of chains at z [C, B, d]: log q(z) (``init``'s density), log p(x, z) and both gradients."""
    with torch.enable_grad():
        z = z.detach().requires_grad_()
        log_q, log_p = init.log_prob(z), model.log_joint(x, z)
        (grad_q,) = torch.autograd.grad(log_q.sum(), z)
        (grad_p,) = torch.autograd.grad(log_p.sum(), z)
    return ChainState(z.detach(), log_q.detach(), log_p.detach(), grad_q, grad_p)


def hmc_transition(
    model: LatentVariableModel, x: Tensor, init: Distribution, point: ChainState, beta: float, step: Tensor,
    leapfrog_steps: int,
) -> tuple[ChainState, Tensor]:
    """One HMC transition leaving f_beta invariant (beta = 1: the posterior); step [B] is each
    datapoint's step size. Returns
    the new point and the acceptance indicator [C, B]."""
    eps = step[None, :, None]
    momentum = torch.randn_like(point.z)
    h0 = -point.log_target(beta) + 0.5 * momentum.pow(2).sum(-1)
    proposal, m = point, momentum + 0.5 * eps * point.grad_log_target(beta)
    for leap in range(leapfrog_steps):
        proposal = chain_state(model, x, init, proposal.z + eps * m)
        m = m + (0.5 if leap == leapfrog_steps - 1 else 1.0) * eps * proposal.grad_log_target(beta)
    h1 = -proposal.log_target(beta) + 0.5 * m.pow(2).sum(-1)
    accept = (torch.rand_like(h0).log() < h0 - h1) & torch.isfinite(h1)
    keep = accept[..., None]
    chosen = ChainState(
        torch.where(keep, proposal.z, point.z),
        torch.where(accept, proposal.log_q, point.log_q),
        torch.where(accept, proposal.log_p, point.log_p),
        torch.where(keep, proposal.grad_q, point.grad_q),
        torch.where(keep, proposal.grad_p, point.grad_p),
    )
    return chosen, accept
