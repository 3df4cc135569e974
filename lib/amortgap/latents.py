"""How a model uses its latent space: active units and the KL of each latent dimension.

Posterior collapse shows as latent dimensions whose q(z_d|x) no longer depends on x: they carry no
information, cost no KL, and the decoder ignores them. Burda et al. (2016) call dimension d active
when A_d = Cov_x(E_q[z_d | x]) > 0.01. For an encoder whose q is a diagonal Gaussian the KL splits
exactly over dimensions, KL(q || N(0, I)) = sum_d KL(q_d || N(0, 1)), and the dimensions it is spent
on are the ones the model uses.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from .models import LatentVariableModel

ACTIVITY_THRESHOLD = 0.01  # Burda et al. (2016)


def posterior_mean(q: Distribution, num_samples: int = 200) -> Tensor:
    """E_q[z], [B, d]: exact for a Gaussian q, a Monte Carlo mean of ``num_samples`` draws otherwise
    (a flow's mean has no closed form)."""
    if isinstance(q, (Normal, Independent)):
        return q.mean
    with torch.no_grad():
        return q.sample((num_samples,)).mean(0)


@torch.no_grad()
def unit_activity(model: LatentVariableModel, x: Tensor, batch_size: int = 1000) -> Tensor:
    """A_d = Cov_x(E_q[z_d | x]) over the images x [N, D] (population variance): [d]."""
    means = torch.cat([posterior_mean(model.encode(x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)])
    return means.var(0, unbiased=False)


def active_units(activity: Tensor, threshold: float = ACTIVITY_THRESHOLD) -> int:
    """How many dimensions have activity above ``threshold``."""
    return int((activity > threshold).sum())


@torch.no_grad()
def kl_per_dimension(model: LatentVariableModel, x: Tensor, batch_size: int = 1000) -> Tensor:
    """E_x KL(q(z_d|x) || N(0, 1)) for each dimension d, [d], for a diagonal-Gaussian encoder:
    (mu^2 + sigma^2 - 2 log sigma - 1) / 2, averaged over the images x [N, D]."""
    total = None
    for i in range(0, x.shape[0], batch_size):
        q = model.encode(x[i : i + batch_size])
        if not isinstance(q, (Normal, Independent)):
            raise ValueError(f"the KL splits over dimensions only for a diagonal Gaussian q, not {type(q).__name__}")
        mu, var = q.mean, q.variance
        kl = 0.5 * (mu.pow(2) + var - var.log() - 1).sum(0)
        total = kl if total is None else total + kl
    return total / x.shape[0]


@torch.no_grad()
def pixel_accuracy(model, x: Tensor, q: Distribution, num_samples: int = 200) -> Tensor:
    """The share of pixels of binary images x [B, D] that the decoded posterior mean gets right
    (probability above one half where the pixel is on), [B]. ``model`` needs ``mean_image(z)``."""
    probs = model.mean_image(posterior_mean(q, num_samples))
    return ((probs > 0.5).to(x.dtype) == x).to(x.dtype).mean(-1)
