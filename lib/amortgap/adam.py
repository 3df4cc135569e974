"""Adam over one flat buffer: every trainable tensor of a stack is a view of one parameter buffer,
its gradient a view of one gradient buffer, so each step is one call of torch's fused Adam kernel
on three flat tensors (torch.optim.Adam(fused=True), without the optimizer's per-step Python work).
The update is torch's: the same kernel, hyperparameters and state (step, exp_avg, exp_avg_sq)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import stacked

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as the models were always trained


class FlatAdam:
    """Adam on a stack's trainable parameters, which it rebinds to views of one buffer
    (``stack.params[name]`` afterwards is that view: train it in place, then
    :func:`~amortgap.stacked.unstack_into` copies it back to the models). ``grads[name]`` is the
    gradient buffer to fill before each :meth:`step`."""

    def __init__(self, stack: stacked.Stack) -> None:
        names = stack.trainable_names
        self.shapes = {n: stack.params[n].shape for n in names}
        self.params = torch.cat([stack.params[n].detach().reshape(-1) for n in names])
        self.grad, self.exp_avg, self.exp_avg_sq = (torch.zeros_like(self.params) for _ in range(3))
        self.steps = torch.zeros((), dtype=torch.float32, device=self.params.device)
        stack.params.update(self.views(self.params))
        self.grads = self.views(self.grad)

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        """``flat`` (one of the flat buffers) as the stacked tensors it holds, by name."""
        out, offset = {}, 0
        for name, shape in self.shapes.items():
            size = shape.numel()
            out[name] = flat[offset : offset + size].view(shape)
            offset += size
        return out

    def load_state(self, state: dict[str, dict[str, Tensor]]) -> None:
        """Continue from stacked moments {name: {"step", "exp_avg", "exp_avg_sq"}}, one step count."""
        steps = {float(s["step"]) for s in state.values()}
        if len(steps) != 1 or set(state) != set(self.shapes):
            raise ValueError(f"an Adam state needs every trainable tensor {sorted(self.shapes)} at one step count")
        self.steps.fill_(steps.pop())
        for key, flat in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
            for name, view in self.views(flat).items():
                view.copy_(state[name][key])

    def state(self) -> dict[str, dict[str, Tensor]]:
        """The stacked moments by name (views of the flat buffers) and the step count."""
        avg, avg_sq = self.views(self.exp_avg), self.views(self.exp_avg_sq)
        return {n: {"step": self.steps, "exp_avg": avg[n], "exp_avg_sq": avg_sq[n]} for n in self.shapes}

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """One Adam step at learning rate ``lr`` from the gradient in ``grads``."""
        self.steps += 1
        torch._fused_adam_([self.params], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.steps], lr=lr,
                           beta1=BETAS[0], beta2=BETAS[1], weight_decay=0.0, eps=EPS, amsgrad=False, maximize=False)  # fmt: skip
