"""Per-datapoint bounds on log p(x) from samples of a proposal q: the ELBO and IWAE.

Every estimator works on any model that follows :class:`amortgap.models.LatentVariableModel` and
returns one number per datapoint. Samples are drawn in chunks of at most ``max_pairs`` (sample,
datapoint) pairs, so memory stays bounded however many samples are asked for. AIS and BDMC are in
:mod:`amortgap.ais`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from .models import LatentVariableModel

MAX_PAIRS = 2**11  # (sample, datapoint) pairs per decoder call: 6 MB of logits, cache-sized (`make bench`)


def log_weights(model: LatentVariableModel, x: Tensor, q: Distribution, num_samples: int) -> Tensor:
    """log w = log p(x, z) - log q(z) for z ~ q (reparameterized): [num_samples, B]."""
    z = q.rsample((num_samples,))
    return model.log_joint(x, z) - q.log_prob(z)


@torch.no_grad()
def log_weights_chunked(
    model: LatentVariableModel,
    x: Tensor,
    q: Distribution,
    num_samples: int,
    max_pairs: int = MAX_PAIRS,
) -> Tensor:
    """:func:`log_weights` without gradients, drawn in chunks of at most ``max_pairs`` pairs: [S, B]."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, not {num_samples}")
    chunk = max(1, max_pairs // x.shape[0])
    return torch.cat(
        [log_weights(model, x, q, min(chunk, num_samples - start)) for start in range(0, num_samples, chunk)]
    )


def log_weight_terms(model: LatentVariableModel, x: Tensor, q: Distribution, num_samples: int) -> tuple[Tensor, Tensor]:
    """The two terms of log w for z ~ q: log p(x|z) and log p(z) - log q(z), each [num_samples, B].
    Their means are the ELBO's reconstruction term and minus its KL term."""
    z = q.rsample((num_samples,))
    return model.log_likelihood(x, z), model.log_prior(z) - q.log_prob(z)


@torch.no_grad()
def log_weight_terms_chunked(
    model: LatentVariableModel, x: Tensor, q: Distribution, num_samples: int, max_pairs: int = MAX_PAIRS
) -> tuple[Tensor, Tensor]:
    """:func:`log_weight_terms` without gradients, in chunks of at most ``max_pairs`` pairs: 2 x [S, B]."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, not {num_samples}")
    chunk = max(1, max_pairs // x.shape[0])
    parts = [log_weight_terms(model, x, q, min(chunk, num_samples - start)) for start in range(0, num_samples, chunk)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@dataclass
class ELBOParts:
    """The ELBO's two terms per datapoint: the reconstruction E_q[log p(x|z)] [B] and
    KL(q || p(z)) = E_q[log q(z) - log p(z)] [B] (Monte Carlo, from the same samples as the ELBO)."""

    reconstruction: Tensor
    kl: Tensor


def elbo_parts_from_terms(log_lik: Tensor, log_prior_ratio: Tensor) -> ELBOParts:
    """:class:`ELBOParts` from the terms of :func:`log_weight_terms`, each [S, B]."""
    return ELBOParts(log_lik.mean(0), -log_prior_ratio.mean(0))


@dataclass
class ELBOEstimate:
    """Monte Carlo ELBO per datapoint: value [B], standard error [B], and the sample count."""

    value: Tensor
    stderr: Tensor
    num_samples: int


def elbo_from_weights(log_w: Tensor) -> ELBOEstimate:
    """The ELBO estimate from log weights [S, B]."""
    S = log_w.shape[0]
    stderr = log_w.std(0) / math.sqrt(S) if S > 1 else torch.full_like(log_w[0], float("nan"))
    return ELBOEstimate(log_w.mean(0), stderr, S)


def elbo(
    model: LatentVariableModel,
    x: Tensor,
    q: Distribution | None = None,
    num_samples: int = 1000,
    max_pairs: int = MAX_PAIRS,
) -> ELBOEstimate:
    """L[q] = E_q[log p(x, z) - log q(z)] per datapoint; q defaults to the model's encoder."""
    q = _encode(model, x) if q is None else q
    return elbo_from_weights(log_weights_chunked(model, x, q, num_samples, max_pairs))


@dataclass
class IWAEEstimate:
    """IWAE bound per datapoint: value [B], effective sample size [B] (a diagnostic: a small ESS
    means the proposal misses the posterior and the bound may be loose), and k."""

    value: Tensor
    ess: Tensor
    num_samples: int
    stderr: Tensor


def iwae_from_weights(log_w: Tensor) -> IWAEEstimate:
    """log (1/k) sum_i w_i, the effective sample size (sum w)^2 / sum w^2 and the delta-method
    standard error (:func:`log_mean_exp_se`) from log w [k, B]."""
    k = log_w.shape[0]
    value = torch.logsumexp(log_w, 0) - math.log(k)
    ess = torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))
    return IWAEEstimate(value, ess, k, log_mean_exp_se(log_w))


def iwae(
    model: LatentVariableModel,
    x: Tensor,
    q: Distribution | None = None,
    num_samples: int = 5000,
    max_pairs: int = MAX_PAIRS,
) -> IWAEEstimate:
    """The importance-weighted bound L_k (Burda et al. 2016) with proposal q, per datapoint."""
    q = _encode(model, x) if q is None else q
    return iwae_from_weights(log_weights_chunked(model, x, q, num_samples, max_pairs))


def _encode(model: LatentVariableModel, x: Tensor) -> Distribution:
    with torch.no_grad():
        return model.encode(x)


def log_mean_exp_se(log_w: Tensor) -> Tensor:
    """The standard error of log((1/K) sum_k w_k) from log weights [K, B], by the delta method:
    sd(w) / (sqrt(K) mean(w)), computed with weights scaled by their maximum (so nothing overflows).
    NaN for a single weight. For AIS it measures the chains' disagreement; it says nothing of a
    bias that all chains share (BDMC's upper bound does)."""
    K = log_w.shape[0]
    if K < 2:
        return torch.full_like(log_w[0], math.nan)
    w = torch.exp(log_w - log_w.max(0).values)
    return w.std(0) / (math.sqrt(K) * w.mean(0))
