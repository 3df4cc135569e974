"""Many VAEs of one architecture as one computation.

The trainable weights of M models of the same shape are stacked along a new leading member dimension
[M, ...], and each Linear layer becomes one batched matmul over the members. A weight that every
member holds frozen and equal (the reference decoder of the frozen-decoder sweep) stays unstacked,
so that layer runs once, as one matmul, on all members' inputs. The training loss on a stack is
:func:`amortgap.train.negative_elbo`. Each member sees its own batch
x [M, B, D] and its own noise eps [S, M, B, d]; nothing couples two members, so member m's loss,
gradient and Adam step are those it would have alone (up to the last bits of a batched matmul).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .models import VAE, bernoulli_log_likelihood


@dataclass
class Stack:
    """M same-shape VAEs: ``params[name]`` is stacked over the members, or shared by all (and frozen)
    as it is in the models. A stacked Linear weight is stored transposed, [M, in, out], so that the
    batched matmuls and their gradients need no copies; a stacked bias is [M, out]. ``template``
    gives the architecture and family; its own weights are never used."""

    template: VAE
    params: dict[str, Tensor]
    size: int

    @property
    def trainable(self) -> dict[str, Tensor]:
        """The stacked leaves that an optimizer updates, by parameter name."""
        return {name: p for name, p in self.params.items() if p.requires_grad}


def stack_models(models: Sequence[VAE]) -> Stack:
    """Stack ``models`` (same :class:`~amortgap.models.VAEConfig`, same device) into fresh leaf tensors.
    A parameter that is frozen and equal in every member is shared, not copied."""
    if not models:
        raise ValueError("a stack needs at least one model")
    config = models[0].config
    if any(m.config != config for m in models):
        raise ValueError("only models of one architecture stack; group them by VAEConfig first")
    named = [dict(m.named_parameters()) for m in models]
    params = {}
    for name, first in named[0].items():
        members = [n[name] for n in named]
        if not any(p.requires_grad for p in members) and all(torch.equal(first, p) for p in members[1:]):
            params[name] = first.detach()
        else:
            params[name] = stack_tensors([p.detach() for p in members]).requires_grad_(first.requires_grad)
    return Stack(models[0], params, len(models))


def stack_tensors(tensors: Sequence[Tensor]) -> Tensor:
    """Per-member tensors shaped like one parameter (or its Adam moments) in the stacked layout."""
    return torch.stack([t.t() if t.dim() == 2 else t for t in tensors])


def member_tensor(stacked: Tensor, i: int) -> Tensor:
    """Member i's slice of a stacked tensor, shaped like the parameter in its model (a view)."""
    return stacked[i].t() if stacked.dim() == 3 else stacked[i]


@torch.no_grad()
def unstack_into(stack: Stack, models: Sequence[VAE]) -> None:
    """Copy each member's slice of the stacked trainable weights back into its model."""
    for name, p in stack.trainable.items():
        for i, model in enumerate(models):
            model.get_parameter(name).copy_(member_tensor(p, i))


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x [M, N, in] -> [M, N, out]: one batched matmul over the members for a stacked weight
    [M, in, out], or a single matmul over all M*N rows for a shared weight [out, in]."""
    if weight.dim() == 2:
        return nn.functional.linear(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)


def mlp(stack: Stack, prefix: str, x: Tensor) -> Tensor:
    """x [M, N, in] through the template's ``prefix`` MLP (its Linear layers and activations)."""
    for i, layer in enumerate(stack.template.get_submodule(prefix)):
        if isinstance(layer, nn.Linear):
            x = linear(x, stack.params[f"{prefix}.{i}.weight"], stack.params[f"{prefix}.{i}.bias"])
        else:
            x = layer(x)
    return x


def encode(stack: Stack, x: Tensor) -> Distribution:
    """q(z|x) of every member for its own x [M, B, D]: batch shape [M, B], event shape [d]."""
    family, d = stack.template.family, stack.template.latent_dim
    return family.distribution(family.unflatten(mlp(stack, "encoder", x), d))


def log_likelihood(stack: Stack, x: Tensor, z: Tensor) -> Tensor:
    """log p(x|z) for x [M, B, D] and z [S, M, B, d]: [S, M, B]. The decoder sees each member's
    S*B latents as one batch."""
    S, M, B, d = z.shape
    logits = mlp(stack, "decoder", z.transpose(0, 1).reshape(M, S * B, d)).view(M, S, B, -1)
    return bernoulli_log_likelihood(logits, x.unsqueeze(1)).transpose(0, 1)
