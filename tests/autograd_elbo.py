"""The training loss of a stack through autograd, from the textbook definition: the oracle that the
hand-written gradient (:mod:`amortgap.elbo_gradient`) is tested against, and the plain loop that
`make bench` times it beside."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from amortgap import stacked
from amortgap.families import FlowDistribution
from amortgap.models import bernoulli_log_likelihood, standard_normal_log_prob


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x [M, N, in] -> [M, N, out] for a stacked weight [M, in, out] or a shared one [out, in]."""
    if weight.dim() == 2:
        return nn.functional.linear(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)


def mlp(stack: stacked.Stack, prefix: str, x: Tensor) -> Tensor:
    """x [M, N, in] through the template's ``prefix`` MLP (its Linear layers and activations)."""
    for i, layer in enumerate(stack.template.get_submodule(prefix)):
        if isinstance(layer, nn.Linear):
            x = linear(x, stack.params[f"{prefix}.{i}.weight"], stack.params[f"{prefix}.{i}.bias"])
        else:
            x = layer(x)
    return x


def encode(stack: stacked.Stack, x: Tensor) -> Distribution:
    """q(z|x) of every member for its own x [M, B, D]: batch shape [M, B], event shape [d]."""
    family, d = stack.template.family, stack.template.latent_dim
    return family.distribution(family.unflatten(mlp(stack, "encoder", x), d))


def log_likelihood(stack: stacked.Stack, x: Tensor, z: Tensor) -> Tensor:
    """log p(x|z) for x [M, B, D] and z [S, M, B, d]: [S, M, B]."""
    S, M, B, d = z.shape
    logits = mlp(stack, "decoder", z.transpose(0, 1).reshape(M, S * B, d)).view(M, S, B, -1)
    return bernoulli_log_likelihood(logits, x.unsqueeze(1)).transpose(0, 1)


def negative_elbo(stack: stacked.Stack, x: Tensor, eps: Tensor, kl_weight: float = 1.0,
                  inputs: Tensor | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """sum over members of -(E_q[log p(x|z)] - kl_weight KL(q || p(z))) averaged over the member's
    batch, for x [M, B, D] and eps [S, M, B, d], and the per-datapoint ELBO [M, B]. The KL of a
    diagonal Gaussian is analytic; for a flow, log q(z) - log p(z) on the same samples. The encoder
    reads x, or ``inputs`` (a lookup table's one-hot image indices)."""
    q = encode(stack, x if inputs is None else inputs)
    if isinstance(q, FlowDistribution):
        z = q.from_noise(eps)
        kl = (q.log_prob(z) - standard_normal_log_prob(z)).mean(0)
    else:
        z = q.base_dist.loc + eps * q.base_dist.scale
        kl = kl_divergence(q, Independent(Normal(torch.zeros_like(eps[0]), torch.ones_like(eps[0])), 1))
    expected_log_lik = log_likelihood(stack, x, z).mean(0)
    loss = -(expected_log_lik - kl_weight * kl).mean(-1).sum()
    return loss, (expected_log_lik - kl).detach()
