"""Many VAEs of one architecture as one computation.

The trainable weights of M models of the same shape are stacked along a new leading member dimension
[M, ...], and each Linear layer becomes one batched matmul over the members. A weight that every
member holds frozen and equal (the reference decoder of the frozen-decoder sweep) stays unstacked,
so that layer runs once, as one matmul, on all members' inputs. The training loss on a stack and its
gradient are :class:`amortgap.elbo_gradient.NegativeElbo`'s. Each member sees its own batch
x [M, B, D] and its own noise eps [S, M, B, d]; nothing couples two members, so member m's loss,
gradient and Adam step are those it would have alone (up to the last bits of a batched matmul).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .models import VAE


@dataclass
class Stack:
    """M same-shape VAEs: ``params[name]`` is stacked over the members, or shared by all (and frozen)
    as it is in the models. A stacked Linear weight is stored transposed, [M, in, out], so that the
    batched matmuls and their gradients need no copies; a stacked bias is [M, out]. ``template``
    gives the architecture and family; its own weights are never used."""

    template: VAE
    params: dict[str, Tensor]
    size: int
    trainable_names: tuple[str, ...]

    @property
    def trainable(self) -> dict[str, Tensor]:
        """The stacked tensors that an optimizer updates, by parameter name."""
        return {name: self.params[name] for name in self.trainable_names}


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
    return Stack(models[0], params, len(models), tuple(n for n, p in params.items() if p.requires_grad))


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
