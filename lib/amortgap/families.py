"""Variational families: how per-datapoint parameters become a distribution q(z).

A family maps a dict of parameter tensors, each with leading batch dimension [B, ...], to a
``torch.distributions.Distribution`` with batch shape [B] and event shape [d]. Per-datapoint
optimisation (:mod:`amortgap.qstar`) works on such dicts, row by row, so any family that follows
this protocol can be optimised datapoint by datapoint; an encoder predicts the same dict from x
through :meth:`Family.unflatten`, so every family can also be amortized.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, constraints
from torch.nn.functional import softplus

Params = dict[str, Tensor]
LOG_2PI = math.log(2 * math.pi)
PLANAR_MARGIN = 1e-3  # every planar layer's Jacobian determinant is at least this
PLANAR_SHIFT = math.log(math.expm1(1 - PLANAR_MARGIN))
SYLVESTER_START = 0.1  # each Sylvester layer's R~ diagonal at the identity start: tanh(R~ z) != 0, so R can grow
SYLVESTER_SCALE = 1 - 1e-3  # r = SCALE tanh(.): |r r~| <= SCALE^2, so every Jacobian factor is at least 2e-3, even where tanh rounds to 1


class Family(Protocol):
    """A variational family with per-datapoint parameters."""

    def params_from(self, q: Distribution) -> Params:
        """Parameters [B, ...] that reproduce (or, for a poorer family, start from) the given q."""

    def prior_params(self, batch: int, latent_dim: int, like: Tensor) -> Params:
        """Parameters [B, ...] of the standard normal prior, on ``like``'s device and dtype."""

    def distribution(self, params: Params) -> Distribution:
        """The distribution, batch shape [B], event shape [d]."""

    def flat_size(self, latent_dim: int) -> int:
        """How many numbers an encoder outputs per datapoint."""

    def unflatten(self, flat: Tensor, latent_dim: int) -> Params:
        """An encoder's output [B, flat_size] as parameters [B, ...]."""


class DiagonalGaussian:
    """q(z) = N(loc, diag(exp(log_scale))^2): the fully factorised Gaussian (FFG)."""

    def params_from(self, q: Distribution) -> Params:
        return {"loc": q.mean.detach().clone(), "log_scale": q.stddev.detach().log()}

    def prior_params(self, batch: int, latent_dim: int, like: Tensor) -> Params:
        zeros = like.new_zeros(batch, latent_dim)
        return {"loc": zeros, "log_scale": zeros.clone()}

    def distribution(self, params: Params) -> Distribution:
        return diagonal_gaussian(params["loc"], params["log_scale"])

    def flat_size(self, latent_dim: int) -> int:
        return 2 * latent_dim

    def unflatten(self, flat: Tensor, latent_dim: int) -> Params:
        loc, log_scale = flat.split(latent_dim, dim=-1)
        return {"loc": loc, "log_scale": log_scale}


def diagonal_gaussian(loc: Tensor, log_scale: Tensor) -> Distribution:
    """N(loc, diag(exp(2 log_scale))) with batch shape loc.shape[:-1] and event shape [d]. Its
    arguments are not validated (torch's checks cost a device sync and a few kernels per call, in
    every training and q* step); the trainer checks its ELBO for non-finite values instead."""
    return Independent(Normal(loc, torch.exp(log_scale), validate_args=False), 1, validate_args=False)


def kl_to_standard_normal(loc: Tensor, scale: Tensor) -> Tensor:
    """KL(N(loc, diag(scale^2)) || N(0, I)) for loc, scale [..., d]: [...]. The closed form of
    ``kl_divergence(diagonal_gaussian(loc, log scale), diagonal_gaussian(0, 0))``, with the same
    floating-point operations (so the same bits, gradients included) but without building the prior."""
    var_ratio = scale.pow(2)
    return (0.5 * (var_ratio + loc.pow(2) - 1 - var_ratio.log())).sum(-1)


class FlowDistribution(Distribution):
    """A diagonal Gaussian pushed through flow layers, batch shape [B], event shape [d]. The layers
    have no closed-form inverse, so ``log_prob`` is defined for the most recent ``rsample`` only: the
    density is tracked through the layers as the sample is drawn. That is all an ELBO or IWAE
    estimate needs; AIS, which evaluates q at points it moved itself, must start from a family with
    a density. A subclass's :meth:`from_noise` draws the sample and sets ``_last``."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, params: Params) -> None:
        self.params = params
        loc = params["loc"]
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)
        self._last: tuple[Tensor, Tensor] | None = None

    def from_noise(self, eps: Tensor) -> Tensor:
        """The sample [S, *batch, d] that standard normal noise ``eps`` of that shape maps to."""
        raise NotImplementedError

    def _base(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """z_0 = loc + scale eps and its log density log N(eps) - sum log_scale: ([S, *batch, d], [S, *batch])."""
        p = self.params
        return p["loc"] + eps * p["log_scale"].exp(), -0.5 * (eps.pow(2) + LOG_2PI).sum(-1) - p["log_scale"].sum(-1)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        loc = self.params["loc"]
        return self.from_noise(torch.randn(torch.Size(sample_shape) + loc.shape, dtype=loc.dtype, device=loc.device))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._last is None or value is not self._last[0]:
            raise NotImplementedError(
                f"a {type(self).__name__} has no closed-form inverse: log_prob is defined only for the "
                "tensor returned by the latest rsample/sample"
            )
        return self._last[1]


class PlanarFlowDistribution(FlowDistribution):
    """The planar-flow q(z) (:class:`PlanarFlow`)."""

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        w, u = params["w"], params["u"]
        wu = (w * u).sum(-1, keepdim=True)
        # u_hat = u + (m(w.u) - w.u) w / |w|^2 gives w . u_hat = m(w.u) >= -1 + MARGIN, with
        # m(a) = -1 + MARGIN + softplus(a + SHIFT); SHIFT makes m(0) = 0, so u = 0 is the identity.
        m = softplus(wu + PLANAR_SHIFT) - 1 + PLANAR_MARGIN
        self._u = u + (m - wu) * w / (w.pow(2).sum(-1, keepdim=True) + 1e-12)
        self._wu = (w * self._u).sum(-1)  # [B, K]

    def from_noise(self, eps: Tensor) -> Tensor:
        p = self.params
        z, log_q = self._base(eps)
        for k in range(self._u.shape[-2]):
            h = torch.tanh((z * p["w"][..., k, :]).sum(-1) + p["b"][..., k])
            z = z + self._u[..., k, :] * h.unsqueeze(-1)
            log_q = log_q - torch.log1p((1 - h.pow(2)) * self._wu[..., k])
        self._last = (z, log_q)
        return z


def sylvester_masks(length: int, d: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The strict triangles [K, d, d] of ``a`` that hold W = R~^T's and R's off-diagonal parts (V =
    R^T takes the second transposed): lower and upper on even layers (R, R~ upper triangular),
    swapped on odd ones (lower triangular)."""
    lower = torch.ones(d, d, dtype=like.dtype, device=like.device).tril_(-1)
    odd = (torch.arange(length, device=like.device) % 2 == 1)[:, None, None]
    return torch.where(odd, lower.T, lower), torch.where(odd, lower, lower.T)


def sylvester_matrices(a: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The layers' transposed matrices from ``a`` [..., K, d, d] and ``c`` [..., K, d]: W = R~^T and
    V = R^T [..., K, d, d], so that a layer is pre = z W + b, z' = z + tanh(pre) V for row vectors z,
    and their diagonals r~ = SCALE tanh(c), r = SCALE tanh(diag a) [..., K, d]."""
    of_w, of_v = sylvester_masks(a.shape[-3], a.shape[-1], a)
    r, r_tilde = SYLVESTER_SCALE * torch.tanh(a.diagonal(dim1=-2, dim2=-1)), SYLVESTER_SCALE * torch.tanh(c)
    w = torch.diagonal_scatter(a * of_w, r_tilde, dim1=-2, dim2=-1)
    v = torch.diagonal_scatter((a * of_v).transpose(-2, -1), r, dim1=-2, dim2=-1)
    return w, v, r, r_tilde


class SylvesterFlowDistribution(FlowDistribution):
    """The triangular Sylvester-flow q(z) (:class:`SylvesterFlow`)."""

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._w, self._v, r, r_tilde = sylvester_matrices(params["a"], params["c"])
        self._rr = r * r_tilde  # [B, K, d]

    def from_noise(self, eps: Tensor) -> Tensor:
        z, log_q = self._base(eps)
        b = self.params["b"]
        for k in range(b.shape[-2]):
            h = torch.tanh((z.unsqueeze(-2) @ self._w[..., k, :, :]).squeeze(-2) + b[..., k, :])
            z = z + (h.unsqueeze(-2) @ self._v[..., k, :, :]).squeeze(-2)
            log_q = log_q - torch.log1p((1 - h.pow(2)) * self._rr[..., k, :]).sum(-1)
        self._last = (z, log_q)
        return z


class FlowFamily:
    """A diagonal Gaussian pushed through ``length`` flow layers, every parameter per datapoint:
    loc, log_scale [B, d], and each layer parameter [B, K, *shape] (shapes from
    :meth:`layer_shapes`). A subclass names its layers' parameters, their identity values and its
    distribution; the identity makes a diagonal Gaussian q its own starting point
    (``params_from``)."""

    kind = "flow"  # the layers' name, in messages
    distribution_type: type[FlowDistribution]

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"a {self.kind} flow needs at least one layer, not {length}")
        self.length = length

    def layer_shapes(self, latent_dim: int) -> dict[str, tuple[int, ...]]:
        """{name: shape} of one layer's parameters, for latent size ``latent_dim``."""
        raise NotImplementedError

    def _identity_layers(self, loc: Tensor) -> Params:
        """Layer parameters [B, K, *shape] that make every layer the identity, for loc [B, d]."""
        raise NotImplementedError

    def params_from(self, q: Distribution) -> Params:
        if isinstance(q, self.distribution_type):
            layers = next(iter(self.layer_shapes(q.event_shape[-1])))
            if q.params[layers].shape[1] != self.length:
                raise ValueError(f"q has {q.params[layers].shape[1]} {self.kind} layers, this family {self.length}")
            return {k: v.detach().clone() for k, v in q.params.items()}
        base = DiagonalGaussian().params_from(q)
        return {**base, **self._identity_layers(base["loc"])}

    def prior_params(self, batch: int, latent_dim: int, like: Tensor) -> Params:
        base = DiagonalGaussian().prior_params(batch, latent_dim, like)
        return {**base, **self._identity_layers(base["loc"])}

    def distribution(self, params: Params) -> Distribution:
        return self.distribution_type(params)

    def flat_size(self, latent_dim: int) -> int:
        return 2 * latent_dim + self.length * sum(math.prod(shape) for shape in self.layer_shapes(latent_dim).values())

    def unflatten(self, flat: Tensor, latent_dim: int) -> Params:
        d, K, shapes = latent_dim, self.length, self.layer_shapes(latent_dim)
        loc, log_scale, *layers = flat.split([d, d, *(K * math.prod(shape) for shape in shapes.values())], dim=-1)
        lead = flat.shape[:-1]
        return {"loc": loc, "log_scale": log_scale,
                **{name: part.reshape(lead + (K, *shape)) for (name, shape), part in zip(shapes.items(), layers)}}  # fmt: skip


class PlanarFlow(FlowFamily):
    """A diagonal Gaussian pushed through ``length`` planar layers (Rezende & Mohamed 2015),

        z_k = z_{k-1} + u_k tanh(w_k . z_{k-1} + b_k),    k = 1..K,

    with every parameter per datapoint: loc, log_scale [B, d]; u, w [B, K, d]; b [B, K]. ``u`` is
    reparameterized so that w . u > -1, which keeps each layer invertible (as in Rezende & Mohamed,
    but shifted so that u = 0 stays the identity). With u = 0 the flow is the identity.
    """

    kind = "planar"
    distribution_type = PlanarFlowDistribution

    def __init__(self, length: int = 10) -> None:
        super().__init__(length)

    def layer_shapes(self, latent_dim: int) -> dict[str, tuple[int, ...]]:
        return {"u": (latent_dim,), "w": (latent_dim,), "b": ()}

    def _identity_layers(self, loc: Tensor) -> Params:
        """u = 0, b = 0 and w_k = 0.1 e_(k mod d): the identity, with distinct directions to grow from."""
        B, d = loc.shape
        w = loc.new_zeros(B, self.length, d)
        w[:, torch.arange(self.length), torch.arange(self.length) % d] = 0.1
        return {"u": loc.new_zeros(B, self.length, d), "w": w, "b": loc.new_zeros(B, self.length)}


class SylvesterFlow(FlowFamily):
    """A diagonal Gaussian pushed through ``length`` triangular Sylvester layers (van den Berg et al.
    2018, their T-SNF), every parameter per datapoint:

        z_k = z_{k-1} + R_k tanh(R~_k z_{k-1} + b_k),    k = 1..K,

    with R_k, R~_k upper triangular on even k and lower triangular on odd k (the T-SNF's alternating
    permutation, folded into the matrices). Each layer's Jacobian is triangular, so
    log det = sum_i log(1 + r_ii r~_ii tanh'(pre_i)), pre = R~ z + b; the diagonals
    r = SCALE tanh(.), r~ = SCALE tanh(.) lie inside (-1, 1) by a margin that rounding cannot close,
    which keeps every factor positive (the layer invertible).

    Parameters: loc, log_scale [B, d]; ``a`` [B, K, d, d], whose one strict triangle is R's
    off-diagonal part, the other R~'s (transposed), and whose diagonal is R's before the tanh;
    ``c`` [B, K, d], R~'s diagonal before its tanh; b [B, K, d]. With R = 0 the flow is the
    identity.
    """

    kind = "Sylvester"
    distribution_type = SylvesterFlowDistribution

    def __init__(self, length: int = 4) -> None:
        super().__init__(length)

    def layer_shapes(self, latent_dim: int) -> dict[str, tuple[int, ...]]:
        return {"a": (latent_dim, latent_dim), "c": (latent_dim,), "b": (latent_dim,)}

    def _identity_layers(self, loc: Tensor) -> Params:
        """R = 0 (a = 0), b = 0 and R~ = SYLVESTER_START I: the identity, with tanh(R~ z) != 0 to grow from."""
        B, d = loc.shape
        K = self.length
        return {"a": loc.new_zeros(B, K, d, d), "c": loc.new_full((B, K, d), math.atanh(SYLVESTER_START / SYLVESTER_SCALE)),
                "b": loc.new_zeros(B, K, d)}  # fmt: skip


def reparameterize(q: Distribution, eps: Tensor) -> Tensor:
    """z = T_q(eps): the sample of q (a diagonal Gaussian or a flow) that standard normal noise
    eps [S, *batch, d] maps to, so that the caller chooses the random numbers (one generator per
    model when many train at once). For a flow, ``q.log_prob(z)`` is then defined for this z."""
    if isinstance(q, FlowDistribution):
        return q.from_noise(eps)
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
        return q.base_dist.loc + eps * q.base_dist.scale
    raise TypeError(f"no reparameterization of {type(q).__name__} from given noise")


FAMILY_NAMES = ("diagonal", "planar", "sylvester")


def make_family(name: str, flow_length: int = 10) -> Family:
    """The family called ``name`` ("diagonal", or "planar" or "sylvester" with ``flow_length`` layers)."""
    if name == "diagonal":
        return DiagonalGaussian()
    if name == "planar":
        return PlanarFlow(flow_length)
    if name == "sylvester":
        return SylvesterFlow(flow_length)
    raise ValueError(f"family must be one of {FAMILY_NAMES}, not {name!r}")
