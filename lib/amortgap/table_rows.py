"""Per-image rows of a decoder trained without an encoder (issue 40, item 2) and of the VAE trained
beside it on the same training subset: log p(x) by AIS, L[q*], and L[q] of the model's own q, with
the gaps (:func:`amortgap.gaps.decompose`), on images of the subset and on test images.

A table model (``VAEConfig.table_images``) has a q only for the images it trained on: row i of its
table, looked up by the image's index i in the subset (:class:`LookedUp`). Its q* search starts from
that row and from perturbed copies of it, as a VAE's starts from its encoder's q; on an image it has
no row for, from the prior, and its L[q] and the gaps that need it are NaN.

A module of its own, apart from the chapter's summaries, so that a change of how they are
summarized or drawn does not change the fingerprint of its kept parts (:mod:`amortgap.parts`).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import pandas as pd
from torch import Tensor, nn
from torch.distributions import Distribution

from .families import DiagonalGaussian
from .gaps import DecomposeConfig, decompose
from .models import VAE, load

NEEDS_Q = ["elbo_amortized", "elbo_amortized_se", "amortization_gap", "amortization_gap_se", "inference_gap",
           "inference_gap_se", "reconstruction_amortized", "kl_amortized", "amortization_gap_reconstruction",
           "amortization_gap_kl"]  # fmt: skip


class LookedUp(nn.Module):
    """A table model as :func:`~amortgap.gaps.decompose` reads a model: ``encode(x)`` is the q of
    the images x [B, D] whose indices in the table are ``rows`` [B], or, with ``rows`` None, the
    prior N(0, I) in the FFG family, standing in where the model has no q."""

    def __init__(self, model: VAE, rows: Tensor | None) -> None:
        super().__init__()
        if not model.config.table_images:
            raise ValueError("only a table model looks its q up; a VAE's encoder reads the images")
        if rows is not None and (rows.dim() != 1 or rows.min() < 0 or rows.max() >= model.config.table_images):
            raise ValueError(f"rows are indices [B] into the table's {model.config.table_images} images")
        self.model, self.latent_dim = model, model.latent_dim
        self.rows = rows

    def encode(self, x: Tensor) -> Distribution:
        if self.rows is None:
            return DiagonalGaussian().distribution(DiagonalGaussian().prior_params(x.shape[0], self.latent_dim, x))
        if len(self.rows) != x.shape[0]:
            raise ValueError(f"{x.shape[0]} images for {len(self.rows)} table rows")
        return self.model.encode(nn.functional.one_hot(self.rows, self.model.config.table_images).to(x.dtype))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        return self.model.log_likelihood(x, z)

    def log_prior(self, z: Tensor) -> Tensor:
        return self.model.log_prior(z)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        return self.model.log_joint(x, z)


def decoder_rows(weights: str | os.PathLike, x: Tensor, rows: Tensor | None, config: DecomposeConfig) -> pd.DataFrame:
    """:func:`~amortgap.gaps.decompose`'s per-image rows of the model saved at ``weights`` on binary
    images x [N, D], its FFG q* searched with ``config``'s starts. For a table model, ``rows`` [N]
    are the images' indices in its table (None: images it has no row for, whose search starts from
    the prior, with ``config``'s prior restarts only, and whose columns of L[q] are NaN); a VAE
    takes ``rows`` None."""
    model = load(weights)
    if not model.config.table_images:
        if rows is not None:
            raise ValueError(f"{weights} is a VAE: its encoder reads the images, it has no table rows")
        return decompose(model, x, config)
    if rows is None:
        found = decompose(LookedUp(model, None), x, replace(config, qstar_init="prior", qstar_perturbed=0))
        found[NEEDS_Q] = math.nan
        return found
    return decompose(LookedUp(model, rows), x, config)
