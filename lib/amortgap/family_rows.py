"""The family matrix's per-image rows (issue 40, item 1), for one family's fresh amortized encoder
on a frozen decoder and a batch of images: its L[q] (every family's on the same random numbers) and
the family's L[q*], with the seconds the search took.

Every family's q* is searched the same way. The diagonal Gaussian (FFG) q* starts from the FFG
encoder's q, with the configuration's extra starts (:func:`ffg_rows`). A flow's ELBO is not
concave in its parameters, so a flow q* is the better of two searches per image: one from the
flow's own encoder, one from the FFG q* with identity layers (a flow that starts as that Gaussian),
the search the gap table uses too (:func:`flow_rows`, :func:`amortgap.gaps.best_flow_qstar`).

One family per call, so that each is a kept part of its own (:mod:`amortgap.parts`): a family
trained later adds its parts and reuses the FFG q* it starts from. A module of its own, apart from
the matrix's summaries, so that a change of how the matrix is summarized or drawn does not change
the fingerprint of those parts.
"""

from __future__ import annotations

import os
import time

import pandas as pd
from torch import Tensor

from .families import DiagonalGaussian, Params
from .gaps import DecomposeConfig, best_flow_qstar, optimal_elbo_with_qstar
from .models import VAE, load
from .split_rows import candidate_elbos


def _encoder(path: str | os.PathLike, flow: bool) -> VAE:
    """The model saved at ``path``, refused unless its encoder is a flow (``flow``) or the FFG."""
    model = load(path)
    if (model.config.family != "diagonal") != flow:
        raise ValueError(f"{path} holds a {model.config.family} encoder, not {'a flow' if flow else 'an FFG'} one")
    return model


def ffg_rows(encoder: str | os.PathLike, x: Tensor, config: DecomposeConfig) -> tuple[pd.DataFrame, Params]:
    """Per image of x [N, D], for the FFG encoder saved at ``encoder``: ``elbo`` (L[q], ``config``'s
    samples and seed), ``qstar_elbo`` and ``qstar_elbo_se`` (L[q*] in the FFG family, searched from the
    encoder's q with ``config``'s extra starts) and ``qstar_seconds`` (the search's wall time per
    image, its ELBO estimate included); and the q*'s parameters [N, d], for the flows to start from."""
    model = _encoder(encoder, flow=False)
    table = candidate_elbos({"elbo": model}, x, config.elbo_samples, config.seed)
    began = time.perf_counter()
    found, qstar = optimal_elbo_with_qstar(model, x, DiagonalGaussian(), config)
    table["qstar_seconds"] = (time.perf_counter() - began) / len(x)
    table["qstar_elbo"], table["qstar_elbo_se"] = found.elbo_optimal.to_numpy(), found.elbo_optimal_se.to_numpy()
    return table, qstar


def flow_rows(encoder: str | os.PathLike, x: Tensor, config: DecomposeConfig, ffg_star: Params,
              more_starts: tuple[int, int] = (0, 0)) -> pd.DataFrame:  # fmt: skip
    """Per image of x [N, D], for the flow encoder saved at ``encoder``: :func:`ffg_rows`' columns in
    the flow's family (its q* the better of a search from the encoder, with ``more_starts`` = (prior
    starts, perturbed starts) besides, and one from ``ffg_star``, the FFG q*'s parameters [N, d] on
    this decoder; all searches timed) and ``start`` ("encoder" or "ffg_qstar", the search that won)."""
    model = _encoder(encoder, flow=True)
    table = candidate_elbos({"elbo": model}, x, config.elbo_samples, config.seed)
    began = time.perf_counter()
    best = best_flow_qstar(model, x, model.family, config, ffg_star, more_starts)
    table["qstar_seconds"] = (time.perf_counter() - began) / len(x)
    table["qstar_elbo"], table["qstar_elbo_se"] = best.elbo_optimal.to_numpy(), best.elbo_optimal_se.to_numpy()
    table["start"] = best.start.to_numpy()
    return table
