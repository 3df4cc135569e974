"""Hamiltonian Monte Carlo on each image's posterior: the classical, unamortized baseline.

An encoder answers a question about the posterior, such as its mean E[z|x] or the expected
reconstruction E[log p(x|z)|x], in one forward pass, and gets it slightly wrong. MCMC gets it right
in the limit, and each transition costs ``leapfrog_steps`` gradient evaluations of log p(x, z). The
chains here run the HMC kernel of :mod:`amortgap.hmc` (AIS's own transitions) at beta = 1, started
from the prior (or, for a reference run, from q*); the step size adapts per image during burn-in
only, so the kept samples come from a fixed, valid kernel. Chains started from the prior can stay
stuck far from the posterior's mass: each chain's own mean is kept, so that a run can be checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution

from .config import FromSection
from .hmc import adapt_step_size, chain_state, check_adaptation, hmc_transition
from .families import diagonal_gaussian
from .models import LatentVariableModel
from .progress import bar


@dataclass(frozen=True)
class HMCConfig(FromSection):
    """``chains`` chains per image, ``burn_in`` adapted transitions, then kept ones."""

    chains: int = 4
    burn_in: int = 100
    leapfrog_steps: int = 10
    step_size: float = 0.05
    target_acceptance: float = 0.65
    adapt_factor: float = 1.05

    def __post_init__(self) -> None:
        if min(self.chains, self.leapfrog_steps) < 1 or self.burn_in < 0:
            raise ValueError("chains and leapfrog_steps must be positive and burn_in >= 0")
        check_adaptation("HMC", self.step_size, self.target_acceptance, self.adapt_factor)


@dataclass
class HMCRun:
    """Running posterior summaries after each recorded number of kept transitions ``kept`` [R]:
    the mean of z [R, B, d] and of log p(x|z) [R, B], averaged over chains and kept transitions,
    and each chain's own mean of log p(x|z) [R, C, B] (chains that disagree have not mixed); the
    gradient evaluations per image spent to get there, burn-in included [R]; the wall seconds per
    image at each record [R]; and the mean acceptance rate of the kept transitions [B]."""

    kept: list[int]
    mean_z: Tensor
    mean_log_likelihood: Tensor
    chain_log_likelihood: Tensor
    evaluations: list[int]
    seconds: list[float]
    acceptance: Tensor


@torch.no_grad()
def hmc(
    model: LatentVariableModel,
    x: Tensor,
    record: Sequence[int],
    config: HMCConfig = HMCConfig(),
    progress: bool = False,
    init: Distribution | None = None,
) -> HMCRun:
    """Run HMC chains on the posterior of each image of x [B, D] for max(record) kept transitions,
    and record the running summaries after each count in ``record``. The chains start from
    ``init`` (batch [B], event [d]; default the prior): from the prior, as a method without an
    encoder; from q*, as a reference that need not find the posterior first."""
    record = sorted({int(r) for r in record})
    if not record or record[0] < 1:
        raise ValueError(f"record must hold positive transition counts, not {record}")
    B, C = x.shape[0], config.chains
    zeros = x.new_zeros(B, model.latent_dim)
    prior = diagonal_gaussian(zeros, zeros)
    start = time.perf_counter()
    state = chain_state(model, x, prior, (prior if init is None else init).sample((C,)).detach())
    step = torch.full((B,), config.step_size, dtype=x.dtype, device=x.device)
    sum_z, sum_ll, accepted = torch.zeros_like(zeros), x.new_zeros(C, B), x.new_zeros(B)
    means_z, chains_ll, seconds = [], [], []
    total = config.burn_in + record[-1]
    for t in bar(range(1, total + 1), desc="HMC transitions", show=progress, leave=False):
        state, accept = hmc_transition(model, x, prior, state, 1.0, step, config.leapfrog_steps)
        rate = accept.to(x.dtype).mean(0)
        if t <= config.burn_in:
            step = adapt_step_size(step, rate, config.target_acceptance, config.adapt_factor)
            continue
        kept = t - config.burn_in
        sum_z += state.z.sum(0)
        sum_ll += state.log_p - model.log_prior(state.z)
        accepted += rate
        if kept in record:
            means_z.append(sum_z / (kept * C))
            chains_ll.append(sum_ll / kept)
            seconds.append((time.perf_counter() - start) / B)
    evaluations = [C * (1 + (config.burn_in + r) * config.leapfrog_steps) for r in record]
    chains_ll = torch.stack(chains_ll)
    return HMCRun(record, torch.stack(means_z), chains_ll.mean(1), chains_ll, evaluations, seconds, accepted / record[-1])
