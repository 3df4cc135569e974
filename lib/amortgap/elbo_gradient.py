"""The training loss and its gradient, written by hand: the one training step of every model.

Autograd records every operation of the loss and replays it backwards, one small kernel at a time;
for the paper's MLP VAEs that bookkeeping costs as much as the matrix products themselves (`make
bench`). :class:`NegativeElbo` computes the same loss as the textbook definition,

    loss = sum_m -(1/B) sum_b [ (1/S) sum_s log p(x_mb | z_smb) - kl_weight KL_mb ],

for a stack of M models (:mod:`amortgap.stacked`), batches x [M, B, D] and noise eps [S, M, B, d],
and writes its gradient into each trainable parameter's ``.grad`` with no graph: every Linear layer's
forward product and the two products of its backward pass, the activation's derivative taken from
its output in one kernel, the Bernoulli likelihood's gradient as sigmoid(logits) - x, the KL's in
closed form (diagonal Gaussian) or through the planar or Sylvester layers by hand. A frozen decoder (shared by
the stack, ``requires_grad=False``) gets no weight gradients, only the one its input needs.
Autograd stays as the oracle: ``tests/test_elbo_gradient.py`` checks every family, width and KL
weight against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from . import stacked
from .families import (PLANAR_MARGIN, PLANAR_SHIFT, SYLVESTER_SCALE, DiagonalGaussian, PlanarFlow, SylvesterFlow, sylvester_masks,
                       sylvester_matrices)  # fmt: skip


def activation_from_output(name: str, h: Tensor, grad: Tensor) -> Tensor:
    """d loss / d a for h = act(a) [..., n] and d loss / d h = ``grad``, from the output h alone (so
    the pre-activation need not be kept), in place in ``grad`` where one kernel allows it."""
    if name == "elu":
        return torch.ops.aten.elu_backward.grad_input(grad, 1.0, 1, 1, True, h, grad_input=grad)
    if name == "relu":
        return grad.masked_fill_(h <= 0, 0.0)
    if name == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, h, grad_input=grad)
    if name == "softplus":  # d softplus(a) / da = sigmoid(a) = 1 - exp(-h)
        return grad.mul_(torch.expm1(-h).neg_())
    raise ValueError(f"no hand-written derivative for activation {name!r}")


def activate_(name: str, a: Tensor) -> Tensor:
    """act(a), in place."""
    if name == "elu":
        return nn.functional.elu_(a)
    if name == "relu":
        return a.relu_()
    if name == "tanh":
        return a.tanh_()
    if name == "softplus":
        return a.copy_(softplus(a))
    raise ValueError(f"no hand-written derivative for activation {name!r}")


def bernoulli_fit(logits: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """log p(x|z) summed over pixels [M, B, S] for logits [M, B, S, D] and binary x [M, B, D], with
    what its gradient needs: sigmoid(t) [M, B, S, D] and 2x - 1 [M, B, 1, D], t = logits (2x - 1).
    log p = sum log sigmoid(t): one sigmoid serves the value and the gradient (a softplus per pixel
    costs more than both); where sigmoid(t) underflows (t below about -87 in float32), the batch
    is summed again with logsigmoid."""
    sign = x.mul(2).sub_(1).unsqueeze(2)
    t = logits * sign
    fit = torch.sigmoid(t)
    log_lik = fit.log().sum(-1)
    if math.isinf(log_lik.sum().item()):
        log_lik = nn.functional.logsigmoid(t).sum(-1)
    return log_lik, fit, sign


@dataclass
class _Layer:
    """One Linear layer of a stack: stacked weight [M, in, out] and bias [M, out] with the buffers
    their gradients go to, or a shared (frozen) weight [out, in] and bias [out] with none."""

    weight: Tensor
    bias: Tensor
    weight_grad: Tensor | None
    bias_grad: Tensor | None

    @property
    def shared(self) -> bool:
        return self.weight.dim() == 2

    def forward(self, h: Tensor) -> Tensor:
        """h [M, N, in] -> [M, N, out]."""
        if self.shared:
            return nn.functional.linear(h, self.weight, self.bias)
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight)

    def backward(self, h: Tensor, grad: Tensor, need_input: bool = True) -> Tensor | None:
        """Given the layer's input h [M, N, in] and d loss / d output ``grad`` [M, N, out], add the
        weight and bias gradients (if trainable) and return d loss / d input (if ``need_input``)."""
        if self.weight_grad is not None:
            torch.bmm(h.transpose(1, 2), grad, out=self.weight_grad)
            torch.sum(grad, 1, out=self.bias_grad)
        if not need_input:
            return None
        if self.shared:
            return grad @ self.weight
        return torch.bmm(grad, self.weight.transpose(1, 2))


class NegativeElbo:
    """The training loss of a stack and its gradient, by hand (see the module docstring). The
    gradient of trainable parameter ``name`` goes to ``grads[name]``, a buffer shaped like the
    stacked parameter (``grads=None``: the ELBO alone, :meth:`elbo`)."""

    def __init__(self, stack: stacked.Stack, grads: dict[str, Tensor] | None = None) -> None:
        template = stack.template
        self.activation, self.family, self.latent_dim = template.config.activation, template.family, template.latent_dim
        if not isinstance(self.family, (DiagonalGaussian, PlanarFlow, SylvesterFlow)):
            raise TypeError(f"no hand-written gradient for family {type(self.family).__name__}")
        trainable = stack.trainable
        if grads is not None and set(grads) != set(trainable):
            raise ValueError(f"grads must hold the stack's trainable parameters {sorted(trainable)}, not {sorted(grads)}")
        self.grads = grads

        def layers(prefix: str) -> list[_Layer]:
            names = [f"{prefix}.{i}" for i, m in enumerate(template.get_submodule(prefix)) if isinstance(m, nn.Linear)]
            found = grads or {}
            return [_Layer(stack.params[f"{n}.weight"], stack.params[f"{n}.bias"], found.get(f"{n}.weight"),
                           found.get(f"{n}.bias")) for n in names]  # fmt: skip

        self.encoder, self.decoder = layers("encoder"), layers("decoder")

    @torch.no_grad()
    def __call__(self, x: Tensor, eps: Tensor, kl_weight: float = 1.0, inputs: Tensor | None = None) -> Tensor:
        """For binary x [M, B, D] and noise eps [S, M, B, d]: the gradient of the loss at
        ``kl_weight``, left in ``grads``, and the per-datapoint ELBO [M, B] (at KL weight 1). The
        encoder reads x, or ``inputs`` [M, B, E] where it is a lookup table (one-hot image indices)."""
        if self.grads is None:
            raise ValueError("this NegativeElbo was built without gradient buffers (grads=None): it gives the ELBO alone")
        return self._pass(x, eps, kl_weight, gradient=True, inputs=inputs)

    @torch.no_grad()
    def elbo(self, x: Tensor, eps: Tensor, inputs: Tensor | None = None) -> Tensor:
        """The per-datapoint ELBO [M, B] alone (no gradient), for x [M, B, D] and eps [S, M, B, d]
        (and the encoder's ``inputs``, as for a training step)."""
        return self._pass(x, eps, 1.0, gradient=False, inputs=inputs)

    def _pass(self, x: Tensor, eps: Tensor, kl_weight: float, gradient: bool, inputs: Tensor | None) -> Tensor:
        S, M, B, d = eps.shape
        noise = eps.permute(1, 2, 0, 3)  # [M, B, S, d]: a datapoint's samples side by side
        enc_inputs, out = self._mlp_forward(self.encoder, x if inputs is None else inputs)
        flow = None if isinstance(self.family, DiagonalGaussian) else _FLOW_PASSES[type(self.family)](out, noise, self.family.length)
        if flow is not None:
            z = flow.z
        else:
            loc, log_scale = out[..., :d], out[..., d:]
            scale = log_scale.exp()
            z = torch.addcmul(loc.unsqueeze(2), noise, scale.unsqueeze(2))
        dec_inputs, logits = self._mlp_forward(self.decoder, z.reshape(M, B * S, d))
        log_lik, fit, sign = bernoulli_fit(logits.view(M, B, S, -1), x)
        if flow is not None:
            kl = flow.kl()  # [M, B], a Monte Carlo estimate on these samples
        else:
            kl = 0.5 * (scale.square() + loc.square() - 1 - 2 * log_scale).sum(-1)
        if gradient:
            # d loss / d logits = (sigmoid(logits) - x) / (S B) = (sigmoid(t) - 1) (2x - 1) / (S B)
            grad = fit.sub_(1).mul_(sign).mul_(1 / (S * B)).view(M, B * S, -1)
            grad_z = self._mlp_backward(self.decoder, dec_inputs, grad, need_input=True).view(M, B, S, d)
            if flow is not None:
                grad_out = flow.backward(grad_z, kl_weight / (S * B))
            else:
                grad_out = torch.empty_like(out)
                grad_loc, grad_log_scale = grad_out[..., :d], grad_out[..., d:]
                torch.sum(grad_z, 2, out=grad_loc).add_(loc, alpha=kl_weight / B)
                torch.sum(grad_z * noise, 2, out=grad_log_scale).mul_(scale).add_(scale.square().sub_(1), alpha=kl_weight / B)
            self._mlp_backward(self.encoder, enc_inputs, grad_out, need_input=False)
        return log_lik.mean(-1) - kl

    def _mlp_forward(self, layers: list[_Layer], h: Tensor) -> tuple[list[Tensor], Tensor]:
        """h through the layers, the activation between them: (every layer's input, the output)."""
        inputs = []
        for i, layer in enumerate(layers):
            inputs.append(h)
            h = layer.forward(h)
            if i < len(layers) - 1:
                h = activate_(self.activation, h)
        return inputs, h

    def _mlp_backward(self, layers: list[_Layer], inputs: list[Tensor], grad: Tensor,
                      need_input: bool) -> Tensor | None:  # fmt: skip
        """Back through the layers from d loss / d output: the weight gradients, and d loss / d input."""
        for i in reversed(range(len(layers))):
            grad = layers[i].backward(inputs[i], grad, need_input=need_input or i > 0)
            if i > 0:
                grad = activation_from_output(self.activation, inputs[i], grad)
        return grad


class _PlanarPass:
    """The planar flow of :class:`~amortgap.families.PlanarFlowDistribution`, forward and backward by
    hand, for encoder output [M, B, F] and noise [M, B, S, d], every datapoint's K layers at once.

    With z_0 = loc + scale eps, layer k's pre-activation is a_k = w_k . z_{k-1} + b_k and
    z_k = z_{k-1} + u^_k h_k, h_k = tanh(a_k). Unrolled, z_{k-1} = z_0 + sum_{j<k} h_j u^_j, so
    a_k = (w_k . z_0 + b_k) + sum_{j<k} h_j C_jk with C_jk = u^_j . w_k: the d-dimensional work is
    four batched matrix products per datapoint (z_0 W^T, U^ W^T, H U^ and their backward), and only
    the K tanh's, on one number per sample each, run in sequence."""

    def __init__(self, out: Tensor, noise: Tensor, length: int) -> None:
        M, B, S, d = noise.shape
        K, N = length, M * B
        self.shape, self.K = (M, B, S, d), K
        loc, log_scale, u, w, b = out.split([d, d, K * d, K * d, K], dim=-1)
        self.log_scale, self.u, self.w = log_scale, u.reshape(N, K, d), w.reshape(N, K, d)
        w, u = self.w, self.u
        self.wu = (w * u).sum(-1)  # [N, K]
        self.norm2 = w.square().sum(-1).add_(1e-12)
        self.m = softplus(self.wu + PLANAR_SHIFT).sub_(1 - PLANAR_MARGIN)
        self.c = (self.m - self.wu).div_(self.norm2)
        self.u_hat = torch.addcmul(u, self.c.unsqueeze(-1), w)  # [N, K, d]
        self.wu_hat = (w * self.u_hat).sum(-1)  # [N, K]
        self.scale = log_scale.exp().reshape(N, 1, d)
        self.noise = noise.reshape(N, S, d)
        self.z0 = torch.addcmul(loc.reshape(N, 1, d), self.noise, self.scale)  # [N, S, d]
        self.C = torch.bmm(self.u_hat, w.transpose(1, 2))  # [N, K, K], C[j, k] = u^_j . w_k
        pre = torch.baddbmm(b.reshape(N, 1, K), self.z0, w.transpose(1, 2))  # [N, S, K]: a_k without the h_j
        self.h = torch.empty_like(pre)
        for k in range(K):
            torch.tanh(pre[..., k], out=self.h[..., k])
            pre.addcmul_(self.h[..., k : k + 1], self.C[:, k : k + 1, :])  # h_k C[k, :] into the later a's
        self.z = torch.baddbmm(self.z0, self.h, self.u_hat).view(M, B, S, d)  # z_K = z_0 + H U^
        self.one_minus_h2 = 1 - self.h.square()
        self.det = torch.addcmul(torch.ones_like(self.h), self.one_minus_h2, self.wu_hat.unsqueeze(1))  # [N, S, K]

    def kl(self) -> Tensor:
        """The Monte Carlo KL, mean over samples of log q(z) - log p(z): [M, B]."""
        M, B, S, d = self.shape
        log_q = -0.5 * self.noise.square().sum(-1) - self.log_scale.reshape(-1, 1, d).sum(-1) - self.det.log().sum(-1)
        log_p = -0.5 * self.z.reshape(-1, S, d).square().sum(-1)  # the two log(2 pi) terms cancel
        return (log_q - log_p).mean(-1).view(M, B)

    def backward(self, grad_z: Tensor, kl_scale: float) -> Tensor:
        """d loss / d encoder output [M, B, F], for d loss / d z_K ``grad_z`` [M, B, S, d] from the
        likelihood and a loss that holds ``kl_scale`` * sum over samples and data of log q - log p."""
        M, B, S, d = self.shape
        K, w, u_hat, h = self.K, self.w, self.u_hat, self.h
        grad_z = grad_z.reshape(-1, S, d).add(self.z.view(-1, S, d), alpha=kl_scale)  # - log p(z_K)
        # d / dh_k: through z_K = z_0 + H U^ and, from log q's - sum_k log det_k, 2 kl_scale h_k w.u^_k / det_k
        running = torch.bmm(grad_z, u_hat.transpose(1, 2)).add_(h * self.wu_hat.unsqueeze(1) * (2 * kl_scale) / self.det)
        grad_wu_hat = (self.one_minus_h2 / self.det).sum(1).mul_(-kl_scale)  # [N, K]
        grad_a = torch.empty_like(h)
        for k in reversed(range(K)):  # running[..., k] then holds every later layer's share too
            torch.mul(running[..., k], self.one_minus_h2[..., k], out=grad_a[..., k])
            running.addcmul_(grad_a[..., k : k + 1], self.C[:, :, k].unsqueeze(1))
        grad_z0 = torch.baddbmm(grad_z, grad_a, w)  # [N, S, d]
        grad_b = grad_a.sum(1)  # [N, K]
        pairs = torch.bmm(h.transpose(1, 2), grad_a).triu_(1)  # d loss / d C[j, k] = sum_s h_j a'_k, j < k
        grad_w = torch.bmm(grad_a.transpose(1, 2), self.z0).baddbmm_(pairs.transpose(1, 2), u_hat)  # [N, K, d]
        grad_u_hat = torch.bmm(h.transpose(1, 2), grad_z).baddbmm_(pairs, w)
        # u^ = u + c w, c = (m - wu) / |w|^2, m = softplus(wu + SHIFT) - 1 + MARGIN; wu^ = w . u^
        grad_u_hat.addcmul_(grad_wu_hat.unsqueeze(-1), w)
        grad_w.addcmul_(grad_wu_hat.unsqueeze(-1), u_hat)
        grad_c = (grad_u_hat * w).sum(-1)
        grad_w.addcmul_(self.c.unsqueeze(-1), grad_u_hat)
        grad_m = grad_c / self.norm2
        grad_wu = grad_m * (torch.sigmoid(self.wu + PLANAR_SHIFT) - 1)
        grad_norm2 = -grad_c * self.c / self.norm2
        grad_u = grad_u_hat.addcmul_(grad_wu.unsqueeze(-1), w)
        grad_w.addcmul_(grad_wu.unsqueeze(-1), self.u).addcmul_(grad_norm2.unsqueeze(-1), w, value=2.0)
        grad_loc = grad_z0.sum(1)
        grad_log_scale = (grad_z0 * self.noise).sum(1).mul_(self.scale.squeeze(1)).sub_(S * kl_scale)
        flat = [grad_loc, grad_log_scale, grad_u.reshape(M * B, -1), grad_w.reshape(M * B, -1), grad_b]
        return torch.cat(flat, -1).view(M, B, -1)


class _SylvesterPass:
    """The triangular Sylvester flow of :class:`~amortgap.families.SylvesterFlowDistribution`,
    forward and backward by hand, for encoder output [M, B, F] and noise [M, B, S, d]: per layer k,
    with row vectors z [N, S, d] and W = R~^T, V = R^T (:func:`~amortgap.families.sylvester_matrices`),

        pre_k = z_{k-1} W_k + b_k,   h_k = tanh(pre_k),   z_k = z_{k-1} + h_k V_k,
        log det_k = sum_i log(1 + r_i r~_i (1 - h_ki^2)),

    two batched matrix products forward and four backward per layer."""

    def __init__(self, out: Tensor, noise: Tensor, length: int) -> None:
        M, B, S, d = noise.shape
        K, N = length, M * B
        self.shape, self.K = (M, B, S, d), K
        loc, log_scale, a, c, b = out.split([d, d, K * d * d, K * d, K * d], dim=-1)
        self.log_scale = log_scale
        self.w, self.v, self.r, self.r_tilde = sylvester_matrices(a.reshape(N, K, d, d), c.reshape(N, K, d))
        self.rr = self.r * self.r_tilde  # [N, K, d]
        self.scale = log_scale.exp().reshape(N, 1, d)
        self.noise = noise.reshape(N, S, d)
        b = b.reshape(N, K, d)
        z = torch.addcmul(loc.reshape(N, 1, d), self.noise, self.scale)
        self.inputs, self.h, self.det = [], [], []  # per layer: z_{k-1}, h_k, det_k [N, S, d]
        for k in range(K):
            self.inputs.append(z)
            h = torch.baddbmm(b[:, k : k + 1], z, self.w[:, k]).tanh_()
            self.h.append(h)
            self.det.append(torch.addcmul(torch.ones_like(h), 1 - h.square(), self.rr[:, k : k + 1]))
            z = torch.baddbmm(z, h, self.v[:, k])
        self.z = z.view(M, B, S, d)

    def kl(self) -> Tensor:
        """The Monte Carlo KL, mean over samples of log q(z) - log p(z): [M, B]."""
        M, B, S, d = self.shape
        log_det = sum(det.log().sum(-1) for det in self.det)
        log_q = -0.5 * self.noise.square().sum(-1) - self.log_scale.reshape(-1, 1, d).sum(-1) - log_det
        log_p = -0.5 * self.z.reshape(-1, S, d).square().sum(-1)  # the two log(2 pi) terms cancel
        return (log_q - log_p).mean(-1).view(M, B)

    def backward(self, grad_z: Tensor, kl_scale: float) -> Tensor:
        """d loss / d encoder output [M, B, F], for d loss / d z_K ``grad_z`` [M, B, S, d] from the
        likelihood and a loss that holds ``kl_scale`` * sum over samples and data of log q - log p."""
        M, B, S, d = self.shape
        K, N = self.K, M * B
        of_w, of_v = sylvester_masks(K, d, grad_z)
        grad = grad_z.reshape(N, S, d).add(self.z.view(N, S, d), alpha=kl_scale)  # - log p(z_K)
        grad_a = grad_z.new_empty(N, K, d, d)
        grad_c, grad_b = grad_z.new_empty(N, K, d), grad_z.new_empty(N, K, d)
        for k in reversed(range(K)):
            h, det, rr = self.h[k], self.det[k], self.rr[:, k : k + 1]
            one_minus_h2 = 1 - h.square()
            grad_v = torch.bmm(h.transpose(1, 2), grad)  # [N, d, d]
            # d / dh: through z_k = z_{k-1} + h V, and from - kl_scale log det: 2 kl_scale r r~ h / det
            grad_pre = torch.bmm(grad, self.v[:, k].transpose(1, 2)).add_(h * rr * (2 * kl_scale) / det).mul_(one_minus_h2)
            grad_w = torch.bmm(self.inputs[k].transpose(1, 2), grad_pre)
            torch.sum(grad_pre, 1, out=grad_b[:, k])
            share = (one_minus_h2 / det).sum(1).mul_(-kl_scale)  # d (- kl_scale sum log det) / d (r r~)
            grad_r = grad_v.diagonal(dim1=-2, dim2=-1) + share * self.r_tilde[:, k]
            grad_r_tilde = grad_w.diagonal(dim1=-2, dim2=-1) + share * self.r[:, k]
            grad = torch.baddbmm(grad, grad_pre, self.w[:, k].transpose(1, 2))  # z_{k-1}: directly and through pre
            # W = a * of_w + diag(r~), V = (a * of_v)^T + diag(r), r = s tanh(diag a), r~ = s tanh(c): dr = s - r^2 / s
            torch.mul(grad_w, of_w[k], out=grad_a[:, k]).addcmul_(grad_v.transpose(1, 2), of_v[k])
            grad_a[:, k].diagonal(dim1=-2, dim2=-1).copy_(grad_r * _tanh_slope(self.r[:, k]))
            torch.mul(grad_r_tilde, _tanh_slope(self.r_tilde[:, k]), out=grad_c[:, k])
        grad_loc = grad.sum(1)
        grad_log_scale = (grad * self.noise).sum(1).mul_(self.scale.squeeze(1)).sub_(S * kl_scale)
        flat = [grad_loc, grad_log_scale, grad_a.reshape(N, -1), grad_c.reshape(N, -1), grad_b.reshape(N, -1)]
        return torch.cat(flat, -1).view(M, B, -1)


def _tanh_slope(r: Tensor) -> Tensor:
    """d r / d x for r = SYLVESTER_SCALE tanh(x), from r: SCALE - r^2 / SCALE."""
    return r.square().div_(-SYLVESTER_SCALE).add_(SYLVESTER_SCALE)


_FLOW_PASSES = {PlanarFlow: _PlanarPass, SylvesterFlow: _SylvesterPass}  # each flow family's hand-written pass
